import Foundation

/// A tokenizer regex (Oniguruma syntax in tokenizers) run with ICU's NSRegularExpression.
/// The classes that differ between the two engines are rewritten to Oniguruma's Unicode meaning:
/// \s is White_Space (ICU's lacks U+000B and U+0085), \w is Letter|Mark|Number|Connector
/// punctuation (ICU's adds ZWJ/ZWNJ and other Alphabetic characters).
final class Regex: @unchecked Sendable {
  let source: String
  private let re: NSRegularExpression

  init(_ pattern: String, file: String = "", part: String = "", caseInsensitive: Bool = false) throws {
    source = pattern
    do {
      re = try NSRegularExpression(pattern: Regex.translate(pattern), options: caseInsensitive ? [.caseInsensitive] : [])
    } catch {
      throw TokenizerError.malformed(file: file, part: part, reason: "cannot compile regex \(pattern)")
    }
  }

  static func translate(_ p: String) -> String {
    let ws = #"\p{White_Space}"#, notWs = #"\P{White_Space}"#
    let word = #"\p{L}\p{M}\p{N}\p{Pc}"#
    var out = ""
    var inClass = 0
    let it = Array(p)
    var i = 0
    while i < it.count {
      let c = it[i]
      if c == "\\" && i + 1 < it.count {
        let n = it[i + 1]
        switch n {
        case "s": out += inClass > 0 ? ws : "[\(ws)]"
        case "S": out += inClass > 0 ? notWs : "[\(notWs)]"
        case "w": out += inClass > 0 ? word : "[\(word)]"
        case "W": out += inClass > 0 ? "\\W" : "[^\(word)]"
        default: out.append(c); out.append(n)
        }
        i += 2
        continue
      }
      if c == "[" { inClass += 1 } else if c == "]" && inClass > 0 { inClass -= 1 }
      out.append(c)
      i += 1
    }
    return out
  }

  /// Non-overlapping matches as scalar index ranges (empty matches skipped).
  func matches(in s: Scalars) -> [Range<Int>] {
    let str = s.string
    let ns = str as NSString
    // UTF-16 offset -> scalar index.
    var toScalar = [Int](repeating: 0, count: ns.length + 1)
    var u = 0
    for (i, sc) in s.enumerated() {
      let w = sc.value > 0xFFFF ? 2 : 1
      for k in 0..<w { toScalar[u + k] = i }
      u += w
    }
    toScalar[ns.length] = s.count
    return re.matches(in: str, range: NSRange(location: 0, length: ns.length)).compactMap { m in
      guard m.range.length > 0 else { return nil }
      return toScalar[m.range.location]..<toScalar[m.range.location + m.range.length]
    }
  }
}
