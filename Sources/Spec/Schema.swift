import Foundation

/// The type of one spec field. Sections nest; `sections` is a list whose elements are sections
/// (for example `dataset.train.datasets`).
public indirect enum SpecType: Sendable {
  case bool, int, float, string
  case list(SpecType)
  case section(SpecSection)
  case sections(SpecSection)

  public var name: String {
    switch self {
    case .bool: return "boolean"
    case .int: return "integer"
    case .float: return "float"
    case .string: return "string"
    case .list(let t): return "list of \(t.name)s"
    case .section: return "section"
    case .sections: return "list of sections"
    }
  }
}

public struct SpecField: Sendable {
  public let name: String
  public let type: SpecType
  public let defaultValue: SpecValue
  public let nullable: Bool
  public let choices: [String]
  public let min: Double?
  public let max: Double?
  public let help: String

  public init(_ name: String, _ type: SpecType, _ defaultValue: SpecValue, nullable: Bool = false,
              choices: [String] = [], min: Double? = nil, max: Double? = nil, help: String = "") {
    self.name = name
    self.type = type
    self.defaultValue = defaultValue
    self.nullable = nullable
    self.choices = choices
    self.min = min
    self.max = max
    self.help = help
  }
}

public final class SpecSection: Sendable {
  public let fields: [SpecField]
  public init(_ fields: [SpecField]) { self.fields = fields }

  public func field(_ name: String) -> SpecField? { fields.first { $0.name == name } }

  /// The section filled with its defaults.
  public var defaults: SpecMap {
    SpecMap(fields.map { f in
      if case .section(let s) = f.type, f.defaultValue == .null, !f.nullable { return (f.name, .map(s.defaults)) }
      return (f.name, f.defaultValue)
    })
  }
}

// Small constructors so the schema reads like TAO's dataclasses.
func str(_ n: String, _ d: String?, choices: [String] = [], nullable: Bool = false, _ help: String = "") -> SpecField {
  SpecField(n, .string, d.map { .string($0) } ?? .null, nullable: nullable || d == nil, choices: choices, help: help)
}
func mandatoryStr(_ n: String, nullable: Bool = false, _ help: String = "") -> SpecField {
  SpecField(n, .string, .missing, nullable: nullable, help: help)
}
func int(_ n: String, _ d: Int?, min: Double? = nil, max: Double? = nil, _ help: String = "") -> SpecField {
  SpecField(n, .int, d.map { .int($0) } ?? .null, nullable: d == nil, min: min, max: max, help: help)
}
func float(_ n: String, _ d: Double?, min: Double? = nil, max: Double? = nil, _ help: String = "") -> SpecField {
  SpecField(n, .float, d.map { .float($0) } ?? .null, nullable: d == nil, min: min, max: max, help: help)
}
func bool(_ n: String, _ d: Bool?, _ help: String = "") -> SpecField {
  SpecField(n, .bool, d.map { .bool($0) } ?? .null, nullable: d == nil, help: help)
}
func floats(_ n: String, _ d: [Double], _ help: String = "") -> SpecField {
  SpecField(n, .list(.float), .list(d.map { .float($0) }), help: help)
}
func ints(_ n: String, _ d: [Int], _ help: String = "") -> SpecField {
  SpecField(n, .list(.int), .list(d.map { .int($0) }), help: help)
}
func strs(_ n: String, _ d: [String], nullable: Bool = false, _ help: String = "") -> SpecField {
  SpecField(n, .list(.string), .list(d.map { .string($0) }), nullable: nullable, help: help)
}
func section(_ n: String, _ s: SpecSection, nullable: Bool = false) -> SpecField {
  SpecField(n, .section(s), .map(s.defaults), nullable: nullable)
}
func sectionList(_ n: String, _ s: SpecSection, _ help: String = "") -> SpecField {
  SpecField(n, .sections(s), .list([]), help: help)
}
