import Foundation

/// A tokenizer.json normalizer: text in, text out (no offsets: ClipKit needs only ids).
protocol Normalizer {
  func normalize(_ s: Scalars) -> Scalars
}

enum Normalizers {
  static func make(_ o: JSONObject) throws -> Normalizer {
    let type = try o.type()
    switch type {
    case "Sequence":
      return SequenceNormalizer(try o.array("normalizers").enumerated().map { try make(o.sub($0.element, "normalizers[\($0.offset)]")) })
    case "Lowercase": return Lowercase()
    case "NFC": return UnicodeNormalization(form: .nfc)
    case "NFD": return UnicodeNormalization(form: .nfd)
    case "NFKC": return UnicodeNormalization(form: .nfkc)
    case "NFKD": return UnicodeNormalization(form: .nfkd)
    case "StripAccents": return StripAccents()
    case "Strip": return Strip(left: o.bool("strip_left", default: true), right: o.bool("strip_right", default: true))
    case "Prepend": return Prepend(text: try o.string("prepend").scalars)
    case "Replace":
      return Replace(pattern: try Pattern(try o.object("pattern")), content: try o.string("content").scalars)
    case "BertNormalizer":
      let lower = o.bool("lowercase", default: true)
      return BertNormalizer(cleanText: o.bool("clean_text", default: true),
                            chineseChars: o.bool("handle_chinese_chars", default: true),
                            stripAccents: (o.dict["strip_accents"] as? Bool) ?? lower, lowercase: lower)
    case "Precompiled":
      let data = try o.string("precompiled_charsmap")
      guard let bytes = Data(base64Encoded: data) else {
        throw TokenizerError.malformed(file: o.file, part: o.part, reason: "precompiled_charsmap is not base64")
      }
      return try PrecompiledNormalizer(Array(bytes), file: o.file)
    case "Nmt": return NmtNormalizer()
    case "ByteLevel": return ByteLevelNormalizer()
    default: throw TokenizerError.unsupported(file: o.file, part: o.part, type: type)
    }
  }
}

struct SequenceNormalizer: Normalizer {
  let items: [Normalizer]
  init(_ items: [Normalizer]) { self.items = items }
  func normalize(_ s: Scalars) -> Scalars { items.reduce(s) { $1.normalize($0) } }
}

/// Per-character lowercasing (Rust char::to_lowercase; no final-sigma context, as tokenizers).
struct Lowercase: Normalizer {
  func normalize(_ s: Scalars) -> Scalars {
    var out = Scalars()
    out.reserveCapacity(s.count)
    for c in s {
      if c.isASCII { out.append(c.properties.isUppercase ? Unicode.Scalar(c.value + 32)! : c) }
      else { out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars) }
    }
    return out
  }
}

struct UnicodeNormalization: Normalizer {
  enum Form { case nfc, nfd, nfkc, nfkd }
  let form: Form
  func normalize(_ s: Scalars) -> Scalars {
    if s.allSatisfy(\.isASCII) { return s }
    let str = s.string as NSString
    let r: String
    switch form {
    case .nfc: r = str.precomposedStringWithCanonicalMapping
    case .nfd: r = str.decomposedStringWithCanonicalMapping
    case .nfkc: r = str.precomposedStringWithCompatibilityMapping
    case .nfkd: r = str.decomposedStringWithCompatibilityMapping
    }
    return r.scalars
  }
}

struct StripAccents: Normalizer {
  func normalize(_ s: Scalars) -> Scalars { s.filter { !$0.isCombiningMark } }
}

struct Strip: Normalizer {
  let left: Bool, right: Bool
  func normalize(_ s: Scalars) -> Scalars {
    var a = s[...]
    if left { while let f = a.first, f.isWhitespace { a = a.dropFirst() } }
    if right { while let l = a.last, l.isWhitespace { a = a.dropLast() } }
    return Array(a)
  }
}

struct Prepend: Normalizer {
  let text: Scalars
  func normalize(_ s: Scalars) -> Scalars { s.isEmpty ? s : text + s }
}

struct Replace: Normalizer {
  let pattern: Pattern
  let content: Scalars
  func normalize(_ s: Scalars) -> Scalars {
    let matches = pattern.matches(in: s)
    if matches.isEmpty { return s }
    var out = Scalars()
    var last = 0
    for m in matches {
      out += s[last..<m.lowerBound]
      out += content
      last = m.upperBound
    }
    out += s[last...]
    return out
  }
}

struct BertNormalizer: Normalizer {
  let cleanText: Bool, chineseChars: Bool, stripAccents: Bool, lowercase: Bool

  static func isChinese(_ c: Unicode.Scalar) -> Bool {
    switch c.value {
    case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
         0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F: return true
    default: return false
    }
  }

  func normalize(_ s: Scalars) -> Scalars {
    var out = s
    if cleanText {
      out = out.compactMap { c in
        if c.value == 0 || c.value == 0xFFFD { return nil }
        if c == "\t" || c == "\n" || c == "\r" { return " " }
        if c.isControl { return nil }
        return c.isWhitespace ? " " : c
      }
    }
    if chineseChars {
      var padded = Scalars()
      for c in out {
        if BertNormalizer.isChinese(c) { padded += [" ", c, " "] } else { padded.append(c) }
      }
      out = padded
    }
    if stripAccents { out = StripAccents().normalize(UnicodeNormalization(form: .nfd).normalize(out)) }
    if lowercase { out = Lowercase().normalize(out) }
    return out
  }
}

/// SentencePiece's NMT normalization: drop control characters, map odd spaces to ' '.
struct NmtNormalizer: Normalizer {
  func normalize(_ s: Scalars) -> Scalars {
    s.compactMap { c in
      switch c.value {
      case 0x0001...0x0008, 0x000B, 0x000E...0x001F, 0x007F, 0x008F, 0x009F: return nil
      case 0x0009, 0x000A, 0x000C, 0x000D, 0x1680, 0x200B...0x200F, 0x2028, 0x2029, 0x2581, 0xFEFF, 0xFFFD: return " "
      default: return c
      }
    }
  }
}

struct ByteLevelNormalizer: Normalizer {
  func normalize(_ s: Scalars) -> Scalars { ByteLevel.encode(s.utf8Bytes) }
}

/// A string or regex pattern as tokenizer.json writes it: {"String": "x"} or {"Regex": "..."}.
struct Pattern {
  enum Kind { case literal(Scalars), regex(Regex) }
  let kind: Kind

  init(_ o: JSONObject) throws {
    if let s = o.dict["String"] as? String {
      kind = .literal(s.scalars)
    } else if let r = o.dict["Regex"] as? String {
      kind = .regex(try Regex(r, file: o.file, part: o.part))
    } else {
      throw TokenizerError.malformed(file: o.file, part: o.part, reason: "pattern must be {\"String\": ...} or {\"Regex\": ...}")
    }
  }
  init(literal: Scalars) { kind = .literal(literal) }

  /// Non-overlapping matches, left to right, as scalar index ranges.
  func matches(in s: Scalars) -> [Range<Int>] {
    switch kind {
    case .regex(let r): return r.matches(in: s)
    case .literal(let p):
      guard !p.isEmpty, p.count <= s.count else { return [] }
      var out: [Range<Int>] = []
      var i = 0
      while i + p.count <= s.count {
        if s[i] == p[0] && Array(s[i..<(i + p.count)]) == p {
          out.append(i..<(i + p.count))
          i += p.count
        } else {
          i += 1
        }
      }
      return out
    }
  }
}
