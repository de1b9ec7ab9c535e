import Foundation

/// Everything that can be wrong with a spec or an override. Each case names the full key path.
public enum SpecError: Error, LocalizedError, Equatable {
  case fileNotFound(String)
  case yamlSyntax(file: String, message: String)
  case unknownKey(path: String, suggestion: String?, origin: String)
  case typeMismatch(path: String, expected: String, got: String, origin: String)
  case invalidChoice(path: String, value: String, choices: [String], origin: String)
  case outOfRange(path: String, value: String, bound: String, origin: String)
  case notNullable(path: String, origin: String)
  case missingMandatory(paths: [String])
  case badOverride(String, reason: String)
  case interpolation(path: String, reason: String)
  case unsupported(path: String, value: String, reason: String)

  public var errorDescription: String? {
    switch self {
    case .fileNotFound(let p):
      return "spec file not found: \(p)"
    case .yamlSyntax(let f, let m):
      return "\(f): malformed YAML: \(m)"
    case .unknownKey(let p, let s, let o):
      return "\(o)unknown key '\(p)'" + (s.map { "; did you mean '\($0)'?" } ?? "")
    case .typeMismatch(let p, let e, let g, let o):
      return "\(o)'\(p)' expects \(e), got \(g)"
    case .invalidChoice(let p, let v, let c, let o):
      return "\(o)'\(p)' must be one of \(c.joined(separator: ", ")); got '\(v)'"
    case .outOfRange(let p, let v, let b, let o):
      return "\(o)'\(p)' = \(v) is out of range (\(b))"
    case .notNullable(let p, let o):
      return "\(o)'\(p)' cannot be null"
    case .missingMandatory(let ps):
      return "mandatory value missing (???): " + ps.map { "'\($0)'" }.joined(separator: ", ")
        + "; set it in the spec or on the command line (\(ps[0])=...)"
    case .badOverride(let o, let r):
      return "bad override '\(o)': \(r)"
    case .interpolation(let p, let r):
      return "cannot resolve '\(p)': \(r)"
    case .unsupported(let p, let v, let r):
      return "'\(p)' = \(v) is not supported yet: \(r) (leave it at its default)"
    }
  }
}

/// The closest candidate by edit distance, if it is close enough to be a plausible typo.
func closest(_ word: String, among candidates: [String]) -> String? {
  func distance(_ a: [Character], _ b: [Character]) -> Int {
    var prev = Array(0...b.count)
    for (i, ca) in a.enumerated() {
      var cur = [i + 1] + Array(repeating: 0, count: b.count)
      for (j, cb) in b.enumerated() {
        cur[j + 1] = min(prev[j + 1] + 1, cur[j] + 1, prev[j] + (ca == cb ? 0 : 1))
      }
      prev = cur
    }
    return prev[b.count]
  }
  let w = Array(word.lowercased())
  let scored = candidates.map { ($0, distance(w, Array($0.lowercased()))) }
  guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
  // Accept up to roughly a third of the word wrong, or a candidate that contains the word.
  if best.1 <= max(2, w.count / 3) { return best.0 }
  if let sub = candidates.first(where: { $0.contains(word) || word.contains($0) }) { return sub }
  return best.1 <= max(3, w.count / 2) ? best.0 : nil
}
