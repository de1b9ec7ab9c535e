import Foundation

/// Turns token strings back into text (tokenizers' decoders work on the list of token strings).
protocol Decoder {
  func decode(_ tokens: [[UInt8]]) -> [[UInt8]]
}

enum Decoders {
  static func make(_ o: JSONObject) throws -> Decoder {
    let type = try o.type()
    switch type {
    case "Sequence":
      return SequenceDecoder(items: try o.array("decoders").enumerated().map { try make(o.sub($0.element, "decoders[\($0.offset)]")) })
    case "ByteLevel": return ByteLevelDecoder()
    case "Metaspace":
      let r = (o.optionalString("replacement") ?? "▁").utf8Bytes
      let scheme = (o.optionalString("prepend_scheme") ?? (o.bool("add_prefix_space", default: true) ? "always" : "never")).lowercased()
      return MetaspaceDecoder(replacement: r, stripFirst: scheme != "never")
    case "WordPiece":
      return WordPieceDecoder(prefix: (o.optionalString("prefix") ?? "##").utf8Bytes, cleanup: o.bool("cleanup", default: true))
    case "BPEDecoder": return BPEDecoder(suffix: (o.optionalString("suffix") ?? "</w>").utf8Bytes)
    case "ByteFallback": return ByteFallbackDecoder()
    case "Fuse": return FuseDecoder()
    case "Strip":
      return StripDecoder(content: (o.optionalString("content") ?? " ").utf8Bytes, start: o.optionalInt("start") ?? 0, stop: o.optionalInt("stop") ?? 0)
    case "Replace":
      let pattern = try o.object("pattern")
      guard let s = pattern.dict["String"] as? String else {
        throw TokenizerError.unsupported(file: o.file, part: o.part, type: "Replace with a regex")
      }
      return ReplaceDecoder(pattern: s.utf8Bytes, content: try o.string("content").utf8Bytes)
    default: throw TokenizerError.unsupported(file: o.file, part: o.part, type: type)
    }
  }
}

struct SequenceDecoder: Decoder {
  let items: [Decoder]
  func decode(_ t: [[UInt8]]) -> [[UInt8]] { items.reduce(t) { $1.decode($0) } }
}

struct ByteLevelDecoder: Decoder {
  func decode(_ t: [[UInt8]]) -> [[UInt8]] { [ByteLevel.decode(t.flatMap { bytesToString($0).scalars })] }
}

struct MetaspaceDecoder: Decoder {
  let replacement: [UInt8]
  let stripFirst: Bool
  func decode(_ t: [[UInt8]]) -> [[UInt8]] {
    t.enumerated().map { i, tok in
      var out = replace(tok, replacement, with: [0x20])
      if i == 0 && stripFirst && out.first == 0x20 { out.removeFirst() }
      return out
    }
  }
}

struct WordPieceDecoder: Decoder {
  let prefix: [UInt8]
  let cleanup: Bool
  func decode(_ t: [[UInt8]]) -> [[UInt8]] {
    t.enumerated().map { i, tok in
      var out = tok
      if i != 0 {
        if tok.starts(with: prefix) { out = Array(tok.dropFirst(prefix.count)) } else { out = [0x20] + tok }
      }
      if cleanup { out = cleanupSpaces(out) }
      return out
    }
  }
}

struct BPEDecoder: Decoder {
  let suffix: [UInt8]
  func decode(_ t: [[UInt8]]) -> [[UInt8]] {
    t.enumerated().map { i, tok in replace(tok, suffix, with: i == t.count - 1 ? [] : [0x20]) }
  }
}

struct ByteFallbackDecoder: Decoder {
  func decode(_ t: [[UInt8]]) -> [[UInt8]] {
    var out: [[UInt8]] = []
    var pending: [UInt8] = []
    func flush() {
      guard !pending.isEmpty else { return }
      if String(validating: pending, as: UTF8.self) != nil { out.append(pending) }
      else { for _ in pending { out.append(Array("\u{FFFD}".utf8)) } }
      pending = []
    }
    for tok in t {
      let s = bytesToString(tok)
      if tok.count == 6, s.hasPrefix("<0x"), s.hasSuffix(">"), let b = UInt8(s.dropFirst(3).dropLast(), radix: 16) {
        pending.append(b)
      } else {
        flush()
        out.append(tok)
      }
    }
    flush()
    return out
  }
}

struct FuseDecoder: Decoder {
  func decode(_ t: [[UInt8]]) -> [[UInt8]] { [t.flatMap { $0 }] }
}

struct StripDecoder: Decoder {
  let content: [UInt8]
  let start: Int, stop: Int
  func decode(_ t: [[UInt8]]) -> [[UInt8]] {
    t.map { tok in
      var s = bytesToString(tok).scalars[...]
      let c = bytesToString(content).scalars.first
      var n = 0
      while n < start, let f = s.first, f == c { s = s.dropFirst(); n += 1 }
      n = 0
      while n < stop, let l = s.last, l == c { s = s.dropLast(); n += 1 }
      return Array(s).utf8Bytes
    }
  }
}

struct ReplaceDecoder: Decoder {
  let pattern: [UInt8]
  let content: [UInt8]
  func decode(_ t: [[UInt8]]) -> [[UInt8]] { t.map { replace($0, pattern, with: content) } }
}

func replace(_ s: [UInt8], _ pattern: [UInt8], with content: [UInt8]) -> [UInt8] {
  guard !pattern.isEmpty, s.count >= pattern.count else { return s }
  var out: [UInt8] = []
  var i = 0
  while i < s.count {
    if i + pattern.count <= s.count && s[i..<(i + pattern.count)].elementsEqual(pattern) {
      out += content
      i += pattern.count
    } else {
      out.append(s[i])
      i += 1
    }
  }
  return out
}

/// transformers' clean_up_tokenization: no space before common punctuation and contractions.
func cleanupSpaces(_ b: [UInt8]) -> [UInt8] {
  var s = bytesToString(b)
  for (a, r) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
                 (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
    s = s.replacingOccurrences(of: a, with: r)
  }
  return s.utf8Bytes
}
