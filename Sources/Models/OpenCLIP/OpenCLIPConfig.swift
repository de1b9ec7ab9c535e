import Foundation

// open_clip's model config (`open_clip_config.json` → `model_cfg`, the layout of open_clip's
// Hugging Face hub repos and of its built-in `model_configs/*.json`) and its `preprocess_cfg`.
// Keys are open_clip's; defaults are those of open_clip's CLIPVisionCfg / CLIPTextCfg.

public struct OpenCLIPVisionConfig: Decodable, Sendable {
  public var imageSize: Int
  public var patchSize: Int
  public var width: Int
  public var layers: Int
  public var headWidth: Int
  public var mlpRatio: Double
  public var noLnPre: Bool
  public var poolType: String
  public var finalLnAfterPool: Bool
  public var posEmbedType: String
  /// `norm_kwargs.eps` (LayerNorm) and `act_kwargs.approximate` (GELU) of this tower.
  public var normEps: Double?
  public var geluApproximate: String?
  /// Options of other open_clip variants ClipKit does not build; set values are refused.
  var timmModelName: String?
  var attentionalPool: Bool?
  var lsInitValue: Double?

  enum CodingKeys: String, CodingKey {
    case imageSize = "image_size", patchSize = "patch_size", width, layers, headWidth = "head_width", mlpRatio = "mlp_ratio",
      noLnPre = "no_ln_pre", poolType = "pool_type", finalLnAfterPool = "final_ln_after_pool", posEmbedType = "pos_embed_type",
      timmModelName = "timm_model_name", attentionalPool = "attentional_pool", lsInitValue = "ls_init_value",
      normKwargs = "norm_kwargs", actKwargs = "act_kwargs"
  }

  public init(imageSize: Int, patchSize: Int, width: Int, layers: Int, headWidth: Int = 64, mlpRatio: Double = 4, noLnPre: Bool = false,
              poolType: String = "tok", finalLnAfterPool: Bool = false, posEmbedType: String = "learnable") {
    self.imageSize = imageSize
    self.patchSize = patchSize
    self.width = width
    self.layers = layers
    self.headWidth = headWidth
    self.mlpRatio = mlpRatio
    self.noLnPre = noLnPre
    self.poolType = poolType
    self.finalLnAfterPool = finalLnAfterPool
    self.posEmbedType = posEmbedType
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    // image_size is an int or [h, w]; only square inputs are built.
    if let s = try? c.decode(Int.self, forKey: .imageSize) { imageSize = s } else {
      let hw = try c.decode([Int].self, forKey: .imageSize)
      guard hw.count == 2, hw[0] == hw[1] else {
        throw DecodingError.dataCorruptedError(forKey: .imageSize, in: c, debugDescription: "only square image_size is supported")
      }
      imageSize = hw[0]
    }
    patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? 16
    width = try c.decodeIfPresent(Int.self, forKey: .width) ?? 768
    if (try? c.decodeIfPresent([Int].self, forKey: .layers)) != nil {
      throw DecodingError.dataCorruptedError(forKey: .layers, in: c, debugDescription: "a ModifiedResNet vision tower (layers is a list) is not supported; ClipKit builds ViT towers")
    }
    layers = try c.decodeIfPresent(Int.self, forKey: .layers) ?? 12
    headWidth = try c.decodeIfPresent(Int.self, forKey: .headWidth) ?? 64
    mlpRatio = try c.decodeIfPresent(Double.self, forKey: .mlpRatio) ?? 4
    noLnPre = try c.decodeIfPresent(Bool.self, forKey: .noLnPre) ?? false
    poolType = try c.decodeIfPresent(String.self, forKey: .poolType) ?? "tok"
    finalLnAfterPool = try c.decodeIfPresent(Bool.self, forKey: .finalLnAfterPool) ?? false
    posEmbedType = try c.decodeIfPresent(String.self, forKey: .posEmbedType) ?? "learnable"
    timmModelName = try c.decodeIfPresent(String.self, forKey: .timmModelName)
    // true or "parallel"/"cascade": any attentional pooler is refused.
    attentionalPool = (try? c.decodeIfPresent(Bool.self, forKey: .attentionalPool)) ?? ((try? c.decodeIfPresent(String.self, forKey: .attentionalPool)) != nil ? true : nil)
    lsInitValue = try c.decodeIfPresent(Double.self, forKey: .lsInitValue)
    (normEps, geluApproximate) = try decodeTowerKwargs(c, norm: .normKwargs, act: .actKwargs)
  }

  public var heads: Int { width / headWidth }
  public var gridSize: Int { imageSize / patchSize }
}

public struct OpenCLIPTextConfig: Decodable, Sendable {
  public var contextLength: Int
  public var vocabSize: Int
  public var width: Int
  public var heads: Int
  public var layers: Int
  public var mlpRatio: Double
  public var noCausalMask: Bool
  public var poolType: String
  public var projBias: Bool
  public var hfTokenizerName: String?
  public var stripSepToken: Bool
  /// open_clip's text cleaning before the HF tokenizer: whitespace (default), lower, canonicalize.
  public var clean: String
  public var normEps: Double?
  public var geluApproximate: String?
  var embedCls: Bool?
  var hfModelName: String?
  var tokenizerMode: String?

  enum CodingKeys: String, CodingKey {
    case contextLength = "context_length", vocabSize = "vocab_size", width, heads, layers, mlpRatio = "mlp_ratio",
      noCausalMask = "no_causal_mask", poolType = "pool_type", projBias = "proj_bias", hfTokenizerName = "hf_tokenizer_name",
      tokenizerKwargs = "tokenizer_kwargs", embedCls = "embed_cls", hfModelName = "hf_model_name", tokenizerMode = "tokenizer_mode",
      normKwargs = "norm_kwargs", actKwargs = "act_kwargs"
  }
  struct TokenizerKwargs: Decodable { var strip_sep_token: Bool?; var clean: String? }

  public init(contextLength: Int = 77, vocabSize: Int = 49408, width: Int = 512, heads: Int = 8, layers: Int = 12, mlpRatio: Double = 4,
              noCausalMask: Bool = false, poolType: String = "argmax", projBias: Bool = false, hfTokenizerName: String? = nil,
              stripSepToken: Bool = false) {
    self.contextLength = contextLength
    self.vocabSize = vocabSize
    self.width = width
    self.heads = heads
    self.layers = layers
    self.mlpRatio = mlpRatio
    self.noCausalMask = noCausalMask
    self.poolType = poolType
    self.projBias = projBias
    self.hfTokenizerName = hfTokenizerName
    self.stripSepToken = stripSepToken
    self.clean = "whitespace"
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    contextLength = try c.decodeIfPresent(Int.self, forKey: .contextLength) ?? 77
    vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 49408
    width = try c.decodeIfPresent(Int.self, forKey: .width) ?? 512
    heads = try c.decodeIfPresent(Int.self, forKey: .heads) ?? 8
    layers = try c.decodeIfPresent(Int.self, forKey: .layers) ?? 12
    mlpRatio = try c.decodeIfPresent(Double.self, forKey: .mlpRatio) ?? 4
    noCausalMask = try c.decodeIfPresent(Bool.self, forKey: .noCausalMask) ?? false
    poolType = try c.decodeIfPresent(String.self, forKey: .poolType) ?? "argmax"
    projBias = try c.decodeIfPresent(Bool.self, forKey: .projBias) ?? false
    hfTokenizerName = try c.decodeIfPresent(String.self, forKey: .hfTokenizerName)
    let kw = try c.decodeIfPresent(TokenizerKwargs.self, forKey: .tokenizerKwargs)
    stripSepToken = kw?.strip_sep_token ?? false
    clean = kw?.clean ?? "whitespace"
    embedCls = try c.decodeIfPresent(Bool.self, forKey: .embedCls)
    hfModelName = try c.decodeIfPresent(String.self, forKey: .hfModelName)
    tokenizerMode = try c.decodeIfPresent(String.self, forKey: .tokenizerMode)
    (normEps, geluApproximate) = try decodeTowerKwargs(c, norm: .normKwargs, act: .actKwargs)
  }
}

public struct OpenCLIPConfig: Decodable, Sendable {
  public var embedDim: Int
  public var quickGelu: Bool
  public var initLogitBias: Double?
  public var vision: OpenCLIPVisionConfig
  public var text: OpenCLIPTextConfig
  var customText: Bool?

  enum CodingKeys: String, CodingKey {
    case embedDim = "embed_dim", quickGelu = "quick_gelu", initLogitBias = "init_logit_bias", vision = "vision_cfg", text = "text_cfg",
      customText = "custom_text"
  }

  public init(embedDim: Int, quickGelu: Bool = false, initLogitBias: Double? = nil, vision: OpenCLIPVisionConfig, text: OpenCLIPTextConfig) {
    self.embedDim = embedDim
    self.quickGelu = quickGelu
    self.initLogitBias = initLogitBias
    self.vision = vision
    self.text = text
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    embedDim = try c.decode(Int.self, forKey: .embedDim)
    quickGelu = try c.decodeIfPresent(Bool.self, forKey: .quickGelu) ?? false
    initLogitBias = try c.decodeIfPresent(Double.self, forKey: .initLogitBias)
    vision = try c.decode(OpenCLIPVisionConfig.self, forKey: .vision)
    text = try c.decode(OpenCLIPTextConfig.self, forKey: .text)
    customText = try c.decodeIfPresent(Bool.self, forKey: .customText)
  }

  /// The variants ClipKit builds: open_clip's `CLIP` class with its own ViT and text transformer.
  func validate(file: String) throws {
    func refuse(_ what: String) -> ModelError { .config(file: file, reason: "\(what) is not supported by ClipKit's OpenCLIP models") }
    if vision.timmModelName != nil { throw refuse("a timm vision trunk (vision_cfg.timm_model_name)") }
    if vision.attentionalPool == true { throw refuse("vision_cfg.attentional_pool") }
    if vision.lsInitValue != nil { throw refuse("LayerScale (vision_cfg.ls_init_value)") }
    if customText == true || text.hfModelName != nil { throw refuse("a Hugging Face text tower (custom_text / text_cfg.hf_model_name)") }
    if text.embedCls == true { throw refuse("text_cfg.embed_cls") }
    if let m = text.tokenizerMode, !m.isEmpty { throw refuse("text_cfg.tokenizer_mode '\(m)'") }
    guard ["whitespace", "lower", "canonicalize"].contains(text.clean) else { throw refuse("tokenizer_kwargs.clean '\(text.clean)'") }
    guard vision.patchSize > 0, vision.imageSize >= vision.patchSize, vision.width > 0, vision.layers >= 0, vision.headWidth > 0, vision.mlpRatio > 0,
          text.width > 0, text.heads > 0, text.layers >= 0, text.contextLength > 0, text.vocabSize > 0, text.mlpRatio > 0, embedDim > 0 else {
      throw ModelError.config(file: file, reason: "sizes must be positive (patch_size, image_size ≥ patch_size, width, heads, head_width, layers, context_length, vocab_size, embed_dim)")
    }
    guard ["tok", "avg"].contains(vision.poolType) else { throw refuse("vision_cfg.pool_type '\(vision.poolType)'") }
    guard ["learnable", "sin_cos_2d"].contains(vision.posEmbedType) else { throw refuse("vision_cfg.pos_embed_type '\(vision.posEmbedType)'") }
    guard ["last", "argmax", "first"].contains(text.poolType) else { throw refuse("text_cfg.pool_type '\(text.poolType)'") }
    guard vision.width % vision.headWidth == 0, text.width % text.heads == 0 else {
      throw ModelError.config(file: file, reason: "attention widths must divide into heads")
    }
  }
}

/// A tower's `norm_kwargs` (only `eps` changes LayerNorm's math) and `act_kwargs` (only GELU's
/// `approximate`); anything else would change the math silently, so it is refused.
private func decodeTowerKwargs<K: CodingKey>(_ c: KeyedDecodingContainer<K>, norm: K, act: K) throws -> (Double?, String?) {
  let n = try c.decodeIfPresent([String: Double].self, forKey: norm) ?? [:]
  let a = try c.decodeIfPresent([String: String].self, forKey: act) ?? [:]
  if let k = n.keys.first(where: { $0 != "eps" }) {
    throw DecodingError.dataCorruptedError(forKey: norm, in: c, debugDescription: "norm_kwargs.\(k) is not supported (only eps)")
  }
  if let k = a.keys.first(where: { $0 != "approximate" }) {
    throw DecodingError.dataCorruptedError(forKey: act, in: c, debugDescription: "act_kwargs.\(k) is not supported (only approximate)")
  }
  if let ap = a["approximate"], !["none", "tanh"].contains(ap) {
    throw DecodingError.dataCorruptedError(forKey: act, in: c, debugDescription: "act_kwargs.approximate '\(ap)' is not none or tanh")
  }
  return (n["eps"], a["approximate"])
}

/// `preprocess_cfg` of open_clip_config.json: the eval transform.
public struct OpenCLIPPreprocessConfig: Decodable, Sendable {
  public var mean: [Double]?
  public var std: [Double]?
  public var interpolation: String?
  public var resizeMode: String?
  enum CodingKeys: String, CodingKey { case mean, std, interpolation, resizeMode = "resize_mode" }
}

/// The whole `open_clip_config.json`.
struct OpenCLIPFile: Decodable {
  var modelCfg: OpenCLIPConfig
  var preprocessCfg: OpenCLIPPreprocessConfig?
  enum CodingKeys: String, CodingKey { case modelCfg = "model_cfg", preprocessCfg = "preprocess_cfg" }
}
