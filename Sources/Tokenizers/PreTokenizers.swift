import Foundation

/// Splits normalized text into pieces the model encodes independently.
protocol PreTokenizer {
  /// `first` is true for the segment that starts the original input (Metaspace's "first" scheme).
  func split(_ pieces: [Scalars], first: Bool) -> [Scalars]
}

/// How a delimiter match is kept when splitting (tokenizers' SplitDelimiterBehavior).
enum SplitBehavior: String {
  case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious",
    mergedWithNext = "MergedWithNext", contiguous = "Contiguous"

  init(json: String?, file: String, part: String) throws {
    guard let j = json else { self = .isolated; return }
    // Older files write snake_case.
    let map = ["removed": "Removed", "isolated": "Isolated", "merged_with_previous": "MergedWithPrevious",
               "merged_with_next": "MergedWithNext", "contiguous": "Contiguous"]
    guard let b = SplitBehavior(rawValue: map[j] ?? j) else {
      throw TokenizerError.malformed(file: file, part: part, reason: "unknown split behavior '\(j)'")
    }
    self = b
  }

  /// Applies the behavior to `s` given its delimiter matches (sorted, non-overlapping).
  func apply(_ s: Scalars, matches: [Range<Int>], invert: Bool = false) -> [Scalars] {
    var segments: [(Range<Int>, Bool)] = []
    var last = 0
    for m in matches {
      if m.lowerBound > last { segments.append((last..<m.lowerBound, invert)) }
      segments.append((m, !invert))
      last = m.upperBound
    }
    if last < s.count { segments.append((last..<s.count, invert)) }
    var out: [Scalars] = []
    switch self {
    case .removed:
      out = segments.filter { !$0.1 }.map { Array(s[$0.0]) }
    case .isolated:
      out = segments.map { Array(s[$0.0]) }
    case .mergedWithPrevious:
      var previousWasMatch = false
      for (r, isMatch) in segments {
        if isMatch && !out.isEmpty && !previousWasMatch { out[out.count - 1] += s[r] } else { out.append(Array(s[r])) }
        previousWasMatch = isMatch
      }
    case .mergedWithNext:
      var pending: Scalars? = nil
      for (r, isMatch) in segments {
        if isMatch {
          if let p = pending { out.append(p) }
          pending = Array(s[r])
        } else {
          out.append((pending ?? []) + s[r])
          pending = nil
        }
      }
      if let p = pending { out.append(p) }
    case .contiguous:
      var previousWasMatch = false
      for (r, isMatch) in segments {
        if isMatch && previousWasMatch && !out.isEmpty { out[out.count - 1] += s[r] } else { out.append(Array(s[r])) }
        previousWasMatch = isMatch
      }
    }
    return out.filter { !$0.isEmpty }
  }
}

enum PreTokenizers {
  static func make(_ o: JSONObject) throws -> PreTokenizer {
    let type = try o.type()
    switch type {
    case "Sequence":
      return SequencePreTokenizer(items: try o.array("pretokenizers").enumerated().map { try make(o.sub($0.element, "pretokenizers[\($0.offset)]")) })
    case "Metaspace":
      let replacement = (o.optionalString("replacement") ?? "▁").scalars
      var scheme = o.optionalString("prepend_scheme") ?? (o.bool("add_prefix_space", default: true) ? "always" : "never")
      scheme = scheme.lowercased()
      guard ["always", "first", "never"].contains(scheme), replacement.count == 1 else {
        throw TokenizerError.malformed(file: o.file, part: o.part, reason: "bad Metaspace replacement or prepend_scheme")
      }
      return Metaspace(replacement: replacement[0], scheme: scheme, split: o.bool("split", default: true))
    case "ByteLevel":
      return ByteLevelPreTokenizer(addPrefixSpace: o.bool("add_prefix_space", default: true), useRegex: o.bool("use_regex", default: true))
    case "Whitespace": return try RegexSplit(regex: Regex(#"\w+|[^\w\s]+"#), behavior: .removed, invert: true)
    case "WhitespaceSplit": return PredicateSplit(behavior: .removed) { $0.isWhitespace }
    case "BertPreTokenizer": return BertPreTokenizer()
    case "Punctuation":
      return PredicateSplit(behavior: try SplitBehavior(json: o.optionalString("behavior"), file: o.file, part: o.part)) {
        $0.isASCIIPunctuation || $0.isPunctuation
      }
    case "Digits":
      return PredicateSplit(behavior: o.bool("individual_digits", default: false) ? .isolated : .contiguous) {
        $0.properties.numericType != nil
      }
    case "CharDelimiterSplit":
      let d = try o.string("delimiter").scalars
      guard d.count == 1 else { throw TokenizerError.malformed(file: o.file, part: o.part, reason: "delimiter must be one character") }
      return PredicateSplit(behavior: .removed) { $0 == d[0] }
    case "Split":
      let behavior = try SplitBehavior(json: o.optionalString("behavior"), file: o.file, part: o.part)
      let pattern = try Pattern(try o.object("pattern"))
      return PatternSplit(pattern: pattern, behavior: behavior, invert: o.bool("invert", default: false))
    default:
      throw TokenizerError.unsupported(file: o.file, part: o.part, type: type)
    }
  }
}

struct SequencePreTokenizer: PreTokenizer {
  let items: [PreTokenizer]
  func split(_ pieces: [Scalars], first: Bool) -> [Scalars] { items.reduce(pieces) { $1.split($0, first: first) } }
}

struct PredicateSplit: PreTokenizer {
  let behavior: SplitBehavior
  let predicate: (Unicode.Scalar) -> Bool
  func split(_ pieces: [Scalars], first: Bool) -> [Scalars] {
    pieces.flatMap { p in
      behavior.apply(p, matches: p.indices.filter { predicate(p[$0]) }.map { $0..<($0 + 1) })
    }
  }
}

struct RegexSplit: PreTokenizer {
  let regex: Regex
  let behavior: SplitBehavior
  let invert: Bool
  func split(_ pieces: [Scalars], first: Bool) -> [Scalars] {
    pieces.flatMap { behavior.apply($0, matches: regex.matches(in: $0), invert: invert) }
  }
}

struct PatternSplit: PreTokenizer {
  let pattern: Pattern
  let behavior: SplitBehavior
  let invert: Bool
  func split(_ pieces: [Scalars], first: Bool) -> [Scalars] {
    pieces.flatMap { behavior.apply($0, matches: pattern.matches(in: $0), invert: invert) }
  }
}

struct BertPreTokenizer: PreTokenizer {
  func split(_ pieces: [Scalars], first: Bool) -> [Scalars] {
    let ws = PredicateSplit(behavior: .removed) { $0.isWhitespace }
    let punct = PredicateSplit(behavior: .isolated) { $0.isASCIIPunctuation || $0.isPunctuation }
    return punct.split(ws.split(pieces, first: first), first: first)
  }
}

struct Metaspace: PreTokenizer {
  let replacement: Unicode.Scalar
  let scheme: String
  let split: Bool
  func split(_ pieces: [Scalars], first: Bool) -> [Scalars] {
    pieces.enumerated().flatMap { i, p -> [Scalars] in
      var s = p.map { $0 == " " ? replacement : $0 }
      let startsOriginal = first && i == 0
      if s.first != replacement && (scheme == "always" || (scheme == "first" && startsOriginal)) {
        s.insert(replacement, at: 0)
      }
      guard split else { return [s] }
      return SplitBehavior.mergedWithNext.apply(s, matches: s.indices.filter { s[$0] == replacement }.map { $0..<($0 + 1) })
    }
  }
}

struct ByteLevelPreTokenizer: PreTokenizer {
  let addPrefixSpace: Bool
  let useRegex: Bool
  static let gpt2 = try! Regex(#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#)

  func split(_ pieces: [Scalars], first: Bool) -> [Scalars] {
    pieces.flatMap { p -> [Scalars] in
      var s = p
      if addPrefixSpace && s.first != " " { s.insert(" ", at: 0) }
      let parts = useRegex ? SplitBehavior.isolated.apply(s, matches: ByteLevelPreTokenizer.gpt2.matches(in: s)) : [s]
      return parts.map { ByteLevel.encode($0.utf8Bytes) }
    }
  }
}

/// GPT-2's reversible byte <-> printable character table.
enum ByteLevel {
  static let byteToChar: [Unicode.Scalar] = {
    var bs: [Int] = Array(33...126) + Array(161...172) + Array(174...255)
    var cs = bs
    var n = 0
    for b in 0..<256 where !bs.contains(b) {
      bs.append(b)
      cs.append(256 + n)
      n += 1
    }
    var table = [Unicode.Scalar](repeating: " ", count: 256)
    for (b, c) in zip(bs, cs) { table[b] = Unicode.Scalar(UInt32(c))! }
    return table
  }()
  static let charToByte: [UInt32: UInt8] = {
    var d: [UInt32: UInt8] = [:]
    for (b, c) in byteToChar.enumerated() { d[c.value] = UInt8(b) }
    return d
  }()
  static func encode(_ bytes: [UInt8]) -> Scalars { bytes.map { byteToChar[Int($0)] } }
  static func decode(_ s: Scalars) -> [UInt8] { s.compactMap { charToByte[$0.value] } }
}
