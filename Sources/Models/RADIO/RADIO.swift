import Foundation
import Torch

// C-RADIOv3 as NVlabs/RADIO's hubconf builds it from a hub checkpoint and TAO's CRADIO wraps it.
// Module keys are TAO's: `radio_model.model.*` is the timm ViT with RADIO's CPE patch generator,
// `radio_model.adaptors.<name>.*` the chosen teacher's heads and text tower.

/// RADIO's patch generator: a bias-free Linear over channel-major patches, a CPE position grid
/// resampled to the input's patch grid, then the class/register tokens in front.
final class RADIOPatchGenerator: Module {
  @Child("embedder") var embedder: Linear
  @Param("pos_embed") var posEmbed: Tensor
  @Child("cls_token") var clsToken: RADIOClsToken
  @Child("patch_normalizer") var patchNormalizer: LayerNorm?
  let patchSize: Int
  /// Side of the square position grid (cpe_max_size / patch).
  let rows: Int
  /// The grid is larger than the timm model's own input (always so for C-RADIO): training crops a
  /// random window of it, evaluation resizes it to the input's larger side.
  let cpeMode: Bool
  let posDropout: Double

  init(_ c: RADIOConfig, initialize: Initialization) throws {
    patchSize = c.patchSize
    rows = c.gridRows
    cpeMode = c.cpeMode
    posDropout = c.posDropout
    super.init()
    embedder = try Linear(3 * c.patchSize * c.patchSize, c.width, bias: false, initialize: initialize)
    posEmbed = try initialize.normal([1, c.gridRows * c.gridRows, c.width], std: 1 / Double(c.width).squareRoot())
    clsToken = try RADIOClsToken(count: c.clsTokens + c.registers, width: c.width, initialize: initialize)
    patchNormalizer = c.normalizePatches ? try LayerNorm(c.width, eps: 1e-5, initialize: initialize) : nil
  }

  /// Tokens [B, T+R+N, C] from normalised pixels [B, 3, H, W] (H, W multiples of the patch).
  func callAsFunction(_ x: Tensor) throws -> Tensor {
    let (b, h, w, p) = (x.size(0), x.size(2), x.size(3), patchSize)
    guard h % p == 0 && w % p == 0 && h > 0 && w > 0 else {
      throw ModelError.input("RADIO needs image sides that are multiples of its patch size \(p); got \(h)×\(w)")
    }
    let (py, px) = (h / p, w / p)
    // 'b c (py yy) (px xx) -> b (py px) (c yy xx)'
    let patches = try x.reshape([b, 3, py, p, px, p]).permute([0, 2, 4, 1, 3, 5]).reshape([b, py * px, 3 * p * p])
    var pos = try positions(batch: b, rows: py, cols: px)
    if isTraining && posDropout > 0 {
      // Per sample, the whole positional encoding is dropped (RADIO's pos_dropout).
      let keeps = try Tensor.rand([b, 1, 1], dtype: pos.dtype, device: pos.device).gt(posDropout)
      pos = try Tensor.where(keeps, pos, try Tensor.zeros([1], dtype: pos.dtype, device: pos.device))
    }
    let tokens = try embedder(patches) + pos
    let prefix = try clsToken.token.unsqueeze(0).expand([b, clsToken.token.size(0), clsToken.token.size(1)])
    let out = try Tensor.cat([prefix, tokens], dim: 1)
    return try patchNormalizer.map { try $0(out) } ?? out
  }

  /// The position encoding for a py × px patch grid, [1 or B, py·px, C].
  func positions(batch b: Int, rows py: Int, cols px: Int) throws -> Tensor {
    if py == rows && px == rows { return posEmbed }
    let c = posEmbed.size(2)
    var grid = try posEmbed.reshape([1, rows, rows, c]).permute([0, 3, 1, 2])
    func window(_ g: Tensor) throws -> Tensor {
      var g = g
      if py < g.size(2) { g = try g.narrow(dim: 2, start: 0, length: py) }
      if px < g.size(3) { g = try g.narrow(dim: 3, start: 0, length: px) }
      return g
    }
    if cpeMode && isTraining {
      // A random window of the grid per sample (scale² ∈ [0.1, 1], aspect ∈ [3/4, 4/3]), sampled
      // bilinearly: RADIO's draws, in its order, from the default generator of the grid's device.
      let device = posEmbed.device
      let minScale = 0.1.squareRoot(), aspectMin = Foundation.log(3.0 / 4.0)
      let scale = try Tensor.rand([b, 1, 1], device: device) * (1 - minScale) + minScale
      let aspect = try (Tensor.rand([b, 1, 1], device: device) * (-2 * aspectMin) + aspectMin).exp()
      let scaleXY = try Tensor.stack([scale * aspect, scale * aspect.reciprocal()], dim: -1).clamp(min: 0, max: 1)
      let posXY = try Tensor.rand([b, 1, 1, 2], device: device) * (1 - scaleXY)
      let linX = try Tensor.linspace(0, 1, steps: px, device: device).reshape([1, 1, px]).expand([b, py, px])
      let linY = try Tensor.linspace(0, 1, steps: py, device: device).reshape([1, py, 1]).expand([b, py, px])
      let xy = try (Tensor.stack([linX, linY], dim: -1) * scaleXY + posXY) * 2 - 1
      grid = try F.gridSample(try grid.to(.float32).expand([b, c, rows, rows]), grid: xy, alignCorners: true).to(posEmbed.dtype)
    } else if cpeMode {
      let m = max(py, px)
      grid = try window(try F.interpolate(try grid.to(.float32), size: (m, m), mode: .bilinear).to(posEmbed.dtype))
    } else {
      grid = try window(grid)
    }
    if grid.size(2) != py || grid.size(3) != px {
      grid = try F.interpolate(try grid.to(.float32), size: (py, px), mode: .bilinear).to(posEmbed.dtype)
    }
    return try grid.flatten(start: 2).permute([0, 2, 1])
  }
}

/// The class tokens (one per distinct teacher) and registers, prepended to the patches.
final class RADIOClsToken: Module {
  @Param("token") var token: Tensor
  init(count: Int, width: Int, initialize: Initialization) throws {
    super.init()
    token = try initialize.normal([count, width], std: 1 / Double(width).squareRoot())
  }
}

/// timm's LayerScale, whose `gamma` RADIO stores as `grandma`.
final class LayerScale: Module {
  @Param("grandma") var gamma: Tensor
  init(_ width: Int, initialize: Initialization) throws {
    super.init()
    gamma = try initialize.constant([width], 1e-5)
  }
  func callAsFunction(_ x: Tensor) throws -> Tensor { try x * gamma }
}

/// timm's Attention: one qkv Linear, scaled dot-product attention, proj.
final class TimmAttention: Module {
  @Child("qkv") var qkv: Linear
  @Child("proj") var proj: Linear
  let heads: Int

  init(_ width: Int, heads: Int, qkvBias: Bool, initialize: Initialization) throws {
    self.heads = heads
    super.init()
    qkv = try Linear(width, 3 * width, bias: qkvBias, initialize: initialize)
    proj = try Linear(width, width, initialize: initialize)
  }

  func callAsFunction(_ x: Tensor) throws -> Tensor {
    let (b, n, c) = (x.size(0), x.size(1), x.size(2))
    let parts = try qkv(x).reshape([b, n, 3, heads, c / heads]).permute([2, 0, 3, 1, 4])
    let a = try F.scaledDotProductAttention(try parts.select(dim: 0, index: 0), try parts.select(dim: 0, index: 1),
                                            try parts.select(dim: 0, index: 2))
    return try proj(try a.transpose(1, 2).reshape([b, n, c]))
  }
}

/// timm's Mlp: fc1, exact GELU, an optional LayerNorm (RADIO's `_mlpnorm` models), fc2.
final class TimmMlp: Module {
  @Child("fc1") var fc1: Linear
  @Child("norm") var norm: LayerNorm?
  @Child("fc2") var fc2: Linear

  init(_ width: Int, hidden: Int, norm: Bool, initialize: Initialization) throws {
    super.init()
    fc1 = try Linear(width, hidden, initialize: initialize)
    self.norm = norm ? try LayerNorm(hidden, eps: 1e-5, initialize: initialize) : nil
    fc2 = try Linear(hidden, width, initialize: initialize)
  }
  func callAsFunction(_ x: Tensor) throws -> Tensor {
    let h = try fc1(x).gelu()
    return try fc2(try norm.map { try $0(h) } ?? h)
  }
}

/// timm's pre-norm ViT Block with optional LayerScale and stochastic depth.
final class TimmBlock: Module {
  @Child("norm1") var norm1: LayerNorm
  @Child("attn") var attn: TimmAttention
  @Child("ls1") var ls1: LayerScale?
  @Child("norm2") var norm2: LayerNorm
  @Child("mlp") var mlp: TimmMlp
  @Child("ls2") var ls2: LayerScale?
  /// This block's drop-path rate (timm spreads args.drop_path linearly over the depth).
  var dropPath: Double

  init(_ c: RADIOConfig, dropPath: Double, initialize: Initialization) throws {
    self.dropPath = dropPath
    super.init()
    norm1 = try LayerNorm(c.width, eps: 1e-6, initialize: initialize)
    attn = try TimmAttention(c.width, heads: c.heads, qkvBias: c.qkvBias, initialize: initialize)
    ls1 = c.layerScale ? try LayerScale(c.width, initialize: initialize) : nil
    norm2 = try LayerNorm(c.width, eps: 1e-6, initialize: initialize)
    mlp = try TimmMlp(c.width, hidden: c.mlpHidden, norm: c.mlpNorm, initialize: initialize)
    ls2 = c.layerScale ? try LayerScale(c.width, initialize: initialize) : nil
  }

  func callAsFunction(_ x: Tensor) throws -> Tensor {
    var a = try attn(try norm1(x))
    if let ls1 { a = try ls1(a) }
    let h = try x + drop(a)
    var m = try mlp(try norm2(h))
    if let ls2 { m = try ls2(m) }
    return try h + drop(m)
  }

  /// timm's DropPath: whole samples of the branch dropped, the kept ones scaled by 1/keep.
  func drop(_ x: Tensor) throws -> Tensor {
    guard isTraining && dropPath > 0 else { return x }
    let keep = 1 - dropPath
    var mask = try Tensor.bernoulli(like: x, [x.size(0)] + [Int](repeating: 1, count: x.rank - 1), p: keep)
    if keep > 0 { mask = try mask / keep }
    return try x * mask
  }
}

/// The ViT trunk: patch generator, blocks, and the final norm only where the checkpoint keeps it.
final class RADIOViT: Module {
  @Child("patch_generator") var patchGenerator: RADIOPatchGenerator
  @Child("blocks") var blocks: [TimmBlock]
  @Child("norm") var norm: LayerNorm?
  /// timm's register tokens of the `reg4` models: in the checkpoint, unused by the CPE path.
  @Param("reg_token") var regToken: Tensor?
  var checkpointing = false
  private var scope: CheckpointScope?

  init(_ c: RADIOConfig, initialize: Initialization) throws {
    super.init()
    patchGenerator = try RADIOPatchGenerator(c, initialize: initialize)
    blocks = try (0..<c.depth).map { i in
      try TimmBlock(c, dropPath: c.depth > 1 ? c.dropPath * Double(i) / Double(c.depth - 1) : c.dropPath, initialize: initialize)
    }
    norm = c.finalNorm ? try LayerNorm(c.width, eps: 1e-6, initialize: initialize) : nil
    regToken = c.regTokens > 0 ? try initialize.constant([1, c.regTokens, c.width], 0) : nil
  }

  /// All tokens after the trunk, [B, T+R+N, C].
  func callAsFunction(_ x: Tensor) throws -> Tensor {
    let h = try CheckpointScope.runLayers(blocks, try patchGenerator(x), checkpointing: checkpointing && isTraining, scope: &scope) { try $0($1) }
    return try norm.map { try $0(h) } ?? h
  }
}

/// A summary head (RADIO's adaptor MLPs): teacher-space features from the class token.
class RADIOHead: Module {
  func callAsFunction(_ x: Tensor) throws -> Tensor { fatalError("RADIOHead is abstract") }
}

/// MLP v1: fc1, LayerNorm, ReLU, fc2.
final class RADIOMLPv1: RADIOHead {
  @Child("fc1") var fc1: Linear
  @Child("norm") var norm: LayerNorm
  @Child("fc2") var fc2: Linear

  init(input: Int, hidden: Int, output: Int, initialize: Initialization) throws {
    super.init()
    fc1 = try Linear(input, hidden, initialize: initialize)
    norm = try LayerNorm(hidden, eps: 1e-5, initialize: initialize)
    fc2 = try Linear(hidden, output, initialize: initialize)
  }
  override func callAsFunction(_ x: Tensor) throws -> Tensor { try fc2(try norm(try fc1(x)).relu()) }
}

/// `nn.Sequential(LayerNorm, GELU, Linear)` (keys `0` and `2`).
final class NormGeluLinear: Module {
  @Child("0") var norm: LayerNorm
  @Child("2") var linear: Linear
  init(_ input: Int, _ output: Int, initialize: Initialization) throws {
    super.init()
    norm = try LayerNorm(input, eps: 1e-5, initialize: initialize)
    linear = try Linear(input, output, initialize: initialize)
  }
  func callAsFunction(_ x: Tensor) throws -> Tensor { try linear(try norm(x).gelu()) }
}

/// `nn.Sequential(LayerNorm, GELU)` before fc1 (MLP v2's pre_norm).
final class NormGelu: Module {
  @Child("0") var norm: LayerNorm
  init(_ width: Int, initialize: Initialization) throws {
    super.init()
    norm = try LayerNorm(width, eps: 1e-5, initialize: initialize)
  }
  func callAsFunction(_ x: Tensor) throws -> Tensor { try norm(x).gelu() }
}

/// MLP v2: [pre_norm], fc1, residual [LayerNorm, GELU, Linear] blocks, final [LayerNorm, GELU, Linear].
final class RADIOMLPv2: RADIOHead {
  @Child("pre_norm") var preNorm: NormGelu?
  @Child("fc1") var fc1: Linear
  @Child("blocks") var blocks: [NormGeluLinear]
  @Child("final") var final: NormGeluLinear

  init(input: Int, hidden: Int, output: Int, inner: Int, preNorm: Bool, initialize: Initialization) throws {
    super.init()
    self.preNorm = preNorm ? try NormGelu(input, initialize: initialize) : nil
    fc1 = try Linear(input, hidden, initialize: initialize)
    blocks = try (0..<inner).map { _ in try NormGeluLinear(hidden, hidden, initialize: initialize) }
    final = try NormGeluLinear(hidden, output, initialize: initialize)
  }
  override func callAsFunction(_ x: Tensor) throws -> Tensor {
    var h = try fc1(try preNorm.map { try $0(x) } ?? x)
    for b in blocks { h = try h + b(h) }
    return try final(h)
  }
}

/// Weights a checkpoint carries that the embedding never computes with (the dense-feature head,
/// feature normalisers): kept so that checkpoints round-trip in TAO's layout.
final class CarriedWeights: Module {
  let bag: TensorBag
  /// Floating-point tensors become float32, as hubconf builds these modules (the file stores half).
  init(_ tensors: [String: Tensor], buffers: Bool) throws {
    bag = TensorBag(try tensors.mapValues { $0.dtype.isFloatingPoint ? try $0.to(.float32) : $0 }, buffers: buffers)
    super.init()
  }
}

/// One teacher's adaptor: its summary head, and the teacher's text tower (SigLIP's `text_model`
/// or open_clip's `oc_model` without its visual tower).
final class RADIOAdaptor: Module {
  @Child("head_mlp") var head: RADIOHead
  @Child("feat_mlp") var featureHead: CarriedWeights?
  @Child("text_model") var siglipText: SiglipTextTransformer?
  @Child("oc_model") var openCLIPText: OpenCLIPModel?
  /// The class-token slot the head reads.
  let headIndex: Int

  init(head: RADIOHead, featureHead: CarriedWeights?, siglipText: SiglipTextTransformer?, openCLIPText: OpenCLIPModel?, headIndex: Int) {
    self.headIndex = headIndex
    super.init()
    self.head = head
    self.featureHead = featureHead
    self.siglipText = siglipText
    self.openCLIPText = openCLIPText
  }

  /// Pooled, projected text features (not normalised).
  func textFeatures(_ ids: Tensor, attentionMask: Tensor?) throws -> Tensor {
    if let siglipText { return try siglipText(ids, attentionMask: attentionMask) }
    return try openCLIPText!.textFeatures(ids)
  }
}

/// RADIOModel as TAO holds it (the input conditioner made external: inputs arrive normalised).
final class RADIOModel: Module {
  @Buffer("summary_idxs") var summaryIdxs: Tensor
  @Child("model") var vit: RADIOViT
  @Child("adaptors") var adaptors: NamedModules<RADIOAdaptor>
  @Child("feature_normalizer") var featureNormalizer: CarriedWeights?
  @Child("inter_feature_normalizer") var interFeatureNormalizer: CarriedWeights?

  init(vit: RADIOViT, summaryIdxs: [Int], adaptor: (String, RADIOAdaptor), featureNormalizer: CarriedWeights?,
       interFeatureNormalizer: CarriedWeights?, device: Device) throws {
    super.init()
    self.summaryIdxs = try Tensor(summaryIdxs.map(Int64.init), shape: [summaryIdxs.count]).moved(to: device)
    self.vit = vit
    adaptors = NamedModules([adaptor])
    self.featureNormalizer = featureNormalizer
    self.interFeatureNormalizer = interFeatureNormalizer
  }

  var adaptor: RADIOAdaptor { adaptors.items[0].1 }

  /// The adaptor's summary (teacher-space image features, float32, not normalised).
  func imageFeatures(_ pixels: Tensor) throws -> Tensor {
    let y = try vit(pixels)
    return try adaptor.head(try y.select(dim: 1, index: adaptor.headIndex).to(.float32))
  }
}
