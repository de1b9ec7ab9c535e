import Foundation

/// Merges user values onto the schema's defaults, checking keys and types the way OmegaConf's
/// structured configs do (strings that look like numbers are accepted for numeric fields, numbers
/// for string fields, and so on), so TAO specs behave identically.
struct Merge {
  /// Prefix for messages: "spec.yaml:12: " or "override 'a.b=1': ".
  let originFor: (String) -> String

  init(origin: YAMLInput) { originFor = { origin.origin($0) } }
  init(prefix: String) { originFor = { _ in prefix } }

  func section(_ values: SpecMap, into current: SpecMap, schema: SpecSection, path: String) throws -> SpecMap {
    var out = current
    for (key, v) in values.entries {
      let p = path.isEmpty ? key : "\(path).\(key)"
      guard let f = schema.field(key) else {
        throw SpecError.unknownKey(path: p, suggestion: suggestion(for: key, at: path, in: schema), origin: originFor(p))
      }
      out[key] = try assign(v, to: f, current: current[key] ?? f.defaultValue, path: p)
    }
    return out
  }

  /// The value a field takes when `v` is assigned to it.
  func assign(_ v: SpecValue, to f: SpecField, current: SpecValue, path: String) throws -> SpecValue {
    switch f.type {
    case .section(let s):
      switch v {
      case .null:
        guard f.nullable else { throw SpecError.notNullable(path: path, origin: originFor(path)) }
        return .null
      case .missing: return .missing
      case .map(let m):
        let base = current.mapValue ?? s.defaults
        return .map(try section(m, into: base, schema: s, path: path))
      default:
        throw SpecError.typeMismatch(path: path, expected: "a section (mapping of keys)", got: describe(v), origin: originFor(path))
      }
    case .sections(let s):
      switch v {
      case .list(let items):
        return .list(try items.enumerated().map { i, item in
          let ip = "\(path).\(i)"
          guard case .map(let m) = item else {
            throw SpecError.typeMismatch(path: ip, expected: "a mapping (\(s.fields.map(\.name).prefix(3).joined(separator: ", ")), ...)", got: describe(item), origin: originFor(ip))
          }
          return .map(try section(m, into: s.defaults, schema: s, path: ip))
        })
      case .null where f.nullable: return .null
      case .missing: return .missing
      default:
        throw SpecError.typeMismatch(path: path, expected: "a list of mappings", got: describe(v), origin: originFor(path))
      }
    default:
      return try coerce(v, f, path: path)
    }
  }

  /// Checks and converts a leaf value; `${...}` strings are kept for later resolution.
  func coerce(_ v: SpecValue, _ f: SpecField, path: String) throws -> SpecValue {
    if v == .missing { return v }
    if case .string(let s) = v, s.contains("${") { return v }
    if v == .null {
      guard f.nullable else { throw SpecError.notNullable(path: path, origin: originFor(path)) }
      return .null
    }
    let converted = try convert(v, f.type, path: path)
    try checkBounds(converted, f, path: path)
    return converted
  }

  func convert(_ v: SpecValue, _ type: SpecType, path: String) throws -> SpecValue {
    func mismatch() -> SpecError {
      SpecError.typeMismatch(path: path, expected: "\(article(type.name)) \(type.name)", got: describe(v), origin: originFor(path))
    }
    switch (type, v) {
    case (_, .string(let s)) where s.contains("${"): return v
    case (.bool, .bool): return v
    case (.bool, .int(let i)): return .bool(i != 0)
    case (.bool, .string(let s)):
      switch s.lowercased() {
      case "true", "yes", "on", "y", "1": return .bool(true)
      case "false", "no", "off", "n", "0": return .bool(false)
      default: throw mismatch()
      }
    case (.int, .int): return v
    case (.int, .string(let s)):
      guard let i = Int(s.trimmingCharacters(in: .whitespaces)) else { throw mismatch() }
      return .int(i)
    case (.float, .float): return v
    case (.float, .int(let i)): return .float(Double(i))
    case (.float, .string(let s)):
      guard let d = parseFloat(s) else { throw mismatch() }
      return .float(d)
    case (.string, .string): return v
    case (.string, .int(let i)): return .string(String(i))
    case (.string, .float(let d)): return .string(formatFloat(d))
    case (.string, .bool(let b)): return .string(b ? "True" : "False")
    case (.list(let t), .list(let items)):
      return .list(try items.enumerated().map { i, item in
        if item == .null { throw SpecError.notNullable(path: "\(path).\(i)", origin: originFor(path)) }
        return try convert(item, t, path: "\(path).\(i)")
      })
    default: throw mismatch()
    }
  }

  func checkBounds(_ v: SpecValue, _ f: SpecField, path: String) throws {
    if !f.choices.isEmpty, case .string(let s) = v, !f.choices.contains(s) {
      throw SpecError.invalidChoice(path: path, value: s, choices: f.choices, origin: originFor(path))
    }
    let number: Double?
    switch v {
    case .int(let i): number = Double(i)
    case .float(let d): number = d
    default: number = nil
    }
    if let n = number {
      if let lo = f.min, n < lo {
        throw SpecError.outOfRange(path: path, value: v.description, bound: "minimum \(lo == lo.rounded() ? String(Int(lo)) : String(lo))", origin: originFor(path))
      }
      if let hi = f.max, n > hi {
        throw SpecError.outOfRange(path: path, value: v.description, bound: "maximum \(hi == hi.rounded() ? String(Int(hi)) : String(hi))", origin: originFor(path))
      }
    }
  }
}

func article(_ word: String) -> String { word.first.map { "aeiou".contains($0) } == true ? "an" : "a" }

func describe(_ v: SpecValue) -> String {
  switch v {
  case .string(let s): return "'\(s)'"
  case .map: return "a mapping"
  case .list: return "a list \(v)"
  default: return "\(v.kindName) \(v)"
  }
}

/// Suggests the valid key a user most likely meant: the same name elsewhere in the schema
/// (`num_epochs` at the top level → `train.num_epochs`), else the closest sibling.
func suggestion(for key: String, at path: String, in section: SpecSection, root: SpecSection = CLIPSchema.root) -> String? {
  let prefix = path.isEmpty ? "" : "\(path)."
  if let near = closest(key, among: section.fields.map(\.name)) { return prefix + near }
  var found: [String] = []
  func search(_ s: SpecSection, _ p: String, depth: Int) {
    guard depth < 6 else { return }
    for f in s.fields {
      let fp = p.isEmpty ? f.name : "\(p).\(f.name)"
      if f.name == key { found.append(fp) }
      if case .section(let sub) = f.type { search(sub, fp, depth: depth + 1) }
    }
  }
  search(root, "", depth: 0)
  return found.first
}
