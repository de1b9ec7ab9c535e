import Foundation

/// OpenAI CLIP's byte-level BPE as open_clip's SimpleTokenizer runs it: the
/// `bpe_simple_vocab_16e6.txt.gz` merges (first 48,894 after the header line), a vocabulary of the
/// 256 byte characters, the same with `</w>`, the merges, then `<start_of_text>`/`<end_of_text>`;
/// text cleaned (ftfy, HTML unescape, whitespace) and lowercased; context 77 with the last slot
/// forced to end-of-text on truncation and zero padding.
public final class CLIPBPETokenizer: @unchecked Sendable {
  public enum Clean: Sendable { case lower, whitespace, canonicalize }

  let encoder: [[UInt8]: Int]
  let decoder: [Int: [UInt8]]
  let ranks: [Int64: (rank: Int, id: Int)]
  let specials: [String]
  let pattern: Regex
  public let contextLength: Int
  public let clean: Clean
  public let startOfText: Int
  public let endOfText: Int
  public var vocabSize: Int { encoder.count }
  private var cache: [[UInt8]: [Int]] = [:]
  private let lock = NSLock()

  public init(bpePath: String, contextLength: Int = 77, clean: Clean = .lower, additionalSpecialTokens: [String] = []) throws {
    let bytes = try gunzip(bpePath)
    let lines = bytesToString(bytes).components(separatedBy: "\n")
    let mergeCount = 49152 - 256 - 2
    guard lines.count > mergeCount else {
      throw TokenizerError.malformed(file: bpePath, part: "merges", reason: "expected at least \(mergeCount) merge lines, found \(lines.count - 1)")
    }
    // The byte characters in the order bytes_to_unicode() lists them (printable ranges first).
    let printable = Array(33...126) + Array(161...172) + Array(174...255)
    let order = printable + (0..<256).filter { !printable.contains($0) }
    var vocab: [[UInt8]] = order.map { [ByteLevel.byteToChar[$0]].utf8Bytes }
    vocab += vocab.map { $0 + Array("</w>".utf8) }
    var merges: [([UInt8], [UInt8])] = []
    for (i, line) in lines[1...mergeCount].enumerated() {
      let parts = line.split(separator: " ")
      guard parts.count == 2 else {
        throw TokenizerError.malformed(file: bpePath, part: "merges line \(i + 2)", reason: "'\(line)' is not two symbols")
      }
      merges.append((Array(parts[0].utf8), Array(parts[1].utf8)))
      vocab.append(Array(parts[0].utf8) + Array(parts[1].utf8))
    }
    specials = ["<start_of_text>", "<end_of_text>"] + additionalSpecialTokens
    vocab += specials.map { Array($0.utf8) }
    var enc: [[UInt8]: Int] = [:]
    for (i, v) in vocab.enumerated() { enc[v] = i }  // later duplicates win, as dict(zip(...))
    encoder = enc
    decoder = Models.inverse(enc)
    var r: [Int64: (Int, Int)] = [:]
    for (rank, (a, b)) in merges.enumerated() {
      guard let ia = enc[a], let ib = enc[b], let m = enc[a + b] else { continue }
      let key = Int64(ia) << 32 | Int64(ib)
      if r[key] == nil { r[key] = (rank, m) }
    }
    ranks = r
    startOfText = enc[Array("<start_of_text>".utf8)]!
    endOfText = enc[Array("<end_of_text>".utf8)]!
    let special = specials.map { NSRegularExpression.escapedPattern(for: $0) }.joined(separator: "|")
    pattern = try Regex(special + #"|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"#, caseInsensitive: true)
    self.contextLength = contextLength
    self.clean = clean
  }

  /// Cleans text the way the configured clean function does.
  public func cleaned(_ text: String) -> String {
    let basic = TextCleaning.basicClean(text)
    switch clean {
    case .lower: return TextCleaning.pythonLower(TextCleaning.strip(TextCleaning.collapseWhitespace(basic)))
    case .whitespace: return TextCleaning.strip(TextCleaning.collapseWhitespace(basic))
    case .canonicalize: return TextCleaning.canonicalize(basic)
    }
  }

  /// BPE ids of `text` (no start/end tokens).
  public func encode(_ text: String) -> [Int] {
    let t = cleaned(text).scalars
    var ids: [Int] = []
    for r in pattern.matches(in: t) {
      let piece = Array(t[r])
      if let s = specials.firstIndex(where: { $0.scalars == piece }) {
        ids.append(encoder[Array(specials[s].utf8)]!)
        continue
      }
      ids += bpe(ByteLevel.encode(piece.utf8Bytes))
    }
    return ids
  }

  /// open_clip's tokenize(): [SOT] ids [EOT], truncated to the context (EOT kept last), zero padded.
  public func callAsFunction(_ texts: [String]) -> [[Int]] {
    texts.map { text in
      var ids = [startOfText] + encode(text) + [endOfText]
      if ids.count > contextLength {
        ids = Array(ids.prefix(contextLength))
        ids[contextLength - 1] = endOfText
      }
      return ids + [Int](repeating: 0, count: contextLength - ids.count)
    }
  }

  public func decode(_ ids: [Int]) -> String {
    let text = ids.filter { $0 != startOfText && $0 != endOfText }.compactMap { decoder[$0] }.flatMap { $0 }
    let bytes = ByteLevel.decode(bytesToString(text).scalars)
    return bytesToString(bytes).replacingOccurrences(of: "</w>", with: " ").trimmingCharacters(in: .whitespaces)
  }

  private func bpe(_ word: Scalars) -> [Int] {
    let key = word.utf8Bytes
    lock.lock()
    if let c = cache[key] { lock.unlock(); return c }
    lock.unlock()
    var symbols: [Int] = []
    for (i, c) in word.enumerated() {
      var s = utf8Bytes(c)
      if i == word.count - 1 { s += Array("</w>".utf8) }
      guard let id = encoder[s] else { return [] }
      symbols.append(id)
    }
    while symbols.count > 1 {
      var best = -1, bestRank = Int.max, bestID = 0
      for i in 0..<(symbols.count - 1) {
        if let m = ranks[Int64(symbols[i]) << 32 | Int64(symbols[i + 1])], m.rank < bestRank {
          best = i; bestRank = m.rank; bestID = m.id
        }
      }
      if best < 0 { break }
      // Merge every occurrence of the best pair, left to right, as the reference does.
      let (a, b) = (symbols[best], symbols[best + 1])
      var merged: [Int] = []
      var i = 0
      while i < symbols.count {
        if i < symbols.count - 1 && symbols[i] == a && symbols[i + 1] == b {
          merged.append(bestID)
          i += 2
        } else {
          merged.append(symbols[i])
          i += 1
        }
      }
      symbols = merged
    }
    lock.lock()
    cache[key] = symbols
    lock.unlock()
    return symbols
  }
}
