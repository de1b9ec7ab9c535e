import Foundation
import Yams

/// Hydra-style command-line overrides: `a.b=1`, `a.list=[1,2]`, `a.b=null`, `a.b='quoted text'`,
/// `dataset.train.datasets.0.image_dir=/data` (or `datasets[0]`). Values are parsed as YAML flow
/// values and then typed by the schema, so `train.num_epochs=abc` names the key and the type.
/// `+key=` and `++key=` are accepted as plain assignments (a structured schema cannot grow keys).
enum Override {
  static func apply(_ text: String, to tree: inout SpecMap, schema: SpecSection) throws {
    var body = Substring(text)
    if body.hasPrefix("~") {
      throw SpecError.badOverride(text, reason: "deleting keys is not possible with the fixed CLIP schema; set the key to null or its default instead")
    }
    while body.hasPrefix("+") { body = body.dropFirst() }
    guard let eq = body.firstIndex(of: "=") else {
      throw SpecError.badOverride(text, reason: "expected key=value")
    }
    let key = String(body[..<eq]).trimmingCharacters(in: .whitespaces)
    let rawValue = String(body[body.index(after: eq)...])
    guard !key.isEmpty else { throw SpecError.badOverride(text, reason: "empty key") }
    let parts = key.replacingOccurrences(of: "[", with: ".").replacingOccurrences(of: "]", with: "")
      .split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    guard !parts.contains(where: \.isEmpty) else { throw SpecError.badOverride(text, reason: "malformed key '\(key)'") }
    let value = try parseValue(rawValue, override: text)
    let merge = Merge(prefix: "override '\(text)': ")
    tree = try set(.map(tree), type: .section(schema), parts: parts[...], path: "", value: value, merge: merge).mapValue!
  }

  /// Parses the right-hand side: YAML flow syntax (lists, maps, quoted strings, null, numbers).
  static func parseValue(_ raw: String, override: String) throws -> SpecValue {
    let t = raw.trimmingCharacters(in: .whitespaces)
    if t.isEmpty { return .string("") }
    if t.first == "[" || t.first == "{" || t.first == "'" || t.first == "\"" {
      do {
        let parsed = try YAMLInput.parse(t, file: "override")
        return parsed.value
      } catch {
        throw SpecError.badOverride(override, reason: "cannot parse value \(t)")
      }
    }
    return YAMLInput.scalar(t, quoted: false)
  }

  private static func set(_ current: SpecValue, type: SpecType, parts: ArraySlice<String>, path: String,
                          value: SpecValue, merge: Merge) throws -> SpecValue {
    let head = parts.first!
    let p = path.isEmpty ? head : "\(path).\(head)"
    let rest = parts.dropFirst()
    switch type {
    case .section(let s):
      guard let f = s.field(head) else {
        throw SpecError.unknownKey(path: p, suggestion: suggestion(for: head, at: path, in: s), origin: merge.originFor(p))
      }
      var m = current.mapValue ?? s.defaults
      let child = m[head] ?? f.defaultValue
      if rest.isEmpty {
        m[head] = try merge.assign(value, to: f, current: child, path: p)
      } else {
        m[head] = try set(child, type: f.type, parts: rest, path: p, value: value, merge: merge)
      }
      return .map(m)
    case .sections(let s):
      guard case .list(var items) = current else {
        throw SpecError.badOverride(p, reason: "'\(path)' is not a list here")
      }
      guard let i = Int(head), items.indices.contains(i) else {
        throw SpecError.unknownKey(path: p, suggestion: items.isEmpty ? nil : "\(path).0", origin: merge.originFor(p) + "'\(path)' has \(items.count) entries; ")
      }
      if rest.isEmpty {
        guard case .map(let m) = value else {
          throw SpecError.typeMismatch(path: p, expected: "a mapping", got: describe(value), origin: merge.originFor(p))
        }
        items[i] = .map(try merge.section(m, into: items[i].mapValue ?? s.defaults, schema: s, path: p))
      } else {
        items[i] = try set(items[i], type: .section(s), parts: rest, path: p, value: value, merge: merge)
      }
      return .list(items)
    case .list(let t):
      guard case .list(var items) = current, let i = Int(head), items.indices.contains(i), rest.isEmpty else {
        throw SpecError.unknownKey(path: p, suggestion: nil, origin: merge.originFor(p))
      }
      items[i] = try merge.convert(value, t, path: p)
      return .list(items)
    default:
      throw SpecError.unknownKey(path: p, suggestion: path, origin: merge.originFor(p) + "'\(path)' is a single value; ")
    }
  }
}
