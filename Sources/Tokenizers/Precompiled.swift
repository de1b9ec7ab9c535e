import Foundation

/// SentencePiece's precompiled character map (the "Precompiled" normalizer of T5/ALBERT-style
/// tokenizers): a Darts double-array trie over UTF-8 keys plus a blob of NUL-terminated
/// replacement strings. Applied per grapheme cluster, then per character, as tokenizers does.
struct PrecompiledNormalizer: Normalizer {
  let units: [UInt32]
  let normalized: [UInt8]

  init(_ bytes: [UInt8], file: String) throws {
    guard bytes.count >= 4 else { throw TokenizerError.malformed(file: file, part: "normalizer", reason: "precompiled_charsmap is too short") }
    let trieSize = Int(UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24)
    guard trieSize % 4 == 0, 4 + trieSize <= bytes.count else {
      throw TokenizerError.malformed(file: file, part: "normalizer", reason: "precompiled_charsmap trie size \(trieSize) exceeds the data")
    }
    var u: [UInt32] = []
    u.reserveCapacity(trieSize / 4)
    var i = 4
    while i < 4 + trieSize {
      u.append(UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)
      i += 4
    }
    units = u
    normalized = Array(bytes[(4 + trieSize)...])
  }

  /// Values of every key that is a prefix of `key` (shortest first).
  func commonPrefixSearch(_ key: [UInt8]) -> [Int] {
    func offset(_ u: UInt32) -> Int { Int((u >> 10) << ((u & (1 << 9)) >> 6)) }
    func hasLeaf(_ u: UInt32) -> Bool { (u >> 8) & 1 == 1 }
    func value(_ u: UInt32) -> Int { Int(u & ((1 << 31) - 1)) }
    func label(_ u: UInt32) -> UInt32 { u & ((1 << 31) | 0xFF) }
    var out: [Int] = []
    guard !units.isEmpty else { return out }
    var pos = 0
    pos ^= offset(units[pos])
    for c in key {
      if c == 0 { break }
      pos ^= Int(c)
      guard pos >= 0, pos < units.count else { return out }
      let unit = units[pos]
      if label(unit) != UInt32(c) { return out }
      pos ^= offset(unit)
      guard pos < units.count else { return out }
      if hasLeaf(unit) { out.append(value(units[pos])) }
    }
    return out
  }

  func transform(_ key: [UInt8]) -> [UInt8]? {
    guard let start = commonPrefixSearch(key).first, start < normalized.count else { return nil }
    var end = start
    while end < normalized.count && normalized[end] != 0 { end += 1 }
    return Array(normalized[start..<end])
  }

  func normalize(_ s: Scalars) -> Scalars {
    var out: [UInt8] = []
    for grapheme in s.string {
      let g = Array(grapheme.utf8)
      if g.count < 6, let n = transform(g) {
        out += n
        continue
      }
      for c in grapheme.unicodeScalars {
        let b = utf8Bytes(c)
        out += transform(b) ?? b
      }
    }
    return bytesToString(out).scalars
  }
}
