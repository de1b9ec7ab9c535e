import Foundation

/// OmegaConf-style interpolation: `${train.num_epochs}` (absolute), `${.sibling}` / `${..uncle}`
/// (relative), `${oc.env:VAR}` / `${oc.env:VAR,default}`. A value that is exactly one
/// interpolation takes the referenced value's type; one embedded in text becomes text. After
/// resolution every value is typed by its field again.
struct Interpolation {
  var root: SpecMap
  let schema: SpecSection

  func resolveAll() throws -> SpecMap {
    try walk(.map(root), type: .section(schema), field: nil, path: []).mapValue!
  }

  private func walk(_ v: SpecValue, type: SpecType, field: SpecField?, path: [String]) throws -> SpecValue {
    let dotted = path.joined(separator: ".")
    switch (type, v) {
    case (.section(let s), .map(let m)):
      var out = SpecMap()
      for (k, c) in m.entries {
        let f = s.field(k)!
        out[k] = try walk(c, type: f.type, field: f, path: path + [k])
      }
      return .map(out)
    case (.sections(let s), .list(let items)):
      return .list(try items.enumerated().map { i, item in try walk(item, type: .section(s), field: nil, path: path + ["\(i)"]) })
    case (.list(let t), .list(let items)):
      return .list(try items.enumerated().map { i, item in
        let r = try resolve(item, at: path + ["\(i)"], seen: [])
        return try Merge(prefix: "").convert(r, t, path: "\(dotted).\(i)")
      })
    default:
      let r = try resolve(v, at: path, seen: [])
      guard let field, r != v else { return r }
      // Type the interpolated result by the field it lands in.
      return try Merge(prefix: "").coerce(r, field, path: dotted)
    }
  }

  /// Resolves every `${...}` in a string value (recursively, refusing cycles).
  private func resolve(_ v: SpecValue, at path: [String], seen: Set<String>) throws -> SpecValue {
    guard case .string(let s) = v, s.contains("${") else { return v }
    let dotted = path.joined(separator: ".")
    if seen.contains(dotted) { throw SpecError.interpolation(path: dotted, reason: "interpolation cycle through '\(dotted)'") }
    var seen = seen
    seen.insert(dotted)
    var pieces: [SpecValue] = []
    var text = ""
    var rest = Substring(s)
    var onlyOne = true
    while let open = rest.range(of: "${") {
      text += rest[..<open.lowerBound]
      guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
        throw SpecError.interpolation(path: dotted, reason: "unterminated '${' in '\(s)'")
      }
      let expr = String(rest[open.upperBound..<close]).trimmingCharacters(in: .whitespaces)
      let value = try evaluate(expr, at: path, seen: seen)
      if !text.isEmpty { onlyOne = false }
      pieces.append(value)
      text += plain(value)
      rest = rest[rest.index(after: close)...]
    }
    if !rest.isEmpty { onlyOne = false }
    text += rest
    if onlyOne && pieces.count == 1 { return pieces[0] }
    return .string(text)
  }

  private func evaluate(_ expr: String, at path: [String], seen: Set<String>) throws -> SpecValue {
    let dotted = path.joined(separator: ".")
    if expr.hasPrefix("oc.env:") {
      let args = expr.dropFirst("oc.env:".count).split(separator: ",", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
      if let v = ProcessInfo.processInfo.environment[args[0]] { return .string(v) }
      if args.count == 2 { return YAMLInput.scalar(args[1].trimmingCharacters(in: CharacterSet(charactersIn: "'\"")), quoted: false) }
      throw SpecError.interpolation(path: dotted, reason: "environment variable \(args[0]) is not set")
    }
    if let colon = expr.firstIndex(of: ":") {
      throw SpecError.interpolation(path: dotted, reason: "resolver '\(expr[..<colon])' is not supported (ClipKit resolves key references and oc.env)")
    }
    var target: [String]
    if expr.hasPrefix(".") {
      let dots = expr.prefix { $0 == "." }.count
      target = Array(path.dropLast(dots))  // one dot = the containing node
      target += expr.dropFirst(dots).split(separator: ".").map(String.init)
    } else {
      target = expr.replacingOccurrences(of: "[", with: ".").replacingOccurrences(of: "]", with: "").split(separator: ".").map(String.init)
    }
    guard let raw = lookup(.map(root), target) else {
      throw SpecError.interpolation(path: dotted, reason: "'${\(expr)}' refers to '\(target.joined(separator: "."))', which does not exist")
    }
    if raw == .missing {
      throw SpecError.interpolation(path: dotted, reason: "'${\(expr)}' refers to a mandatory value that is not set (???)")
    }
    return try resolve(raw, at: target, seen: seen)
  }

  private func plain(_ v: SpecValue) -> String {
    switch v {
    case .string(let s): return s
    case .null: return "None"
    case .bool(let b): return b ? "True" : "False"
    default: return v.description
    }
  }
}
