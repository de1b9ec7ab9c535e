import Foundation
import Yams

/// A validated, fully resolved experiment spec: the schema's defaults, merged with the YAML file,
/// then the command-line overrides, then `${...}` interpolations resolved and every value typed.
public struct Spec: Sendable {
  /// The resolved tree, keys in schema order.
  public let tree: SpecMap
  /// Where the spec came from (file path or a name), for messages.
  public let source: String

  public static func load(file: String, overrides: [String] = [], schema: SpecSection = CLIPSchema.root) throws -> Spec {
    guard let data = FileManager.default.contents(atPath: file) else { throw SpecError.fileNotFound(file) }
    guard let text = String(data: data, encoding: .utf8) else {
      throw SpecError.yamlSyntax(file: file, message: "file is not UTF-8 text")
    }
    return try load(yaml: text, name: file, overrides: overrides, schema: schema)
  }

  public static func load(yaml: String, name: String = "spec", overrides: [String] = [],
                          schema: SpecSection = CLIPSchema.root) throws -> Spec {
    var tree = schema.defaults
    let parsed = try YAMLInput.parse(yaml, file: name)
    switch parsed.value {
    case .null: break  // an empty file is an empty spec
    case .map(let m): tree = try Merge(origin: parsed).section(m, into: tree, schema: schema, path: "")
    default: throw SpecError.yamlSyntax(file: name, message: "the top level must be a mapping of sections, got \(parsed.value.kindName)")
    }
    for o in overrides { try Override.apply(o, to: &tree, schema: schema) }
    tree = try Interpolation(root: tree, schema: schema).resolveAll()
    return Spec(tree: tree, source: name)
  }

  /// The value at a dotted path (`train.optim.vision_lr`, `dataset.train.datasets.0.image_dir`).
  public func value(_ path: String) -> SpecValue? { lookup(.map(tree), path.split(separator: ".").map(String.init)) }

  /// Fails listing every `???` still present under the given top-level sections or keys.
  public func requireSet(_ roots: [String]) throws {
    var missing: [String] = []
    func walk(_ v: SpecValue, _ path: String) {
      switch v {
      case .missing: missing.append(path)
      case .map(let m): for (k, c) in m.entries { walk(c, path.isEmpty ? k : "\(path).\(k)") }
      case .list(let l): for (i, c) in l.enumerated() { walk(c, "\(path).\(i)") }
      default: break
      }
    }
    for r in roots { if let v = value(r) { walk(v, r) } }
    if !missing.isEmpty { throw SpecError.missingMandatory(paths: missing) }
  }

  /// A copy with one `key=value` assignment applied, typed and checked as a command-line override.
  public func overriding(_ assignment: String, schema: SpecSection = CLIPSchema.root) throws -> Spec {
    var t = tree
    try Override.apply(assignment, to: &t, schema: schema)
    return Spec(tree: t, source: source)
  }

  /// The resolved spec as YAML (what `experiment.yaml` holds).
  public func yaml() -> String { YAMLOutput.emit(tree) }
}

func lookup(_ v: SpecValue, _ parts: [String]) -> SpecValue? {
  var cur = v
  for p in parts {
    switch cur {
    case .map(let m): guard let n = m[p] else { return nil }; cur = n
    case .list(let l): guard let i = Int(p), l.indices.contains(i) else { return nil }; cur = l[i]
    default: return nil
    }
  }
  return cur
}

/// Parsed YAML plus the line of every key, for error messages that point into the file.
struct YAMLInput {
  let value: SpecValue
  let file: String
  let lines: [String: Int]

  static func parse(_ text: String, file: String) throws -> YAMLInput {
    let node: Node?
    do {
      node = try Yams.compose(yaml: text)
    } catch let e as YamlError {
      throw SpecError.yamlSyntax(file: file, message: "\(e)".replacingOccurrences(of: "\n", with: " "))
    } catch {
      throw SpecError.yamlSyntax(file: file, message: error.localizedDescription)
    }
    var lines: [String: Int] = [:]
    let value = try node.map { try convert($0, path: "", file: file, lines: &lines) } ?? .null
    return YAMLInput(value: value, file: file, lines: lines)
  }

  static func convert(_ node: Node, path: String, file: String, lines: inout [String: Int]) throws -> SpecValue {
    switch node {
    case .scalar(let s):
      return scalar(s.string, quoted: s.style == .singleQuoted || s.style == .doubleQuoted || s.style == .literal || s.style == .folded, node: node)
    case .sequence(let seq):
      return .list(try seq.enumerated().map { i, n in try convert(n, path: "\(path).\(i)", file: file, lines: &lines) })
    case .mapping(let m):
      var out = SpecMap()
      for (k, v) in m {
        guard case .scalar(let ks) = k else { throw SpecError.yamlSyntax(file: file, message: "line \(k.mark?.line ?? 0): mapping keys must be plain strings") }
        let key = ks.string
        let p = path.isEmpty ? key : "\(path).\(key)"
        if out[key] != nil { throw SpecError.yamlSyntax(file: file, message: "line \(k.mark?.line ?? 0): duplicate key '\(p)'") }
        if let line = k.mark?.line { lines[p] = line }
        out[key] = try convert(v, path: p, file: file, lines: &lines)
      }
      return .map(out)
    case .alias:
      throw SpecError.yamlSyntax(file: file, message: "YAML aliases are not supported (at '\(path)')")
    }
  }

  /// Plain YAML scalars resolve as YAML 1.1 core types; quoted ones stay strings.
  static func scalar(_ s: String, quoted: Bool, node: Node? = nil) -> SpecValue {
    if quoted { return .string(s) }
    if s == "???" { return .missing }
    switch s {
    case "", "~", "null", "Null", "NULL": return .null
    case "true", "True", "TRUE": return .bool(true)
    case "false", "False", "FALSE": return .bool(false)
    default: break
    }
    if let i = Int(s.replacingOccurrences(of: "_", with: "")), s.first != "_" { return .int(i) }
    if let d = parseFloat(s) { return .float(d) }
    return .string(s)
  }

  func origin(_ path: String) -> String {
    if let l = lines[path] { return "\(file):\(l): " }
    return "\(file): "
  }
}

/// Float text as YAML and Python both read it: 1.0e-4, 1e-4, .5, inf/.inf, nan/.nan.
func parseFloat(_ s: String) -> Double? {
  let t = s.trimmingCharacters(in: .whitespaces)
  switch t.lowercased() {
  case ".inf", "+.inf", "inf", "+inf": return .infinity
  case "-.inf", "-inf": return -.infinity
  case ".nan", "nan": return .nan
  default: break
  }
  guard t.range(of: #"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"#, options: .regularExpression) != nil else { return nil }
  return Double(t)
}
