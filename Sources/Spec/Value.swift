import Foundation

/// A spec value as it sits in the config tree: YAML scalars, lists and ordered maps, plus `???`
/// (OmegaConf's MISSING: a mandatory value nobody has set yet).
public indirect enum SpecValue: Equatable, Sendable, CustomStringConvertible {
  case null
  case missing
  case bool(Bool)
  case int(Int)
  case float(Double)
  case string(String)
  case list([SpecValue])
  case map(SpecMap)

  public var description: String {
    switch self {
    case .null: return "null"
    case .missing: return "???"
    case .bool(let b): return b ? "true" : "false"
    case .int(let i): return String(i)
    case .float(let d): return formatFloat(d)
    case .string(let s): return "'\(s)'"
    case .list(let l): return "[" + l.map(\.description).joined(separator: ", ") + "]"
    case .map(let m): return "{" + m.entries.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + "}"
    }
  }

  /// What kind of value this is, for error messages.
  public var kindName: String {
    switch self {
    case .null: return "null"
    case .missing: return "???"
    case .bool: return "a boolean"
    case .int: return "an integer"
    case .float: return "a float"
    case .string: return "a string"
    case .list: return "a list"
    case .map: return "a mapping"
    }
  }

  public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
  public var mapValue: SpecMap? { if case .map(let m) = self { return m } else { return nil } }
}

/// Floats print as YAML/Python would read them back (1.0e-04 style avoided: 0.0001, 1e-06).
func formatFloat(_ d: Double) -> String {
  if d.isNaN { return ".nan" }
  if d.isInfinite { return d > 0 ? ".inf" : "-.inf" }
  if d == d.rounded(), Swift.abs(d) < 1e15 { return String(format: "%.1f", d) }
  return "\(d)"
}

/// An insertion-ordered string map (spec sections keep the schema's order when written back).
public struct SpecMap: Equatable, Sendable {
  public private(set) var keys: [String] = []
  private var storage: [String: SpecValue] = [:]

  public init() {}
  public init(_ entries: [(String, SpecValue)]) { for (k, v) in entries { self[k] = v } }

  public subscript(key: String) -> SpecValue? {
    get { storage[key] }
    set {
      if let newValue {
        if storage[key] == nil { keys.append(key) }
        storage[key] = newValue
      } else if storage.removeValue(forKey: key) != nil {
        keys.removeAll { $0 == key }
      }
    }
  }
  public var entries: [(String, SpecValue)] { keys.map { ($0, storage[$0]!) } }
  public static func == (a: SpecMap, b: SpecMap) -> Bool { a.keys == b.keys && a.storage == b.storage }
}
