import Foundation

/// A token the vocabulary treats atomically (tokenizer.json "added_tokens").
struct AddedToken {
  let id: Int
  let content: Scalars
  let singleWord, lstrip, rstrip, normalized, special: Bool
}

/// Token ids and attention mask for a batch, padded to one length.
public struct BatchEncoding: Sendable, Equatable {
  public var ids: [[Int]]
  public var attentionMask: [[Int]]
  public init(ids: [[Int]], attentionMask: [[Int]]) {
    self.ids = ids
    self.attentionMask = attentionMask
  }
  /// Ids padded with 0 (open_clip's SimpleTokenizer): the mask is 1 wherever the id is not 0.
  public init(zeroPadded ids: [[Int]]) {
    self.init(ids: ids, attentionMask: ids.map { $0.map { $0 == 0 ? 0 : 1 } })
  }
}

public enum Padding: Sendable { case none, longest, maxLength }

/// A Hugging Face tokenizer (tokenizer.json with tokenizer_config.json and
/// special_tokens_map.json beside it), implementing the `tokenizers` pipeline: added tokens,
/// normalizer, pre-tokenizer, model, post-processor; plus the behaviour transformers derives from
/// tokenizer_config.json (add_bos/add_eos templates, model_max_length, padding side).
public final class Tokenizer: @unchecked Sendable {
  let normalizer: Normalizer?
  let preTokenizer: PreTokenizer?
  let model: TokenModel
  let postProcessor: PostProcessor?
  let decoder: Decoder?
  let added: [AddedToken]
  private let rawTrie: AddedTrie
  private let normalizedTrie: AddedTrie
  let specialIDs: Set<Int>

  public private(set) var padID: Int?
  public private(set) var bosID: Int?
  public private(set) var eosID: Int?
  public private(set) var unkID: Int?
  /// tokenizer_config.json's model_max_length when it is a real limit.
  public private(set) var modelMaxLength: Int?
  public private(set) var paddingLeft = false
  public private(set) var truncationLeft = false
  /// Whether transformers returns an `attention_mask` (tokenizer_config.json's
  /// model_input_names; the tokenizer classes' default includes it).
  public private(set) var returnsAttentionMask = true
  /// tokenizer_config.json's tokenizer_class, if any.
  public private(set) var tokenizerClass: String?

  /// Loads `tokenizer.json` (and the optional config files) from a directory.
  public convenience init(directory: String) throws {
    let tj = (directory as NSString).appendingPathComponent("tokenizer.json")
    guard FileManager.default.fileExists(atPath: tj) else {
      throw TokenizerError.io(path: directory, reason: "no tokenizer.json in this directory")
    }
    func json(_ name: String) throws -> [String: Any]? {
      let p = (directory as NSString).appendingPathComponent(name)
      guard let d = FileManager.default.contents(atPath: p) else { return nil }
      guard let o = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any] else {
        throw TokenizerError.malformed(file: p, part: "file", reason: "not a JSON object")
      }
      return o
    }
    try self.init(tokenizerJSON: tj, config: try json("tokenizer_config.json"), specialTokensMap: try json("special_tokens_map.json"))
  }

  /// Loads a tokenizer.json. With `config` (tokenizer_config.json), the pipeline is adjusted the
  /// way transformers' tokenizer class for that config rebuilds it; without, it is exactly what the
  /// `tokenizers` library runs for the file.
  public init(tokenizerJSON path: String, config: [String: Any]? = nil, specialTokensMap: [String: Any]? = nil) throws {
    guard let data = FileManager.default.contents(atPath: path) else { throw TokenizerError.io(path: path, reason: "cannot read file") }
    var rootAny: Any
    do { rootAny = try JSONSerialization.jsonObject(with: data) } catch {
      throw TokenizerError.malformed(file: path, part: "file", reason: "not valid JSON")
    }
    let cfg = config ?? [:]
    if let cls = cfg["tokenizer_class"] as? String, var dict = rootAny as? [String: Any] {
      TransformersRecipes.apply(cls, config: cfg, to: &dict)
      rootAny = dict
    }
    let root = try JSONObject(rootAny, file: path, part: "tokenizer")
    model = try Models.make(try root.object("model"))
    normalizer = try root.optionalObject("normalizer").map(Normalizers.make)
    preTokenizer = try root.optionalObject("pre_tokenizer").map(PreTokenizers.make)
    postProcessor = try root.optionalObject("post_processor").map(PostProcessors.make)
    decoder = try root.optionalObject("decoder").map(Decoders.make)

    var tokens: [AddedToken] = []
    for (i, any) in ((root.dict["added_tokens"] as? [Any]) ?? []).enumerated() {
      let t = try root.sub(any, "added_tokens[\(i)]")
      let special = t.bool("special", default: false)
      tokens.append(AddedToken(id: try t.int("id"), content: try t.string("content").scalars,
                               singleWord: t.bool("single_word", default: false), lstrip: t.bool("lstrip", default: false),
                               rstrip: t.bool("rstrip", default: false), normalized: t.bool("normalized", default: !special),
                               special: special))
    }

    tokenizerClass = cfg["tokenizer_class"] as? String
    if config != nil {
      tokens = TransformersRecipes.specialTokens(config: cfg, specialTokensMap: specialTokensMap ?? [:], existing: tokens, model: model)
    }
    let norm = normalizer
    added = tokens
    rawTrie = AddedTrie(tokens.filter { !$0.normalized })
    normalizedTrie = AddedTrie(tokens.filter { $0.normalized }.map { t in
      AddedToken(id: t.id, content: norm?.normalize(t.content) ?? t.content, singleWord: t.singleWord,
                 lstrip: t.lstrip, rstrip: t.rstrip, normalized: true, special: t.special)
    })
    specialIDs = Set(tokens.filter(\.special).map(\.id))

    func tokenName(_ key: String) -> String? {
      for source in [cfg, specialTokensMap ?? [:]] {
        if let s = source[key] as? String { return s }
        if let d = source[key] as? [String: Any], let s = d["content"] as? String { return s }
      }
      return nil
    }
    func idOf(_ name: String?) -> Int? {
      guard let name else { return nil }
      return tokens.first { $0.content == name.scalars }?.id ?? model.id(of: name.utf8Bytes)
    }
    bosID = idOf(tokenName("bos_token"))
    eosID = idOf(tokenName("eos_token"))
    unkID = idOf(tokenName("unk_token"))
    padID = idOf(tokenName("pad_token")) ?? (root.dict["padding"] as? [String: Any])?["pad_id"] as? Int
    if let m = cfg["model_max_length"] as? Int, m > 0, m < 1_000_000_000 { modelMaxLength = m }
    paddingLeft = (cfg["padding_side"] as? String) == "left"
    truncationLeft = (cfg["truncation_side"] as? String) == "left"
    if let names = cfg["model_input_names"] as? [String] { returnsAttentionMask = names.contains("attention_mask") }
    // transformers (v5) ignores add_bos_token/add_eos_token when tokenizer.json exists: the file's
    // post-processor is authoritative.
  }

  public var vocabSize: Int { max(model.vocabSize, (added.map(\.id).max() ?? -1) + 1) }

  /// The id of a token string (added tokens first, then the model vocabulary).
  public func id(of token: String) -> Int? {
    added.first { $0.content == token.scalars }?.id ?? model.id(of: token.utf8Bytes)
  }

  /// Token ids of `text`, with the post-processor's special tokens when `addSpecialTokens`.
  public func encode(_ text: String, addSpecialTokens: Bool = true) throws -> [Int] {
    let ids = try encodeContent(text.scalars)
    return addSpecialTokens ? (postProcessor?.process(ids) ?? ids) : ids
  }

  /// transformers' `tokenizer(texts, padding=..., truncation=..., max_length=...)`.
  public func callAsFunction(_ texts: [String], maxLength: Int? = nil, padding: Padding = .maxLength,
                             truncation: Bool = true, addSpecialTokens: Bool = true) throws -> BatchEncoding {
    let limit = maxLength ?? modelMaxLength
    var rows: [[Int]] = []
    for t in texts {
      var ids = try encodeContent(t.scalars)
      let extra = addSpecialTokens ? (postProcessor?.addedCount ?? 0) : 0
      if truncation, let L = limit, ids.count + extra > L {
        let keep = max(0, L - extra)
        ids = truncationLeft ? Array(ids.suffix(keep)) : Array(ids.prefix(keep))
      }
      rows.append(addSpecialTokens ? (postProcessor?.process(ids) ?? ids) : ids)
    }
    let target: Int?
    switch padding {
    case .none: target = nil
    case .longest: target = rows.map(\.count).max()
    case .maxLength: target = limit ?? rows.map(\.count).max()
    }
    var masks = rows.map { [Int](repeating: 1, count: $0.count) }
    if let T = target {
      guard let pad = padID else {
        throw TokenizerError.malformed(file: "tokenizer", part: "padding", reason: "padding requested but the tokenizer has no pad token")
      }
      for i in rows.indices where rows[i].count < T {
        let n = T - rows[i].count
        if paddingLeft {
          rows[i] = [Int](repeating: pad, count: n) + rows[i]
          masks[i] = [Int](repeating: 0, count: n) + masks[i]
        } else {
          rows[i] += [Int](repeating: pad, count: n)
          masks[i] += [Int](repeating: 0, count: n)
        }
      }
    }
    return BatchEncoding(ids: rows, attentionMask: masks)
  }

  /// Text of `ids` (tokenizers' decode; special tokens dropped when asked).
  public func decode(_ ids: [Int], skipSpecialTokens: Bool = true) -> String {
    let tokens: [[UInt8]] = ids.compactMap { id in
      if skipSpecialTokens && specialIDs.contains(id) { return nil }
      if let a = added.first(where: { $0.id == id }) { return a.content.utf8Bytes }
      return model.token(of: id)
    }
    let parts = decoder?.decode(tokens) ?? [Array(tokens.joined(separator: [0x20]))]
    return bytesToString(parts.flatMap { $0 })
  }

  private func encodeContent(_ text: Scalars) throws -> [Int] {
    var ids: [Int] = []
    for (seg, start) in rawTrie.split(text) {
      switch seg {
      case .token(let id): ids.append(id)
      case .text(let raw):
        let norm = normalizer?.normalize(raw) ?? raw
        for (inner, innerStart) in normalizedTrie.split(norm) {
          switch inner {
          case .token(let id): ids.append(id)
          case .text(let t):
            let pieces = preTokenizer?.split([t], first: start == 0 && innerStart == 0) ?? [t]
            for p in pieces { ids += try model.tokenize(p) }
          }
        }
      }
    }
    return ids
  }
}

enum Segment { case text(Scalars), token(Int) }

/// Finds added tokens leftmost-longest and applies their single_word/lstrip/rstrip rules.
struct AddedTrie {
  let byFirst: [Unicode.Scalar: [AddedToken]]

  init(_ tokens: [AddedToken]) {
    var d: [Unicode.Scalar: [AddedToken]] = [:]
    for t in tokens where !t.content.isEmpty { d[t.content[0], default: []].append(t) }
    for k in d.keys { d[k]!.sort { $0.content.count > $1.content.count } }
    byFirst = d
  }

  /// Segments with the scalar offset each starts at; empty text segments are dropped.
  func split(_ s: Scalars) -> [(Segment, Int)] {
    if byFirst.isEmpty { return s.isEmpty ? [] : [(.text(s), 0)] }
    var matches: [(Range<Int>, Int)] = []
    var i = 0
    while i < s.count {
      var found: AddedToken? = nil
      for t in byFirst[s[i]] ?? [] where i + t.content.count <= s.count && Array(s[i..<(i + t.content.count)]) == t.content {
        found = t
        break
      }
      guard let t = found else { i += 1; continue }
      var start = i, end = i + t.content.count
      if t.singleWord {
        func isWord(_ c: Unicode.Scalar) -> Bool { c.isAlphanumeric || c == "_" }
        let before = start == 0 || !isWord(s[start - 1])
        let after = end == s.count || !isWord(s[end])
        if !(before && after) { i += 1; continue }
      }
      if t.lstrip {
        let floor = matches.last?.0.upperBound ?? 0
        while start > floor && s[start - 1].isWhitespace { start -= 1 }
      }
      if t.rstrip { while end < s.count && s[end].isWhitespace { end += 1 } }
      matches.append((start..<end, t.id))
      i = end
    }
    var out: [(Segment, Int)] = []
    var last = 0
    for (r, id) in matches {
      if r.lowerBound > last { out.append((.text(Array(s[last..<r.lowerBound])), last)) }
      out.append((.token(id), r.lowerBound))
      last = r.upperBound
    }
    if last < s.count { out.append((.text(Array(s[last...])), last)) }
    return out
  }
}
