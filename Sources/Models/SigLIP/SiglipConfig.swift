import Foundation

// Hugging Face `SiglipConfig` (config.json of SigLIP and fixed-resolution SigLIP 2 checkpoints,
// model_type "siglip"). Keys are transformers' names; absent keys take transformers' defaults
// (configuration_siglip.py).

public struct SiglipTextConfig: Codable, Sendable, Equatable {
  public var vocabSize = 32000
  public var hiddenSize = 768
  public var intermediateSize = 3072
  public var numHiddenLayers = 12
  public var numAttentionHeads = 12
  public var maxPositionEmbeddings = 64
  public var hiddenAct = "gelu_pytorch_tanh"
  public var layerNormEps = 1e-6
  public var projectionSize: Int?

  enum CodingKeys: String, CodingKey {
    case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size",
      numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads",
      maxPositionEmbeddings = "max_position_embeddings", hiddenAct = "hidden_act", layerNormEps = "layer_norm_eps",
      projectionSize = "projection_size"
  }

  public init(vocabSize: Int = 32000, hiddenSize: Int = 768, intermediateSize: Int = 3072, numHiddenLayers: Int = 12,
              numAttentionHeads: Int = 12, maxPositionEmbeddings: Int = 64, hiddenAct: String = "gelu_pytorch_tanh",
              layerNormEps: Double = 1e-6, projectionSize: Int? = nil) {
    self.vocabSize = vocabSize
    self.hiddenSize = hiddenSize
    self.intermediateSize = intermediateSize
    self.numHiddenLayers = numHiddenLayers
    self.numAttentionHeads = numAttentionHeads
    self.maxPositionEmbeddings = maxPositionEmbeddings
    self.hiddenAct = hiddenAct
    self.layerNormEps = layerNormEps
    self.projectionSize = projectionSize
  }

  public init(from d: Decoder) throws {
    let c = try d.container(keyedBy: CodingKeys.self)
    let x = SiglipTextConfig()
    vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? x.vocabSize
    hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? x.hiddenSize
    intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? x.intermediateSize
    numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? x.numHiddenLayers
    numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? x.numAttentionHeads
    maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? x.maxPositionEmbeddings
    hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? x.hiddenAct
    layerNormEps = try c.decodeIfPresent(Double.self, forKey: .layerNormEps) ?? x.layerNormEps
    projectionSize = try c.decodeIfPresent(Int.self, forKey: .projectionSize)
  }
}

public struct SiglipVisionConfig: Codable, Sendable, Equatable {
  public var hiddenSize = 768
  public var intermediateSize = 3072
  public var numHiddenLayers = 12
  public var numAttentionHeads = 12
  public var numChannels = 3
  public var imageSize = 224
  public var patchSize = 16
  public var hiddenAct = "gelu_pytorch_tanh"
  public var layerNormEps = 1e-6
  public var visionUseHead = true
  /// NaFlex (Siglip2VisionConfig) only: the learned position grid has num_patches entries.
  public var numPatches: Int?

  enum CodingKeys: String, CodingKey {
    case hiddenSize = "hidden_size", intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers",
      numAttentionHeads = "num_attention_heads", numChannels = "num_channels", imageSize = "image_size",
      patchSize = "patch_size", hiddenAct = "hidden_act", layerNormEps = "layer_norm_eps",
      visionUseHead = "vision_use_head", numPatches = "num_patches"
  }

  public init(hiddenSize: Int = 768, intermediateSize: Int = 3072, numHiddenLayers: Int = 12, numAttentionHeads: Int = 12,
              numChannels: Int = 3, imageSize: Int = 224, patchSize: Int = 16, hiddenAct: String = "gelu_pytorch_tanh",
              layerNormEps: Double = 1e-6, visionUseHead: Bool = true, numPatches: Int? = nil) {
    self.hiddenSize = hiddenSize
    self.intermediateSize = intermediateSize
    self.numHiddenLayers = numHiddenLayers
    self.numAttentionHeads = numAttentionHeads
    self.numChannels = numChannels
    self.imageSize = imageSize
    self.patchSize = patchSize
    self.hiddenAct = hiddenAct
    self.layerNormEps = layerNormEps
    self.visionUseHead = visionUseHead
    self.numPatches = numPatches
  }

  public init(from d: Decoder) throws {
    let c = try d.container(keyedBy: CodingKeys.self)
    let x = SiglipVisionConfig()
    hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? x.hiddenSize
    intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? x.intermediateSize
    numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? x.numHiddenLayers
    numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? x.numAttentionHeads
    numChannels = try c.decodeIfPresent(Int.self, forKey: .numChannels) ?? x.numChannels
    imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? x.imageSize
    patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? x.patchSize
    hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? x.hiddenAct
    layerNormEps = try c.decodeIfPresent(Double.self, forKey: .layerNormEps) ?? x.layerNormEps
    visionUseHead = try c.decodeIfPresent(Bool.self, forKey: .visionUseHead) ?? true
    numPatches = try c.decodeIfPresent(Int.self, forKey: .numPatches)
  }
}

public struct SiglipConfig: Codable, Sendable, Equatable {
  public var modelType: String
  public var textConfig: SiglipTextConfig
  public var visionConfig: SiglipVisionConfig

  enum CodingKeys: String, CodingKey { case modelType = "model_type", textConfig = "text_config", visionConfig = "vision_config" }

  public init(modelType: String = "siglip", textConfig: SiglipTextConfig, visionConfig: SiglipVisionConfig) {
    self.modelType = modelType
    self.textConfig = textConfig
    self.visionConfig = visionConfig
  }

  public init(from d: Decoder) throws {
    let c = try d.container(keyedBy: CodingKeys.self)
    modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? "siglip"
    textConfig = try c.decodeIfPresent(SiglipTextConfig.self, forKey: .textConfig) ?? SiglipTextConfig()
    visionConfig = try c.decodeIfPresent(SiglipVisionConfig.self, forKey: .visionConfig) ?? SiglipVisionConfig()
  }

  /// What the model needs of the sizes (transformers does not check them; a zero head count or
  /// patch size would divide by zero, a negative layer count make an invalid range): every error
  /// names the file and the field. Sizes are capped at 2^31 − 1 so that the counts built from
  /// them (3·hidden, grid², channels·patch²) cannot overflow.
  func validate(file: String) throws {
    func check(_ value: Int, _ field: String, min: Int = 1) throws {
      guard value >= min && value <= Int(Int32.max) else {
        throw ModelError.config(file: file, reason: "\(field) must be in \(min)...\(Int32.max), got \(value)")
      }
    }
    func heads(_ hidden: Int, _ heads: Int, _ tower: String) throws {
      guard hidden % heads == 0 else {
        throw ModelError.config(file: file, reason: "\(tower).hidden_size \(hidden) is not divisible by \(tower).num_attention_heads \(heads)")
      }
    }
    let t = textConfig, v = visionConfig
    try check(t.vocabSize, "text_config.vocab_size")
    try check(t.hiddenSize, "text_config.hidden_size")
    try check(t.intermediateSize, "text_config.intermediate_size")
    try check(t.numHiddenLayers, "text_config.num_hidden_layers", min: 0)
    try check(t.numAttentionHeads, "text_config.num_attention_heads")
    try check(t.maxPositionEmbeddings, "text_config.max_position_embeddings")
    if let p = t.projectionSize { try check(p, "text_config.projection_size") }
    try heads(t.hiddenSize, t.numAttentionHeads, "text_config")
    try check(v.hiddenSize, "vision_config.hidden_size")
    try check(v.intermediateSize, "vision_config.intermediate_size")
    try check(v.numHiddenLayers, "vision_config.num_hidden_layers", min: 0)
    try check(v.numAttentionHeads, "vision_config.num_attention_heads")
    try check(v.numChannels, "vision_config.num_channels")
    try check(v.patchSize, "vision_config.patch_size")
    try heads(v.hiddenSize, v.numAttentionHeads, "vision_config")
    try check(v.imageSize, "vision_config.image_size")  // also the NaFlex processor's default size
    if modelType == "siglip2" {
      // NaFlex: a Linear over channels·patch² values and a square grid of num_patches positions.
      let n = v.numPatches ?? 256
      try check(n, "vision_config.num_patches")
      let side = Int(Double(n).squareRoot())
      guard side * side == n else {
        throw ModelError.config(file: file, reason: "vision_config.num_patches \(n) is not a square (the position grid is side × side)")
      }
      let (perPatch, overflow) = v.numChannels.multipliedReportingOverflow(by: v.patchSize * v.patchSize)
      guard !overflow && perPatch <= Int(Int32.max) else {
        throw ModelError.config(file: file, reason: "vision_config.num_channels × patch_size² (\(v.numChannels) × \(v.patchSize)²) is too large")
      }
    } else {
      guard v.imageSize >= v.patchSize else {
        throw ModelError.config(file: file, reason: "vision_config.image_size \(v.imageSize) is smaller than vision_config.patch_size \(v.patchSize)")
      }
    }
  }

  /// The so400m trunk every TAO SigLIP 2 type uses (D 1152, 27 layers, 16 heads, MLP 4304).
  public static func so400m(imageSize: Int, patchSize: Int) -> SiglipConfig {
    SiglipConfig(
      textConfig: SiglipTextConfig(vocabSize: 256000, hiddenSize: 1152, intermediateSize: 4304, numHiddenLayers: 27,
                                   numAttentionHeads: 16, maxPositionEmbeddings: 64),
      visionConfig: SiglipVisionConfig(hiddenSize: 1152, intermediateSize: 4304, numHiddenLayers: 27, numAttentionHeads: 16,
                                       imageSize: imageSize, patchSize: patchSize))
  }
}
