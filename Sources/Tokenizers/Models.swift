import Foundation

/// Turns one pre-tokenized piece into token ids.
protocol TokenModel {
  func tokenize(_ piece: Scalars) throws -> [Int]
  func id(of token: [UInt8]) -> Int?
  func token(of id: Int) -> [UInt8]?
  var vocabSize: Int { get }
}

enum Models {
  static func make(_ o: JSONObject) throws -> TokenModel {
    // Old files omit the model type; BPE is the one with merges.
    let type = o.optionalString("type") ?? (o.has("merges") ? "BPE" : o.has("unk_id") ? "Unigram" : "WordPiece")
    switch type {
    case "BPE": return try BPE(o)
    case "Unigram": return try Unigram(o)
    case "WordPiece": return try WordPiece(o)
    case "WordLevel": return try WordLevel(o)
    default: throw TokenizerError.unsupported(file: o.file, part: o.part, type: type)
    }
  }

  static func vocabMap(_ o: JSONObject) throws -> [[UInt8]: Int] {
    guard let v = o.dict["vocab"] as? [String: Any] else { throw o.missing("vocab", "an object of token ids") }
    var out: [[UInt8]: Int] = [:]
    out.reserveCapacity(v.count)
    for (k, id) in v {
      guard let i = id as? Int else { throw o.missing("vocab", "an object of integer ids (\(k))") }
      out[k.utf8Bytes] = i
    }
    return out
  }

  static func inverse(_ v: [[UInt8]: Int]) -> [Int: [UInt8]] {
    var out: [Int: [UInt8]] = [:]
    for (k, i) in v { out[i] = k }
    return out
  }

  static func byteToken(_ b: UInt8) -> [UInt8] { Array(String(format: "<0x%02X>", b).utf8) }
}

/// Byte-pair encoding with tokenizers' options: continuing-subword prefix, end-of-word suffix,
/// byte fallback, fused unknowns, ignore_merges.
final class BPE: TokenModel {
  let vocab: [[UInt8]: Int]
  let reverse: [Int: [UInt8]]
  /// (left id, right id) -> (rank, merged id)
  let merges: [Int64: (rank: Int, id: Int)]
  let unk: [UInt8]?
  let prefix: [UInt8]?
  let suffix: [UInt8]?
  let fuseUnk: Bool
  let byteFallback: Bool
  let ignoreMerges: Bool
  let file: String
  var vocabSize: Int { vocab.count }

  init(_ o: JSONObject) throws {
    vocab = try Models.vocabMap(o)
    reverse = Models.inverse(vocab)
    unk = o.optionalString("unk_token")?.utf8Bytes
    prefix = o.optionalString("continuing_subword_prefix")?.utf8Bytes
    suffix = o.optionalString("end_of_word_suffix")?.utf8Bytes
    fuseUnk = o.bool("fuse_unk", default: false)
    byteFallback = o.bool("byte_fallback", default: false)
    ignoreMerges = o.bool("ignore_merges", default: false)
    file = o.file
    var m: [Int64: (Int, Int)] = [:]
    let raw = try o.array("merges")
    m.reserveCapacity(raw.count)
    for (rank, item) in raw.enumerated() {
      let a: String, b: String
      if let s = item as? String {
        let parts = s.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw TokenizerError.malformed(file: o.file, part: "model.merges[\(rank)]", reason: "'\(s)' is not 'a b'") }
        (a, b) = (String(parts[0]), String(parts[1]))
      } else if let pair = item as? [String], pair.count == 2 {
        (a, b) = (pair[0], pair[1])
      } else {
        throw TokenizerError.malformed(file: o.file, part: "model.merges[\(rank)]", reason: "a merge must be 'a b' or [a, b]")
      }
      let ab = a.utf8Bytes, bb = b.utf8Bytes
      guard let ia = vocab[ab], let ib = vocab[bb] else {
        throw TokenizerError.malformed(file: o.file, part: "model.merges[\(rank)]", reason: "'\(a)' or '\(b)' is not in the vocabulary")
      }
      var rest = bb
      if let p = prefix, bb.starts(with: p) { rest = Array(bb.dropFirst(p.count)) }
      guard let merged = vocab[ab + rest] else {
        throw TokenizerError.malformed(file: o.file, part: "model.merges[\(rank)]", reason: "merged token '\(a)\(bytesToString(rest))' is not in the vocabulary")
      }
      let key = Int64(ia) << 32 | Int64(ib)
      if m[key] == nil { m[key] = (rank, merged) }
    }
    merges = m
  }

  func id(of token: [UInt8]) -> Int? { vocab[token] }
  func token(of id: Int) -> [UInt8]? { reverse[id] }

  func tokenize(_ piece: Scalars) throws -> [Int] {
    if piece.isEmpty { return [] }
    if ignoreMerges, let id = vocab[piece.utf8Bytes] { return [id] }
    var symbols: [Int] = []
    var pendingUnk = false
    func flushUnk() { if pendingUnk, let u = unk, let id = vocab[u] { symbols.append(id) }; pendingUnk = false }
    for (i, c) in piece.enumerated() {
      var s = utf8Bytes(c)
      if i > 0, let p = prefix { s = p + s }
      if i == piece.count - 1, let x = suffix { s += x }
      if let id = vocab[s] {
        flushUnk()
        symbols.append(id)
        continue
      }
      if byteFallback {
        let ids = s.compactMap { vocab[Models.byteToken($0)] }
        if ids.count == s.count {
          flushUnk()
          symbols += ids
          continue
        }
      }
      if let u = unk {
        guard vocab[u] != nil else {
          throw TokenizerError.malformed(file: file, part: "model", reason: "unk_token '\(bytesToString(u))' is not in the vocabulary")
        }
        if pendingUnk && !fuseUnk { flushUnk() }
        pendingUnk = true
      }
    }
    flushUnk()
    return mergeAll(symbols)
  }

  /// Applies merges lowest rank first (leftmost on ties), as tokenizers' priority queue does.
  func mergeAll(_ input: [Int]) -> [Int] {
    var s = input
    while s.count > 1 {
      var best = -1, bestRank = Int.max, bestId = 0
      for i in 0..<(s.count - 1) {
        if let m = merges[Int64(s[i]) << 32 | Int64(s[i + 1])], m.rank < bestRank {
          best = i
          bestRank = m.rank
          bestId = m.id
        }
      }
      if best < 0 { break }
      s[best] = bestId
      s.remove(at: best + 1)
    }
    return s
  }
}

/// SentencePiece unigram model: Viterbi over piece log-probabilities, unknown characters scored
/// min_score - 10 and fused, optional byte fallback.
final class Unigram: TokenModel {
  let pieces: [Scalars]
  let scores: [Double]
  let ids: [[UInt8]: Int]
  let unkID: Int?
  let byteFallback: Bool
  let unkScore: Double
  /// A trie over pieces: children per node, and the piece ending at each node.
  let trie: ScalarTrie
  var vocabSize: Int { pieces.count }

  init(_ o: JSONObject) throws {
    let raw = try o.array("vocab")
    var p: [Scalars] = [], sc: [Double] = [], d: [[UInt8]: Int] = [:]
    for (i, item) in raw.enumerated() {
      guard let pair = item as? [Any], pair.count == 2, let s = pair[0] as? String, let score = (pair[1] as? NSNumber)?.doubleValue else {
        throw TokenizerError.malformed(file: o.file, part: "model.vocab[\(i)]", reason: "expected [piece, score]")
      }
      p.append(s.scalars)
      sc.append(score)
      if d[s.utf8Bytes] == nil { d[s.utf8Bytes] = i }
    }
    pieces = p
    scores = sc
    ids = d
    unkID = o.optionalInt("unk_id")
    if let u = unkID, !(0..<p.count).contains(u) {
      throw TokenizerError.malformed(file: o.file, part: "model", reason: "unk_id \(u) is outside the vocabulary")
    }
    byteFallback = o.bool("byte_fallback", default: false)
    unkScore = (sc.min() ?? 0) - 10
    var t = ScalarTrie()
    for (i, piece) in p.enumerated() where !piece.isEmpty { t.insert(piece, value: i) }
    trie = t
  }

  func id(of token: [UInt8]) -> Int? { ids[token] }
  func token(of id: Int) -> [UInt8]? { pieces.indices.contains(id) ? pieces[id].utf8Bytes : nil }

  func tokenize(_ piece: Scalars) throws -> [Int] {
    let n = piece.count
    if n == 0 { return [] }
    // best[i]: best path ending at scalar i.
    var bestScore = [Double](repeating: 0, count: n + 1)
    var bestStart = [Int](repeating: -1, count: n + 1)
    var bestID = [Int](repeating: -1, count: n + 1)
    bestStart[0] = 0
    for start in 0..<n {
      guard bestStart[start] >= 0 || start == 0 else { continue }
      let base = bestScore[start]
      var hasSingle = false
      for (length, pid) in trie.prefixes(of: piece, from: start) {
        let end = start + length
        let candidate = scores[pid] + base
        if bestStart[end] < 0 || candidate > bestScore[end] {
          bestScore[end] = candidate
          bestStart[end] = start
          bestID[end] = pid
        }
        if length == 1 { hasSingle = true }
      }
      if !hasSingle {
        let end = start + 1
        let candidate = unkScore + base
        if bestStart[end] < 0 || candidate > bestScore[end] {
          bestScore[end] = candidate
          bestStart[end] = start
          bestID[end] = unkID ?? -1
        }
      }
    }
    // Backtrack, fusing consecutive unknowns into one string.
    var tokens: [(Scalars, Bool)] = []
    var fused: Scalars = []
    var end = n
    while end > 0 {
      let start = bestStart[end]
      let id = bestID[end]
      if let u = unkID, id == u {
        fused = Array(piece[start..<end]) + fused
      } else {
        if !fused.isEmpty { tokens.append((fused, true)); fused = [] }
        tokens.append((pieces[id], false))
      }
      end = start
    }
    if !fused.isEmpty { tokens.append((fused, true)) }
    var out: [Int] = []
    for (t, _) in tokens.reversed() {
      let bytes = t.utf8Bytes
      if let id = ids[bytes] { out.append(id); continue }
      if byteFallback {
        let b = bytes.compactMap { ids[Models.byteToken($0)] }
        if b.count == bytes.count { out += b; continue }
      }
      guard let u = unkID else { throw TokenizerError.malformed(file: "tokenizer", part: "model", reason: "unknown text and no unk_id") }
      out.append(u)
    }
    return out
  }
}

/// BERT's greedy longest-match-first WordPiece.
final class WordPiece: TokenModel {
  let vocab: [[UInt8]: Int]
  let reverse: [Int: [UInt8]]
  let unk: [UInt8]
  let prefix: [UInt8]
  let maxChars: Int
  let file: String
  var vocabSize: Int { vocab.count }

  init(_ o: JSONObject) throws {
    vocab = try Models.vocabMap(o)
    reverse = Models.inverse(vocab)
    unk = (o.optionalString("unk_token") ?? "[UNK]").utf8Bytes
    prefix = (o.optionalString("continuing_subword_prefix") ?? "##").utf8Bytes
    maxChars = o.optionalInt("max_input_chars_per_word") ?? 100
    file = o.file
  }
  func id(of token: [UInt8]) -> Int? { vocab[token] }
  func token(of id: Int) -> [UInt8]? { reverse[id] }

  func tokenize(_ piece: Scalars) throws -> [Int] {
    guard let unkID = vocab[unk] else {
      throw TokenizerError.malformed(file: file, part: "model", reason: "unk_token '\(bytesToString(unk))' is not in the vocabulary")
    }
    if piece.count > maxChars { return [unkID] }
    var out: [Int] = []
    var start = 0
    while start < piece.count {
      var end = piece.count
      var found: Int? = nil
      while start < end {
        var s = Array(piece[start..<end]).utf8Bytes
        if start > 0 { s = prefix + s }
        if let id = vocab[s] { found = id; break }
        end -= 1
      }
      guard let id = found else { return [unkID] }
      out.append(id)
      start = end
    }
    return out
  }
}

final class WordLevel: TokenModel {
  let vocab: [[UInt8]: Int]
  let reverse: [Int: [UInt8]]
  let unk: [UInt8]?
  var vocabSize: Int { vocab.count }
  init(_ o: JSONObject) throws {
    vocab = try Models.vocabMap(o)
    reverse = Models.inverse(vocab)
    unk = o.optionalString("unk_token")?.utf8Bytes
  }
  func id(of token: [UInt8]) -> Int? { vocab[token] }
  func token(of id: Int) -> [UInt8]? { reverse[id] }
  func tokenize(_ piece: Scalars) throws -> [Int] {
    if let id = vocab[piece.utf8Bytes] { return [id] }
    if let u = unk, let id = vocab[u] { return [id] }
    throw TokenizerError.malformed(file: "tokenizer", part: "model", reason: "'\(piece.string)' is not in the vocabulary and there is no unk_token")
  }
}

/// A trie keyed by Unicode scalars; `prefixes` lists every stored key that starts at a position,
/// shortest first.
struct ScalarTrie {
  private var children: [[Unicode.Scalar: Int32]] = [[:]]
  private var values: [Int] = [-1]

  mutating func insert(_ key: Scalars, value: Int) {
    var node = 0
    for c in key {
      if let next = children[node][c] {
        node = Int(next)
      } else {
        children.append([:])
        values.append(-1)
        children[node][c] = Int32(children.count - 1)
        node = children.count - 1
      }
    }
    if values[node] < 0 { values[node] = value }
  }

  func prefixes(of s: Scalars, from start: Int) -> [(length: Int, value: Int)] {
    var out: [(Int, Int)] = []
    var node = 0
    var i = start
    while i < s.count, let next = children[node][s[i]] {
      node = Int(next)
      i += 1
      if values[node] >= 0 { out.append((i - start, values[node])) }
    }
    return out
  }
}
