import Foundation

/// Text clean-up the CLIP-family tokenizers apply before tokenizing, written to give what the
/// Python reference gives: open_clip's basic_clean (ftfy.fix_text + html.unescape twice + strip),
/// whitespace_clean, Python's str.lower(), and canonicalize_text (TAO / big_vision).
public enum TextCleaning {
  /// Python's str.isspace: White_Space plus the information separators U+001C...U+001F.
  static func isPythonSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace || (0x1C...0x1F).contains(c.value) }

  /// `" ".join(text.split())`.
  public static func collapseWhitespace(_ s: String) -> String {
    var out = Scalars(), pending = false
    for c in s.unicodeScalars {
      if isPythonSpace(c) { pending = !out.isEmpty; continue }
      if pending { out.append(" "); pending = false }
      out.append(c)
    }
    return out.string
  }

  /// Python's str.strip().
  public static func strip(_ s: String) -> String {
    var a = Array(s.unicodeScalars)[...]
    while let f = a.first, isPythonSpace(f) { a = a.dropFirst() }
    while let l = a.last, isPythonSpace(l) { a = a.dropLast() }
    return Array(a).string
  }

  /// Python's str.lower(): full Unicode lowercasing with the Final_Sigma rule.
  public static func pythonLower(_ s: String) -> String {
    let sc = Array(s.unicodeScalars)
    var out = Scalars()
    out.reserveCapacity(sc.count)
    for (i, c) in sc.enumerated() {
      if c.value == 0x03A3 {
        var j = i - 1
        while j >= 0 && sc[j].properties.isCaseIgnorable { j -= 1 }
        let before = j >= 0 && sc[j].properties.isCased
        var k = i + 1
        while k < sc.count && sc[k].properties.isCaseIgnorable { k += 1 }
        let after = k < sc.count && sc[k].properties.isCased
        out.append(before && !after ? "\u{03C2}" : "\u{03C3}")
      } else if c.isASCII {
        out.append(c.properties.isUppercase ? Unicode.Scalar(c.value + 32)! : c)
      } else {
        out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
      }
    }
    return out.string
  }

  /// TAO's canonicalize_text: '_' to space, drop ASCII punctuation, lowercase, collapse spaces.
  public static func canonicalize(_ s: String) -> String {
    let noPunct = s.replacingOccurrences(of: "_", with: " ").unicodeScalars.filter { !$0.isASCIIPunctuation }
    return strip(collapseWhitespace(pythonLower(Array(noPunct).string)))
  }

  /// Python's html.unescape.
  public static func htmlUnescape(_ s: String) -> String {
    guard s.contains("&") else { return s }
    let sc = Array(s.unicodeScalars)
    var out = Scalars()
    var i = 0
    while i < sc.count {
      guard sc[i] == "&" else { out.append(sc[i]); i += 1; continue }
      var j = i + 1
      if j < sc.count && sc[j] == "#" {
        j += 1
        var hex = false
        if j < sc.count && (sc[j] == "x" || sc[j] == "X") { hex = true; j += 1 }
        let start = j
        while j < sc.count && (hex ? sc[j].properties.isASCIIHexDigit : ("0"..."9").contains(sc[j])) { j += 1 }
        guard j > start else { out.append(sc[i]); i += 1; continue }
        let digits = Array(sc[start..<j]).string
        if j < sc.count && sc[j] == ";" { j += 1 }
        let num = UInt64(digits.count > 12 ? "FFFFFFFFFFFF" : digits, radix: hex ? 16 : 10) ?? UInt64.max
        if num <= UInt64(UInt32.max), let r = HTMLEntities.invalidCharrefs[UInt32(num)] {
          out.append(contentsOf: r.unicodeScalars)
        } else if (0xD800...0xDFFF).contains(num) || num > 0x10FFFF {
          out.append("\u{FFFD}")
        } else if HTMLEntities.invalidCodepoints.contains(UInt32(num)) {
          // dropped
        } else {
          out.append(Unicode.Scalar(UInt32(num))!)
        }
        i = j
        continue
      }
      // Named: up to 32 characters that are not \t \n \f space < & # ;, then an optional ';'.
      while j < sc.count && j - (i + 1) < 32 && !["\t", "\n", "\u{0C}", " ", "<", "&", "#", ";"].contains(sc[j]) { j += 1 }
      if j < sc.count && sc[j] == ";" && j - (i + 1) < 32 { j += 1 }
      let name = Array(sc[(i + 1)..<j]).string
      if name.isEmpty { out.append(sc[i]); i += 1; continue }
      if let r = HTMLEntities.named[name] {
        out.append(contentsOf: r.unicodeScalars)
      } else {
        let nameScalars = Array(name.unicodeScalars)
        var done = false
        var x = nameScalars.count - 1
        while x > 1 {
          if let r = HTMLEntities.named[Array(nameScalars[0..<x]).string] {
            out.append(contentsOf: r.unicodeScalars)
            out.append(contentsOf: nameScalars[x...])
            done = true
            break
          }
          x -= 1
        }
        if !done { out.append("&"); out.append(contentsOf: nameScalars) }
      }
      i = j
    }
    return out.string
  }

  // ftfy.fix_text's deterministic steps. (Mojibake repair — re-decoding text that was decoded
  // with the wrong codec — is heuristic and not reproduced.)
  static let ligatures: [UInt32: String] = [
    0x132: "IJ", 0x133: "ij", 0x149: "\u{2BC}n", 0x1F1: "DZ", 0x1F2: "Dz", 0x1F3: "dz", 0x1C4: "D\u{17D}",
    0x1C5: "D\u{17E}", 0x1C6: "d\u{17E}", 0x1C7: "LJ", 0x1C8: "Lj", 0x1C9: "lj", 0x1CA: "NJ", 0x1CB: "Nj",
    0x1CC: "nj", 0xFB00: "ff", 0xFB01: "fi", 0xFB02: "fl", 0xFB03: "ffi", 0xFB04: "ffl", 0xFB05: "\u{17F}t", 0xFB06: "st",
  ]
  static let windows1252: [UInt32] = [
    0x20AC, 0x81, 0x201A, 0x192, 0x201E, 0x2026, 0x2020, 0x2021, 0x2C6, 0x2030, 0x160, 0x2039, 0x152, 0x8D, 0x17D, 0x8F,
    0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x2DC, 0x2122, 0x161, 0x203A, 0x153, 0x9D, 0x17E, 0x178,
  ]
  static func isFtfyControl(_ v: UInt32) -> Bool {
    v <= 0x08 || v == 0x0B || (0x0E...0x1F).contains(v) || v == 0x7F || (0x206A...0x206F).contains(v) || v == 0xFEFF
      || (0xFFF9...0xFFFC).contains(v)
  }

  public static func ftfyFixText(_ text: String) -> String {
    var s = text
    let unescape = !text.contains("<")
    for _ in 0..<8 {
      let before = s
      if unescape { s = ftfyUnescape(s) }
      var sc = Scalars()
      for c in s.unicodeScalars {
        var v = c.value
        if (0x80...0x9F).contains(v) { v = windows1252[Int(v - 0x80)] }                // fix_c1_controls
        if let l = ligatures[v] { sc.append(contentsOf: l.unicodeScalars); continue }   // fix_latin_ligatures
        if v == 0x3000 { sc.append(" "); continue }                                      // fix_character_width
        if (0xFF01...0xFFEF).contains(v) {
          let w = String(Unicode.Scalar(v)!).precomposedStringWithCompatibilityMapping
          sc.append(contentsOf: w.unicodeScalars)
          continue
        }
        if v == 0x2BC || (0x2018...0x201B).contains(v) { sc.append("'"); continue }      // uncurl_quotes
        if (0x201C...0x201F).contains(v) { sc.append("\""); continue }
        sc.append(Unicode.Scalar(v)!)
      }
      s = sc.string
      s = s.replacingOccurrences(of: "\r\n", with: "\n")                                // fix_line_breaks
      s = String(String.UnicodeScalarView(s.unicodeScalars.map { c in
        [0x0D, 0x2028, 0x2029, 0x85].contains(c.value) ? "\n" : c
      }))
      s = removeTerminalEscapes(s)
      s = String(String.UnicodeScalarView(s.unicodeScalars.filter { !isFtfyControl($0.value) }))  // remove_control_chars
      s = s.precomposedStringWithCanonicalMapping                                       // NFC
      if s.unicodeScalars.elementsEqual(before.unicodeScalars) { break }
    }
    return s
  }

  /// ftfy's unescape_html: `&name;` entities (and all-uppercase spellings of lowercase ones) and
  /// numeric references that decode completely; everything else is left as written.
  static func ftfyUnescape(_ s: String) -> String {
    guard s.contains("&") else { return s }
    let re = try! NSRegularExpression(pattern: "&#?[0-9A-Za-z]{1,24};?")
    let ns = s as NSString
    var out = ""
    var last = 0
    for m in re.matches(in: s, range: NSRange(location: 0, length: ns.length)) {
      out += ns.substring(with: NSRange(location: last, length: m.range.location - last))
      let text = ns.substring(with: m.range)
      out += ftfyEntity(text)
      last = m.range.location + m.range.length
    }
    out += ns.substring(from: last)
    return out
  }

  static func ftfyEntity(_ text: String) -> String {
    let name = String(text.dropFirst())
    if name.hasSuffix(";") {
      if let v = HTMLEntities.named[name] { return v }
      let lower = name.lowercased()
      if name == name.uppercased(), name != lower, let v = HTMLEntities.named[lower], htmlUnescape(text) == text {
        return v.uppercased()
      }
    }
    if text.hasPrefix("&#") {
      let u = htmlUnescape(text)
      return u.contains(";") ? text : u
    }
    return text
  }

  static func removeTerminalEscapes(_ s: String) -> String {
    guard s.unicodeScalars.contains("\u{1B}") else { return s }
    let re = try! NSRegularExpression(pattern: "\u{1B}\\[((?:\\d|;)*)([a-zA-Z])")
    return re.stringByReplacingMatches(in: s, range: NSRange(location: 0, length: (s as NSString).length), withTemplate: "")
  }

  /// open_clip's basic_clean.
  public static func basicClean(_ s: String) -> String { strip(htmlUnescape(htmlUnescape(ftfyFixText(s)))) }
}
