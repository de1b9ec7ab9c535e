import Foundation

/// transformers (v5) rebuilds the backend of most model-specific tokenizer classes from the
/// file's vocabulary with the class's own normalizer, pre-tokenizer and model options, keeping
/// only the file's post-processor, padding and truncation. These are those recipes for the
/// classes CLIP-family checkpoints use; any other class runs the file as written.
enum TransformersRecipes {
  static func apply(_ cls: String, config cfg: [String: Any], to dict: inout [String: Any]) {
    let name = cls.hasSuffix("Fast") ? String(cls.dropLast(4)) : cls
    guard var model = dict["model"] as? [String: Any] else { return }
    func token(_ key: String, _ fallback: String) -> String {
      if let s = cfg[key] as? String { return s }
      if let d = cfg[key] as? [String: Any], let s = d["content"] as? String { return s }
      return fallback
    }
    func replaceSpace() -> [String: Any] { ["type": "Replace", "pattern": ["String": " "], "content": "▁"] }
    switch name {
    case "GemmaTokenizer", "Siglip2Tokenizer":
      var n: [String: Any] = replaceSpace()
      if name == "Siglip2Tokenizer" { n = ["type": "Sequence", "normalizers": [["type": "Lowercase"], n]] }
      dict["normalizer"] = n
      dict["pre_tokenizer"] = ["type": "Split", "pattern": ["String": " "], "behavior": "MergedWithPrevious", "invert": false]
      model["fuse_unk"] = true
      model["byte_fallback"] = true
      model["unk_token"] = token("unk_token", "<unk>")
      model["continuing_subword_prefix"] = NSNull()
      model["end_of_word_suffix"] = NSNull()
      model["ignore_merges"] = false
    case "T5Tokenizer":
      dict["normalizer"] = findPrecompiled(dict["normalizer"]).map { ["type": "Precompiled", "precompiled_charsmap": $0] as [String: Any] } ?? NSNull()
      dict["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [
        ["type": "WhitespaceSplit"],
        ["type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true],
      ]]
      model["unk_id"] = 2
      model["byte_fallback"] = false
    case "BertTokenizer":
      dict["normalizer"] = [
        "type": "BertNormalizer", "clean_text": true,
        "handle_chinese_chars": (cfg["tokenize_chinese_chars"] as? Bool) ?? true,
        "strip_accents": cfg["strip_accents"] as? Bool as Any? ?? NSNull(),
        "lowercase": (cfg["do_lower_case"] as? Bool) ?? true,
      ]
      dict["pre_tokenizer"] = ["type": "BertPreTokenizer"]
      model["unk_token"] = token("unk_token", "[UNK]")
      model["continuing_subword_prefix"] = "##"
      model["max_input_chars_per_word"] = 100
    case "CLIPTokenizer":
      dict["normalizer"] = ["type": "Sequence", "normalizers": [
        ["type": "NFC"], ["type": "Replace", "pattern": ["Regex": #"\s+"#], "content": " "], ["type": "Lowercase"],
      ]]
      dict["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [
        ["type": "Split", "pattern": ["Regex": #"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"#],
         "behavior": "Removed", "invert": true],
        ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
      ]]
      model["continuing_subword_prefix"] = ""
      model["end_of_word_suffix"] = "</w>"
      model["fuse_unk"] = false
      model["unk_token"] = token("unk_token", "<|endoftext|>")
    case "RobertaTokenizer", "GPT2Tokenizer":
      dict["normalizer"] = NSNull()
      dict["pre_tokenizer"] = ["type": "ByteLevel", "add_prefix_space": (cfg["add_prefix_space"] as? Bool) ?? false,
                               "trim_offsets": true, "use_regex": true]
      model["continuing_subword_prefix"] = ""
      model["end_of_word_suffix"] = ""
      model["fuse_unk"] = false
      model["unk_token"] = NSNull()
    default:
      return
    }
    dict["model"] = model
  }

  /// transformers registers every named special token (and the config's added_tokens_decoder,
  /// and T5's <extra_id_N>) as an added token when the file does not already have it; a new token
  /// takes its vocabulary id, or the next free id.
  static func specialTokens(config cfg: [String: Any], specialTokensMap map: [String: Any], existing: [AddedToken],
                            model: TokenModel) -> [AddedToken] {
    var out = existing
    var nextID = max(model.vocabSize, (existing.map(\.id).max() ?? -1) + 1)
    func add(_ content: String, id fixed: Int? = nil, lstrip: Bool = false, rstrip: Bool = false,
             singleWord: Bool = false, normalized: Bool = false, special: Bool = true) {
      let c = content.scalars
      guard !c.isEmpty, !out.contains(where: { $0.content == c }) else { return }
      let id = fixed ?? model.id(of: content.utf8Bytes) ?? { defer { nextID += 1 }; return nextID }()
      out.append(AddedToken(id: id, content: c, singleWord: singleWord, lstrip: lstrip, rstrip: rstrip,
                            normalized: normalized, special: special))
    }
    if let decoderMap = cfg["added_tokens_decoder"] as? [String: Any] {
      for (key, any) in decoderMap.sorted(by: { (Int($0.key) ?? 0) < (Int($1.key) ?? 0) }) {
        guard let d = any as? [String: Any], let content = d["content"] as? String, let id = Int(key) else { continue }
        let special = (d["special"] as? Bool) ?? false
        add(content, id: id, lstrip: (d["lstrip"] as? Bool) ?? false, rstrip: (d["rstrip"] as? Bool) ?? false,
            singleWord: (d["single_word"] as? Bool) ?? false, normalized: (d["normalized"] as? Bool) ?? !special, special: special)
      }
    }
    for key in ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"] {
      for source in [cfg, map] {
        if let s = source[key] as? String { add(s) }
        else if let d = source[key] as? [String: Any], let s = d["content"] as? String { add(s) }
      }
    }
    for source in [cfg, map] {
      for any in (source["additional_special_tokens"] as? [Any]) ?? [] {
        if let s = any as? String { add(s) } else if let d = any as? [String: Any], let s = d["content"] as? String { add(s) }
      }
    }
    if let cls = cfg["tokenizer_class"] as? String, cls.hasPrefix("T5Tokenizer") {
      let extra = (cfg["extra_ids"] as? Int) ?? 100
      for i in 0..<extra { add("<extra_id_\(i)>") }
    }
    return out
  }

  static func findPrecompiled(_ any: Any?) -> String? {
    guard let d = any as? [String: Any] else { return nil }
    if d["type"] as? String == "Precompiled" { return d["precompiled_charsmap"] as? String }
    for item in (d["normalizers"] as? [Any]) ?? [] { if let s = findPrecompiled(item) { return s } }
    return nil
  }
}
