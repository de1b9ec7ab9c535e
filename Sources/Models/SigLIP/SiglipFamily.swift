import Export
import Foundation
import Imaging
import Tokenizers
import Torch

// SigLIP and SigLIP 2 (fixed-resolution and NaFlex) as CLIPBundles, from Hugging Face model
// directories (model.pretrained_dir, or the hub cache for TAO's siglip2-* types).

/// The TAO adapter around a backbone: its own `logit_scale`/`logit_bias` parameters, so the state
/// dict keys are TAO's (`logit_scale`, `backbone.inner.vision_model...`, prefixed `model.` in
/// checkpoints).
public final class SiglipAdapter: Module, CLIPEncoder {
  @Child("backbone") var backbone: SiglipBackbone
  @Param("logit_scale") public var logitScale: Tensor
  @Param("logit_bias") public var logitBias: Tensor
  public var module: Module { self }
  public var inner: SiglipModel { backbone.inner }
  public var gradientCheckpointing: Bool {
    get { inner.gradientCheckpointing }
    set { inner.gradientCheckpointing = newValue }
  }

  public init(_ model: SiglipModel, logitScale: Double, logitBias: Double) throws {
    super.init()
    backbone = SiglipBackbone(model)
    self.logitScale = try Tensor.scalar(Float(logitScale)).moved(to: model.device)
    self.logitBias = try Tensor.scalar(Float(logitBias)).moved(to: model.device)
  }

  /// Inputs arrive as host tensors and go to the model's device here.
  public func encodeImages(_ pixels: Tensor) throws -> Tensor { try inner.imageFeatures(pixels.upload(to: logitScale.device)).l2Normalized() }
  public func encodeImages(_ inputs: [ImageInput]) throws -> Tensor {
    guard let first = inputs.first else { throw ModelError.input("no images to encode") }
    switch first {
    case .pixels: return try encodeImages(try ImageInput.pixelBatch(inputs, for: logitScale.device))
    case .patches(let p0, let m0, _):
      var flat: [Float] = [], masks: [Int64] = [], grids: [(Int, Int)] = []
      for i in inputs {
        guard case .patches(let p, let m, let g) = i, p.count == p0.count, m.count == m0.count else {
          throw ModelError.input("mixed image inputs in one batch")
        }
        flat += p; masks += m; grids.append(g)
      }
      let n = m0.count
      let patches = try Tensor(flat, shape: [inputs.count, n, p0.count / n]).upload(to: logitScale.device)
      let mask = try Tensor(masks, shape: [inputs.count, n]).upload(to: logitScale.device)
      return try inner.imageFeatures(patches: patches, mask: mask, shapes: grids).l2Normalized()
    }
  }
  public func encodeTexts(_ ids: Tensor, attentionMask: Tensor?) throws -> Tensor {
    let device = logitScale.device
    return try inner.textFeatures(ids.upload(to: device), attentionMask: attentionMask?.upload(to: device)).l2Normalized()
  }
  /// The adapter wraps transformers' SiglipModel under `backbone.inner.`.
  public func transformersPath(_ key: String) -> String? {
    key.hasPrefix("backbone.inner.") ? String(key.dropFirst("backbone.inner.".count)) : nil
  }
  public func encoderBlocks(_ tower: Tower) -> [Module] {
    switch tower {
    case .vision: return inner.vision.encoder.layers
    case .text: return inner.text.encoder.layers
    case .logit: return []
    }
  }
  public func tower(of parameter: String) -> Tower {
    parameter.hasPrefix("backbone.inner.vision_model.") ? .vision : parameter.hasPrefix("backbone.inner.text_model.") ? .text : .logit
  }
}

public final class SiglipBackbone: Module {
  @Child("inner") var inner: SiglipModel
  init(_ m: SiglipModel) {
    super.init()
    inner = m
  }
}

public enum SiglipFamily: CLIPFamily {
  public static let types = ["siglip2-so400m-patch14-224", "siglip2-so400m-patch14-384", "siglip2-so400m-patch16-256",
                             "siglip2-so400m-patch16-384", "siglip2-so400m-patch16-512", "siglip2-so400m-patch16-naflex"]

  static let naflexExportRefusal =
    "SigLIP 2 NaFlex models take a variable number of patches and cannot be exported to ONNX (as in TAO); export a fixed-resolution SigLIP 2"

  /// TAO's SigLIP 2 types and other google/siglip* names (looked up in the hub cache), or any
  /// Hugging Face model directory (config.json is checked on load).
  public static func claims(type: String, pretrainedDir: String?) -> Bool {
    types.contains(type) || type.hasPrefix("siglip") || pretrainedDir != nil
  }

  /// §7.3: SigLIP squashes bilinearly with mean/std 0.5.
  public static func deployedTransform(height: Int, width: Int) -> ImageTransform {
    ImageTransform(resize: .squash(width: width, height: height), filter: .bilinear, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
  }

  /// The model of `type` from the hub cache (google/<type>) or the architecture in `pretrainedDir`,
  /// in TAO's adapter. Logit scale/bias: the options' when given, else the model's own.
  public static func load(_ o: ModelLoadOptions) throws -> CLIPBundle {
    let dir = try PretrainedLocator.directory(repo: "google/\(o.type)", pretrainedDir: o.pretrainedDir)
    let device = o.device
    // A checkpoint that will replace every weight needs only the architecture.
    let model = o.weightsFromCheckpoint ? try SiglipModel.fromConfig(dir, initialize: Initialization.empty.on(device))
      : try o.randomInit.map { try SiglipModel.fromConfig(dir, initialize: Initialization.random($0).on(device)) } ?? SiglipModel.fromPretrained(dir, device: device)
    if o.weightsFromCheckpoint { model.eval() }
    let scale = o.weightsFromCheckpoint ? 0 : try o.initLogitScale ?? model.logitScale.reshape([]).item()
    let bias = o.weightsFromCheckpoint ? 0 : try o.initLogitBias ?? model.logitBias.reshape([]).item()
    let adapter = try SiglipAdapter(model, logitScale: scale, logitBias: bias)
    adapter.eval()
    let tokenizer = try Tokenizer(directory: dir)
    let ctx = model.config.textConfig.maxPositionEmbeddings
    let processor = try ImageProcessorConfig.load(dir, defaultSize: model.config.visionConfig.imageSize)
    let preprocess: ImagePreprocessing
    if model.isNaFlex {
      let naflex = try NaFlexProcessorConfig.load(dir).transform
      // The patch embedding is a Linear over 3·P² values: both files must agree on P.
      guard naflex.patchSize == model.config.visionConfig.patchSize else {
        throw ModelError.config(file: dir + "/preprocessor_config.json",
                                reason: "patch_size \(naflex.patchSize) differs from config.json's vision_config.patch_size \(model.config.visionConfig.patchSize)")
      }
      preprocess = .naflex(naflex)
    } else {
      preprocess = .fixed(processor.transform)
    }
    let bundle = CLIPBundle(family: model.isNaFlex ? "SigLIP 2 NaFlex" : "SigLIP", encoder: adapter, transform: processor.transform,
                            preprocess: preprocess, contextLength: ctx, canonicalize: o.canonicalize, source: dir) { texts in
      try tokenizer(texts, maxLength: ctx, padding: .maxLength, truncation: true)
    }
    bundle.trainsWithAugmentation = false
    if model.isNaFlex { bundle.exportRefusal = naflexExportRefusal }
    return bundle
  }
}
