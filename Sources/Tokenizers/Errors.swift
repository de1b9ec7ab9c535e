import Foundation

/// A tokenizer file that cannot be read or uses something ClipKit does not implement.
public enum TokenizerError: Error, LocalizedError, Equatable {
  case io(path: String, reason: String)
  case malformed(file: String, part: String, reason: String)
  case unsupported(file: String, part: String, type: String)

  public var errorDescription: String? {
    switch self {
    case .io(let p, let r): return "\(p): \(r)"
    case .malformed(let f, let part, let r): return "\(f): \(part): \(r)"
    case .unsupported(let f, let part, let t): return "\(f): \(part) of type '\(t)' is not supported"
    }
  }
}

/// Typed access to a JSON object with errors naming the tokenizer part being read.
struct JSONObject {
  let dict: [String: Any]
  let file: String
  let part: String

  init(_ any: Any?, file: String, part: String) throws {
    guard let d = any as? [String: Any] else {
      throw TokenizerError.malformed(file: file, part: part, reason: "expected a JSON object")
    }
    dict = d
    self.file = file
    self.part = part
  }

  func has(_ key: String) -> Bool { dict[key] != nil && !(dict[key] is NSNull) }
  func type() throws -> String { try string("type") }

  func string(_ key: String) throws -> String {
    guard let s = dict[key] as? String else { throw missing(key, "a string") }
    return s
  }
  func optionalString(_ key: String) -> String? { dict[key] as? String }
  func bool(_ key: String, default d: Bool) -> Bool { (dict[key] as? Bool) ?? d }
  func int(_ key: String) throws -> Int {
    guard let n = dict[key] as? Int else { throw missing(key, "an integer") }
    return n
  }
  func optionalInt(_ key: String) -> Int? { dict[key] as? Int }
  func object(_ key: String) throws -> JSONObject { try JSONObject(dict[key], file: file, part: "\(part).\(key)") }
  func optionalObject(_ key: String) throws -> JSONObject? {
    guard has(key) else { return nil }
    return try object(key)
  }
  func array(_ key: String) throws -> [Any] {
    guard let a = dict[key] as? [Any] else { throw missing(key, "a list") }
    return a
  }
  func missing(_ key: String, _ what: String) -> TokenizerError {
    .malformed(file: file, part: part, reason: "'\(key)' must be \(what)")
  }
  func sub(_ any: Any?, _ name: String) throws -> JSONObject { try JSONObject(any, file: file, part: "\(part).\(name)") }
}
