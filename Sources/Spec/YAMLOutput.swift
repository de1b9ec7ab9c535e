import Foundation

/// Writes a spec tree as block-style YAML that both Yams and PyYAML/OmegaConf read back to the
/// same values (floats always carry a '.', strings are quoted when a plain scalar would change type).
enum YAMLOutput {
  static func emit(_ m: SpecMap) -> String {
    var out = ""
    map(m, indent: 0, into: &out)
    return out
  }

  private static func map(_ m: SpecMap, indent: Int, into out: inout String) {
    let pad = String(repeating: " ", count: indent)
    for (k, v) in m.entries {
      switch v {
      case .map(let sub) where !sub.keys.isEmpty:
        out += "\(pad)\(key(k)):\n"
        map(sub, indent: indent + 2, into: &out)
      case .list(let items) where items.contains(where: { $0.mapValue != nil }):
        out += "\(pad)\(key(k)):\n"
        for item in items {
          if case .map(let sub) = item {
            var block = ""
            map(sub, indent: indent + 2, into: &block)
            // "- " replaces the first two spaces of the element's first line.
            let start = block.index(block.startIndex, offsetBy: indent)
            block.replaceSubrange(start..<block.index(start, offsetBy: 2), with: "- ")
            out += block
          } else {
            out += "\(pad)- \(scalar(item))\n"
          }
        }
      default:
        out += "\(pad)\(key(k)): \(scalar(v))\n"
      }
    }
  }

  private static func key(_ k: String) -> String { quoted(k) }

  static func scalar(_ v: SpecValue) -> String {
    switch v {
    case .null: return "null"
    case .missing: return "???"
    case .bool(let b): return b ? "true" : "false"
    case .int(let i): return String(i)
    case .float(let d):
      let s = formatFloat(d)
      // PyYAML reads 1e-06 as a string; 1.0e-06 is a float everywhere.
      if let e = s.firstIndex(of: "e"), !s[..<e].contains(".") { return s[..<e] + ".0" + s[e...] }
      return s
    case .string(let s): return quoted(s)
    case .list(let items): return "[" + items.map(scalar).joined(separator: ", ") + "]"
    case .map(let m): return "{" + m.entries.map { "\(key($0.0)): \(scalar($0.1))" }.joined(separator: ", ") + "}"
    }
  }

  static func quoted(_ s: String) -> String {
    let plainSafe = s.range(of: #"^[A-Za-z0-9_/.$~][A-Za-z0-9_/.$~ +()@,=-]*$"#, options: .regularExpression) != nil
      && !s.hasSuffix(" ") && !s.contains("${")
    if plainSafe, case .string = YAMLInput.scalar(s, quoted: false),
       !["yes", "no", "on", "off", "y", "n"].contains(s.lowercased()) {
      return s
    }
    if s.contains("\n") || s.contains("\t") || s.unicodeScalars.contains(where: { $0.value < 0x20 }) {
      let esc = s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        .replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\t", with: "\\t")
      return "\"\(esc)\""
    }
    return "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
  }
}
