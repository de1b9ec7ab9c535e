import Foundation
import Torch

// open_clip's `CLIP` class: its own ViT (`visual.*`) and text transformer (top-level
// `token_embedding`, `transformer`, `ln_final`, `text_projection`), as NV-CLIP / CLIPA (TAO's
// `ViT-*-SigLIP-CLIPA-*`) and OpenAI-style CLIP checkpoints use it. Module keys are open_clip's
// state-dict keys. Blocks are pre-LN with torch.nn.MultiheadAttention's packed projection.

final class OpenCLIPMLP: Module {
  @Child("c_fc") var fc: Linear
  @Child("c_proj") var proj: Linear
  let act: Activation

  init(width: Int, hidden: Int, act: Activation, initialize: Initialization) throws {
    self.act = act
    super.init()
    fc = try Linear(width, hidden, initialize: initialize)
    proj = try Linear(hidden, width, initialize: initialize)
  }
  func callAsFunction(_ x: Tensor) throws -> Tensor { try proj(try act(try fc(x))) }
}

final class ResidualAttentionBlock: Module {
  @Child("ln_1") var ln1: LayerNorm
  @Child("attn") var attn: PackedMultiheadAttention
  @Child("ln_2") var ln2: LayerNorm
  @Child("mlp") var mlp: OpenCLIPMLP

  init(width: Int, heads: Int, mlpRatio: Double, eps: Double, act: Activation, initialize: Initialization) throws {
    super.init()
    ln1 = try LayerNorm(width, eps: eps, initialize: initialize)
    attn = try PackedMultiheadAttention(hidden: width, heads: heads, initialize: initialize)
    ln2 = try LayerNorm(width, eps: eps, initialize: initialize)
    mlp = try OpenCLIPMLP(width: width, hidden: Int(Double(width) * mlpRatio), act: act, initialize: initialize)
  }

  func callAsFunction(_ x: Tensor, causal: Bool) throws -> Tensor {
    let y = try ln1(x)
    let h = try x + attn(query: y, key: y, value: y, isCausal: causal)
    return try h + mlp(try ln2(h))
  }
}

final class OpenCLIPTransformer: Module {
  @Child("resblocks") var blocks: [ResidualAttentionBlock]
  var checkpointing = false
  private var scope: CheckpointScope?

  init(width: Int, layers: Int, heads: Int, mlpRatio: Double, eps: Double, act: Activation, initialize: Initialization) throws {
    super.init()
    blocks = try (0..<layers).map { _ in
      try ResidualAttentionBlock(width: width, heads: heads, mlpRatio: mlpRatio, eps: eps, act: act, initialize: initialize)
    }
  }

  func callAsFunction(_ x: Tensor, causal: Bool) throws -> Tensor {
    try CheckpointScope.runLayers(blocks, x, checkpointing: checkpointing && isTraining, scope: &scope) { try $0($1, causal: causal) }
  }
}

final class OpenCLIPVisionTransformer: Module {
  @Child("conv1") var conv1: Conv2d
  @Param("class_embedding") var classEmbedding: Tensor
  @Param("positional_embedding") var positionalEmbedding: Tensor
  @Child("ln_pre") var lnPre: LayerNorm?
  @Child("transformer") var transformer: OpenCLIPTransformer
  @Child("ln_post") var lnPost: LayerNorm
  @Param("proj") var proj: Tensor
  let config: OpenCLIPVisionConfig

  init(_ c: OpenCLIPVisionConfig, embedDim: Int, eps: Double, act: Activation, initialize: Initialization) throws {
    config = c
    super.init()
    let w = c.width, scale = 1 / Double(w).squareRoot()
    conv1 = try Conv2d(3, w, kernel: (c.patchSize, c.patchSize), stride: (c.patchSize, c.patchSize), bias: false, initialize: initialize)
    classEmbedding = try initialize.normal([w], std: scale)
    let tokens = c.gridSize * c.gridSize + 1
    if c.posEmbedType == "sin_cos_2d" {
      // Fixed, saved in the state dict but never trained (open_clip: requires_grad=False).
      positionalEmbedding = try initialize.placed(Self.sinCos2D(width: w, grid: c.gridSize))
      _ = try positionalEmbedding.requiresGrad(false)
    } else {
      positionalEmbedding = try initialize.normal([tokens, w], std: scale)
    }
    lnPre = c.noLnPre ? nil : try LayerNorm(w, eps: eps, initialize: initialize)
    transformer = try OpenCLIPTransformer(width: w, layers: c.layers, heads: c.heads, mlpRatio: c.mlpRatio, eps: eps, act: act, initialize: initialize)
    lnPost = try LayerNorm(w, eps: eps, initialize: initialize)
    proj = try initialize.normal([w, embedDim], std: scale)
  }

  /// MAE's fixed 2-D table with a zero class row: per patch (row r, column c), the first half of
  /// the width encodes c and the second r, each as sin then cos at frequencies 10000^(-k/(W/4)).
  static func sinCos2D(width w: Int, grid g: Int) throws -> Tensor {
    let quarter = w / 4
    var table = [Float](repeating: 0, count: (g * g + 1) * w)
    for r in 0..<g {
      for c in 0..<g {
        let row = (1 + r * g + c) * w
        for (half, pos) in [(0, Double(c)), (1, Double(r))] {
          for k in 0..<quarter {
            let angle = pos / pow(10000, Double(k) / Double(quarter))
            table[row + half * (w / 2) + k] = Float(sin(angle))
            table[row + half * (w / 2) + quarter + k] = Float(cos(angle))
          }
        }
      }
    }
    return try Tensor(table, shape: [g * g + 1, w])
  }

  /// The position table for an h×w patch grid. Other sizes than the model's get the patch rows
  /// resized as TAO's OpenCLIP wrapper does (DINO's recipe: bicubic with scale factors
  /// (w+0.1)/√N and (h+0.1)/√N); the class row is kept.
  func positions(h: Int, w: Int) throws -> Tensor {
    let n = positionalEmbedding.size(0) - 1, d = positionalEmbedding.size(1)
    let side = Int(Double(n).squareRoot())
    if h == side && w == side { return positionalEmbedding }
    let grid = try positionalEmbedding.narrow(dim: 0, start: 1, length: n).reshape([1, side, side, d]).permute([0, 3, 1, 2])
    // DINO passes (w0, h0) in that order to (height, width); equal for the square inputs TAO uses.
    let resized = try F.interpolate(grid, scales: ((Double(w) + 0.1) / Double(side), (Double(h) + 0.1) / Double(side)), mode: .bicubic)
    guard resized.size(2) == h && resized.size(3) == w else {
      throw ModelError.input("this OpenCLIP vision tower takes square inputs (a \(h)x\(w) patch grid was given)")
    }
    let patchRows = try resized.permute([0, 2, 3, 1]).reshape([h * w, d])
    return try Tensor.cat([try positionalEmbedding.narrow(dim: 0, start: 0, length: 1), patchRows], dim: 0)
  }

  /// Pooled, projected image features [B, E] from pixels [B, 3, H, W].
  func callAsFunction(_ pixels: Tensor) throws -> Tensor {
    let x0 = try conv1(pixels)  // [B, W, g, g]
    let (b, w) = (x0.size(0), x0.size(1))
    let patches = try x0.flatten(start: 2).transpose(1, 2)  // [B, g*g, W]
    let cls = try classEmbedding.reshape([1, 1, w]).expand([b, 1, w])
    var x = try Tensor.cat([cls, patches], dim: 1) + positions(h: x0.size(2), w: x0.size(3)).unsqueeze(0)
    if let lnPre { x = try lnPre(x) }
    x = try transformer(x, causal: false)
    func pool(_ t: Tensor) throws -> Tensor {
      config.poolType == "avg" ? try t.narrow(dim: 1, start: 1, length: t.size(1) - 1).mean(dims: [1]) : try t.select(dim: 1, index: 0)
    }
    let pooled = config.finalLnAfterPool ? try lnPost(try pool(x)) : try pool(try lnPost(x))
    return try pooled.matmul(proj)
  }
}

/// open_clip's `CLIP`.
public final class OpenCLIPModel: Module {
  /// nil for a text tower alone (RADIO's open_clip adaptor sets `visual = None`).
  @Child("visual") var visual: OpenCLIPVisionTransformer?
  @Child("token_embedding") var tokenEmbedding: Embedding
  @Param("positional_embedding") var positionalEmbedding: Tensor
  @Child("transformer") var transformer: OpenCLIPTransformer
  @Child("ln_final") var lnFinal: LayerNorm
  // A [W, E] matrix (CLIP, CLIPA, NV-CLIP) or a Linear with bias (proj_bias), under one key.
  @Param("text_projection") var textProjection: Tensor?
  @Child("text_projection") var textProjectionLinear: Linear?
  @Param("logit_scale") public var logitScale: Tensor
  @Param("logit_bias") public var logitBias: Tensor?
  public let config: OpenCLIPConfig

  public init(_ config: OpenCLIPConfig, file: String = "open_clip_config.json", initialize: Initialization = .random, textOnly: Bool = false) throws {
    try config.validate(file: file)
    self.config = config
    super.init()
    // Per tower, as open_clip: QuickGELU when quick_gelu, else GELU (act_kwargs may ask for
    // tanh); LayerNorm eps 1e-5 unless norm_kwargs says otherwise.
    func act(_ approximate: String?) -> Activation { config.quickGelu ? .quickGelu : approximate == "tanh" ? .geluTanh : .geluErf }
    let v = config.vision, t = config.text
    visual = textOnly ? nil
      : try OpenCLIPVisionTransformer(v, embedDim: config.embedDim, eps: v.normEps ?? 1e-5, act: act(v.geluApproximate), initialize: initialize)
    tokenEmbedding = try Embedding(t.vocabSize, t.width, initialize: initialize)
    positionalEmbedding = try initialize.normal([t.contextLength, t.width], std: 0.01)
    transformer = try OpenCLIPTransformer(width: t.width, layers: t.layers, heads: t.heads, mlpRatio: t.mlpRatio, eps: t.normEps ?? 1e-5,
                                          act: act(t.geluApproximate), initialize: initialize)
    lnFinal = try LayerNorm(t.width, eps: t.normEps ?? 1e-5, initialize: initialize)
    if t.projBias {
      textProjection = nil
      textProjectionLinear = try Linear(t.width, config.embedDim, initialize: initialize)
    } else {
      textProjection = try initialize.normal([t.width, config.embedDim], std: 1 / Double(t.width).squareRoot())
      textProjectionLinear = nil
    }
    logitScale = try initialize.constant([], log(1 / 0.07))
    logitBias = try config.initLogitBias.map { try initialize.constant([], $0) }
  }

  /// `encode_image`: pooled and projected, not normalised.
  public func imageFeatures(_ pixels: Tensor) throws -> Tensor {
    guard let visual else { throw ModelError.input("this open_clip model has no vision tower") }
    return try visual(pixels)
  }

  /// `encode_text`: pooled and projected, not normalised. `ids` [B, L], L ≤ the context length.
  public func textFeatures(_ ids: Tensor) throws -> Tensor {
    let l = ids.size(1)
    guard l <= positionalEmbedding.size(0) else {
      throw ModelError.input("text of \(l) tokens is longer than the model's \(positionalEmbedding.size(0)) positions")
    }
    var x = try tokenEmbedding(ids) + positionalEmbedding.narrow(dim: 0, start: 0, length: l).unsqueeze(0)
    x = try lnFinal(try transformer(x, causal: !config.text.noCausalMask))
    let pooled: Tensor
    switch config.text.poolType {
    case "first": pooled = try x.select(dim: 1, index: 0)
    case "argmax":  // the end-of-text token has the highest id
      let at = try ids.argmax(dim: 1).reshape([x.size(0), 1, 1]).expand([x.size(0), 1, x.size(2)])
      pooled = try x.gather(dim: 1, index: at).squeeze(1)
    default: pooled = try x.select(dim: 1, index: l - 1)
    }
    if let textProjectionLinear { return try textProjectionLinear(pooled) }
    return try pooled.matmul(textProjection!)
  }

  public var gradientCheckpointing: Bool {
    get { transformer.checkpointing }
    set { transformer.checkpointing = newValue; visual?.transformer.checkpointing = newValue }
  }
}
