import Foundation
import Torch

// SigLIP / fixed-resolution SigLIP 2 (transformers' SiglipModel). Module keys are the Hugging Face
// checkpoint keys (`vision_model.encoder.layers.0.self_attn.q_proj.weight`, ...).

public enum ModelError: Error, LocalizedError {
  case config(file: String, reason: String)
  case input(String)

  public var errorDescription: String? {
    switch self {
    case .config(let f, let r): return "\(f): \(r)"
    case .input(let m): return m
    }
  }
}

/// transformers' ACT2FN names used by CLIP-family configs.
enum Activation {
  case geluErf, geluTanh, quickGelu

  init(_ name: String, file: String) throws {
    switch name {
    case "gelu": self = .geluErf
    case "gelu_pytorch_tanh", "gelu_new", "gelu_fast": self = .geluTanh
    case "quick_gelu": self = .quickGelu
    default: throw ModelError.config(file: file, reason: "hidden_act '\(name)' is not supported (gelu, gelu_pytorch_tanh, quick_gelu)")
    }
  }
  func callAsFunction(_ x: Tensor) throws -> Tensor {
    switch self {
    case .geluErf: return try x.gelu()
    case .geluTanh: return try x.gelu(approximate: true)
    case .quickGelu: return try x * (x * 1.702).sigmoid()
    }
  }
}

final class SiglipMLP: Module {
  @Child("fc1") var fc1: Linear
  @Child("fc2") var fc2: Linear
  let act: Activation

  init(hidden: Int, intermediate: Int, act: Activation, initialize: Initialization) throws {
    self.act = act
    super.init()
    fc1 = try Linear(hidden, intermediate, initialize: initialize)
    fc2 = try Linear(intermediate, hidden, initialize: initialize)
  }
  func callAsFunction(_ x: Tensor) throws -> Tensor { try fc2(try act(try fc1(x))) }
}

/// Multi-head attention with separate q/k/v/out projections (SiglipAttention).
final class SiglipAttention: Module {
  // transformers registers k, v, q, out in this order; LoRA injection walks them so, drawing its
  // initial weights in the same order as TAO.
  @Child("k_proj") var k: Linear
  @Child("v_proj") var v: Linear
  @Child("q_proj") var q: Linear
  @Child("out_proj") var out: Linear
  let heads: Int

  init(hidden: Int, heads: Int, initialize: Initialization) throws {
    self.heads = heads
    super.init()
    q = try Linear(hidden, hidden, initialize: initialize)
    k = try Linear(hidden, hidden, initialize: initialize)
    v = try Linear(hidden, hidden, initialize: initialize)
    out = try Linear(hidden, hidden, initialize: initialize)
  }

  /// `mask`: boolean [B, 1, Lq, Lk] (true = attend) or nil.
  func callAsFunction(_ x: Tensor, mask: Tensor?) throws -> Tensor {
    let (b, l, d) = (x.size(0), x.size(1), x.size(2))
    func split(_ t: Tensor) throws -> Tensor { try t.reshape([b, l, heads, d / heads]).transpose(1, 2) }
    let a = try F.scaledDotProductAttention(try split(try q(x)), try split(try k(x)), try split(try v(x)), mask: mask)
    return try out(try a.transpose(1, 2).reshape([b, l, d]))
  }
}

final class SiglipEncoderLayer: Module {
  @Child("layer_norm1") var norm1: LayerNorm
  @Child("self_attn") var attention: SiglipAttention
  @Child("layer_norm2") var norm2: LayerNorm
  @Child("mlp") var mlp: SiglipMLP

  init(hidden: Int, intermediate: Int, heads: Int, eps: Double, act: Activation, initialize: Initialization) throws {
    super.init()
    norm1 = try LayerNorm(hidden, eps: eps, initialize: initialize)
    attention = try SiglipAttention(hidden: hidden, heads: heads, initialize: initialize)
    norm2 = try LayerNorm(hidden, eps: eps, initialize: initialize)
    mlp = try SiglipMLP(hidden: hidden, intermediate: intermediate, act: act, initialize: initialize)
  }

  func callAsFunction(_ x: Tensor, mask: Tensor?) throws -> Tensor {
    let h = try x + attention(try norm1(x), mask: mask)
    return try h + mlp(try norm2(h))
  }
}

final class SiglipEncoder: Module {
  @Child("layers") var layers: [SiglipEncoderLayer]
  /// Recompute each layer's activations in the backward pass instead of keeping them.
  var checkpointing = false
  private var scope: CheckpointScope?

  init(count: Int, make: () throws -> SiglipEncoderLayer) throws {
    super.init()
    layers = try (0..<count).map { _ in try make() }
  }

  func callAsFunction(_ x: Tensor, mask: Tensor?) throws -> Tensor {
    try CheckpointScope.runLayers(layers, x, checkpointing: checkpointing && isTraining, scope: &scope) { try $0($1, mask: mask) }
  }
}

final class SiglipVisionEmbeddings: Module {
  @Child("patch_embedding") var patch: Conv2d
  @Child("position_embedding") var position: Embedding
  let patchSize: Int
  let gridSize: Int

  init(_ c: SiglipVisionConfig, initialize: Initialization) throws {
    patchSize = c.patchSize
    gridSize = c.imageSize / c.patchSize
    super.init()
    patch = try Conv2d(c.numChannels, c.hiddenSize, kernel: (c.patchSize, c.patchSize), stride: (c.patchSize, c.patchSize),
                       initialize: initialize)
    position = try Embedding(gridSize * gridSize, c.hiddenSize, initialize: initialize)
  }

  func callAsFunction(_ pixels: Tensor) throws -> Tensor {
    let x = try patch(pixels)  // [B, D, h, w]
    let (h, w) = (x.size(2), x.size(3))
    let tokens = try x.flatten(start: 2).transpose(1, 2)  // [B, h*w, D]
    return try tokens + positions(h: h, w: w)
  }

  /// The learned grid, bicubic-resized (align_corners false) when the input grid differs, as
  /// transformers' interpolate_pos_encoding.
  func positions(h: Int, w: Int) throws -> Tensor {
    let table = position.weight
    let n = table.size(0), d = table.size(1)
    if h * w == n && h == w { return try table.unsqueeze(0) }
    let side = Int(Double(n).squareRoot())
    let grid = try table.reshape([1, side, side, d]).permute([0, 3, 1, 2])
    let resized = try F.interpolate(grid, size: (h, w), mode: .bicubic, alignCorners: false)
    return try resized.permute([0, 2, 3, 1]).reshape([1, h * w, d])
  }
}

/// torch.nn.MultiheadAttention's parameters and math (packed q/k/v input projection).
final class PackedMultiheadAttention: Module {
  @Param("in_proj_weight") var inProjWeight: Tensor
  @Param("in_proj_bias") var inProjBias: Tensor
  @Child("out_proj") var out: Linear
  let heads: Int

  init(hidden: Int, heads: Int, initialize: Initialization) throws {
    self.heads = heads
    super.init()
    let bound = (6.0 / Double(hidden + 3 * hidden)).squareRoot()  // xavier_uniform, as PyTorch
    inProjWeight = try initialize.uniform([3 * hidden, hidden], bound: bound)
    inProjBias = try initialize.constant([3 * hidden], 0)
    out = try Linear(hidden, hidden, initialize: initialize)
  }

  func callAsFunction(query: Tensor, key: Tensor, value: Tensor, mask: Tensor? = nil, isCausal: Bool = false) throws -> Tensor {
    let d = query.size(2)
    let w = try inProjWeight.chunk(3), b = try inProjBias.chunk(3)
    func heads(_ t: Tensor) throws -> Tensor { try t.reshape([t.size(0), t.size(1), self.heads, d / self.heads]).transpose(1, 2) }
    let q = try heads(try F.linear(query, w[0], b[0]))
    let k = try heads(try F.linear(key, w[1], b[1]))
    let v = try heads(try F.linear(value, w[2], b[2]))
    let a = try F.scaledDotProductAttention(q, k, v, mask: mask, isCausal: isCausal)
    return try out(try a.transpose(1, 2).reshape([query.size(0), query.size(1), d]))
  }
}

/// The multihead attention pooling head (MAP): a learned probe attends over the tokens.
final class SiglipMAPHead: Module {
  @Param("probe") var probe: Tensor
  @Child("attention") var attention: PackedMultiheadAttention
  @Child("layernorm") var norm: LayerNorm
  @Child("mlp") var mlp: SiglipMLP

  init(_ c: SiglipVisionConfig, act: Activation, initialize: Initialization) throws {
    super.init()
    probe = try initialize.normal([1, 1, c.hiddenSize])
    attention = try PackedMultiheadAttention(hidden: c.hiddenSize, heads: c.numAttentionHeads, initialize: initialize)
    norm = try LayerNorm(c.hiddenSize, eps: c.layerNormEps, initialize: initialize)
    mlp = try SiglipMLP(hidden: c.hiddenSize, intermediate: c.intermediateSize, act: act, initialize: initialize)
  }

  func callAsFunction(_ x: Tensor, mask: Tensor? = nil) throws -> Tensor {
    let p = try probe.expand([x.size(0), 1, x.size(2)])
    let a = try attention(query: p, key: x, value: x, mask: mask)
    let y = try a + mlp(try norm(a))
    return try y.select(dim: 1, index: 0)
  }
}

final class SiglipVisionTransformer: Module {
  // One of the two, under the same key: a conv patch embedding (SiglipModel) or NaFlex's Linear.
  @Child("embeddings") var embeddings: SiglipVisionEmbeddings?
  @Child("embeddings") var naflexEmbeddings: NaFlexVisionEmbeddings?
  @Child("encoder") var encoder: SiglipEncoder
  @Child("post_layernorm") var postNorm: LayerNorm
  @Child("head") var head: SiglipMAPHead?

  init(_ c: SiglipVisionConfig, naflex: Bool = false, file: String, initialize: Initialization) throws {
    let act = try Activation(c.hiddenAct, file: file)
    super.init()
    if naflex {
      embeddings = nil
      naflexEmbeddings = try NaFlexVisionEmbeddings(c, initialize: initialize)
    } else {
      embeddings = try SiglipVisionEmbeddings(c, initialize: initialize)
      naflexEmbeddings = nil
    }
    encoder = try SiglipEncoder(count: c.numHiddenLayers) {
      try SiglipEncoderLayer(hidden: c.hiddenSize, intermediate: c.intermediateSize, heads: c.numAttentionHeads,
                             eps: c.layerNormEps, act: act, initialize: initialize)
    }
    postNorm = try LayerNorm(c.hiddenSize, eps: c.layerNormEps, initialize: initialize)
    head = c.visionUseHead ? try SiglipMAPHead(c, act: act, initialize: initialize) : nil
  }

  /// Pooled image features [B, D] from pixels [B, 3, H, W].
  func callAsFunction(_ pixels: Tensor) throws -> Tensor {
    guard let embeddings else { throw ModelError.input("this SigLIP 2 NaFlex vision tower takes patches, not images") }
    let h = try postNorm(try encoder(try embeddings(pixels), mask: nil))
    guard let head else { return try h.mean(dims: [1]) }
    return try head(h)
  }
}

final class SiglipTextEmbeddings: Module {
  @Child("token_embedding") var token: Embedding
  @Child("position_embedding") var position: Embedding

  init(_ c: SiglipTextConfig, initialize: Initialization) throws {
    super.init()
    token = try Embedding(c.vocabSize, c.hiddenSize, initialize: initialize)
    position = try Embedding(c.maxPositionEmbeddings, c.hiddenSize, initialize: initialize)
  }

  func callAsFunction(_ ids: Tensor) throws -> Tensor {
    let l = ids.size(1)
    guard l <= position.weight.size(0) else {
      throw ModelError.input("text of \(l) tokens is longer than the model's \(position.weight.size(0)) positions")
    }
    return try token(ids) + position.weight.narrow(dim: 0, start: 0, length: l).unsqueeze(0)
  }
}

final class SiglipTextTransformer: Module {
  @Child("embeddings") var embeddings: SiglipTextEmbeddings
  @Child("encoder") var encoder: SiglipEncoder
  @Child("final_layer_norm") var finalNorm: LayerNorm
  @Child("head") var head: Linear

  init(_ c: SiglipTextConfig, file: String, initialize: Initialization) throws {
    let act = try Activation(c.hiddenAct, file: file)
    super.init()
    embeddings = try SiglipTextEmbeddings(c, initialize: initialize)
    encoder = try SiglipEncoder(count: c.numHiddenLayers) {
      try SiglipEncoderLayer(hidden: c.hiddenSize, intermediate: c.intermediateSize, heads: c.numAttentionHeads,
                             eps: c.layerNormEps, act: act, initialize: initialize)
    }
    finalNorm = try LayerNorm(c.hiddenSize, eps: c.layerNormEps, initialize: initialize)
    head = try Linear(c.hiddenSize, c.projectionSize ?? c.hiddenSize, initialize: initialize)
  }

  /// Pooled text features [B, E] from ids [B, L]: last position after the final norm, then head.
  /// `attentionMask` [B, L] (1 = token) hides padded keys, as transformers does when given one.
  func callAsFunction(_ ids: Tensor, attentionMask: Tensor? = nil) throws -> Tensor {
    var mask: Tensor? = nil
    if let m = attentionMask {
      mask = try m.ne(0).unsqueeze(1).unsqueeze(1)  // [B, 1, 1, L]
    }
    let h = try finalNorm(try encoder(try embeddings(ids), mask: mask))
    return try head(try h.select(dim: 1, index: ids.size(1) - 1))
  }
}

/// transformers' SiglipModel.
public final class SiglipModel: Module {
  @Child("text_model") var text: SiglipTextTransformer
  @Child("vision_model") var vision: SiglipVisionTransformer
  @Param("logit_scale") public var logitScale: Tensor
  @Param("logit_bias") public var logitBias: Tensor
  public let config: SiglipConfig

  public init(_ config: SiglipConfig, file: String = "config.json", initialize: Initialization = .random) throws {
    try config.validate(file: file)
    self.config = config
    super.init()
    text = try SiglipTextTransformer(config.textConfig, file: file, initialize: initialize)
    vision = try SiglipVisionTransformer(config.visionConfig, naflex: config.modelType == "siglip2", file: file, initialize: initialize)
    logitScale = try initialize.constant([1], 0)
    logitBias = try initialize.constant([1], 0)
  }

  /// `get_image_features`: pooled, not normalised.
  public func imageFeatures(_ pixels: Tensor) throws -> Tensor { try vision(pixels) }
  /// `get_text_features`: pooled, not normalised.
  public func textFeatures(_ ids: Tensor, attentionMask: Tensor? = nil) throws -> Tensor {
    try text(ids, attentionMask: attentionMask)
  }

  public var gradientCheckpointing: Bool {
    get { text.encoder.checkpointing }
    set { text.encoder.checkpointing = newValue; vision.encoder.checkpointing = newValue }
  }
}

extension SiglipModel {
  /// Builds the model a Hugging Face directory's config.json describes and loads its weights
  /// strictly (every key present, none extra, every shape right).
  public static func fromPretrained(_ dir: String, device: Device = .cpu) throws -> SiglipModel {
    let model = try fromConfig(dir, initialize: Initialization.empty.on(device))
    var weights = try PretrainedLocator.weights(in: dir)
    // Some exports carry buffers transformers does not persist.
    weights = weights.filter { !$0.key.hasSuffix("position_ids") }
    try model.load(stateDict: weights, assign: true, source: dir)
    model.eval()
    return model
  }

  /// The architecture of a directory's config.json, with `initialize`d weights.
  public static func fromConfig(_ dir: String, initialize: Initialization) throws -> SiglipModel {
    try SiglipModel(try config(dir), file: dir + "/config.json", initialize: initialize)
  }

  /// A directory's config.json (model_type siglip or siglip2).
  public static func config(_ dir: String) throws -> SiglipConfig {
    let path = dir + "/config.json"
    guard let data = FileManager.default.contents(atPath: path) else {
      throw ModelError.config(file: path, reason: "missing")
    }
    let config: SiglipConfig
    do { config = try JSONDecoder().decode(SiglipConfig.self, from: data) } catch {
      throw ModelError.config(file: path, reason: "not a SigLIP config (\(error.localizedDescription))")
    }
    guard config.modelType == "siglip" || config.modelType == "siglip2" else {
      throw ModelError.config(file: path, reason: "model_type '\(config.modelType)' is not 'siglip' or 'siglip2'")
    }
    try config.validate(file: path)
    return config
  }
}
