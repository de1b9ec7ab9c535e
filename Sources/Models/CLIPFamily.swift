import Export
import Foundation
import Imaging
import Tokenizers
import Torch

/// One preprocessed image: normalised CHW pixels, or NaFlex patches with their mask and grid.
public enum ImageInput: Sendable {
  case pixels([Float], height: Int, width: Int)
  case patches([Float], mask: [Int64], grid: (Int, Int))
}

extension ImageInput {
  /// Fixed-size pixel inputs as one [B, 3, H, W] tensor; patches or mixed sizes are refused. For a
  /// GPU the batch is assembled directly in page-locked memory, ready for a non-blocking copy.
  public static func pixelBatch(_ inputs: [ImageInput], for device: Device = .cpu) throws -> Tensor {
    guard case .pixels(_, let h, let w)? = inputs.first else { throw ModelError.input("this model takes fixed-size images") }
    let images = try inputs.map { i -> [Float] in
      guard case .pixels(let p, h, w) = i else { throw ModelError.input("mixed image inputs in one batch") }
      return p
    }
    guard device.isCUDA, Tensor.pinnedUploads else { return try Tensor(images.flatMap { $0 }, shape: [inputs.count, 3, h, w]) }
    let batch = try Tensor.emptyPinned([inputs.count, 3, h, w])
    for (i, p) in images.enumerated() { try batch.write(p, at: i * 3 * h * w) }
    return batch
  }
}

/// A model's image preprocessing, run on worker threads.
public enum ImagePreprocessing: Sendable {
  case fixed(ImageTransform)
  case naflex(NaFlexTransform)

  public func callAsFunction(_ img: RGBImage) -> ImageInput {
    switch self {
    case .fixed(let t):
      let (h, w) = t.outputSize
      return .pixels(t(img), height: h, width: w)
    case .naflex(let t):
      let r = t(img)
      return .patches(r.patches, mask: r.mask, grid: r.shape)
    }
  }
}

/// What every CLIP-family model offers the actions: normalised embeddings for pixels and token
/// ids, its learnable logit scale (log space) and bias, and its module tree.
public protocol CLIPEncoder: AnyObject {
  var module: Module { get }
  /// L2-normalised image embeddings [B, E] from normalised pixels [B, 3, H, W].
  func encodeImages(_ pixels: Tensor) throws -> Tensor
  /// L2-normalised image embeddings [B, E] from preprocessed images (any input kind).
  func encodeImages(_ inputs: [ImageInput]) throws -> Tensor
  /// L2-normalised text embeddings [B, E] from ids [B, L] (and a mask where the family uses one).
  func encodeTexts(_ ids: Tensor, attentionMask: Tensor?) throws -> Tensor
  var logitScale: Tensor { get }
  var logitBias: Tensor { get }
  /// The towers as ONNX subgraphs: normalised embeddings from `pixels` [B, 3, H, W] / `ids` [B, L].
  func onnxImageEmbedding(_ g: ONNXGraph, pixels: String, height: Int, width: Int) throws -> String
  func onnxTextEmbedding(_ g: ONNXGraph, ids: String, length: Int) throws -> String
  /// Recompute encoder activations in the backward pass (train.grad_checkpointing).
  var gradientCheckpointing: Bool { get set }
  /// Which tower a parameter (by module key) belongs to: TAO's parameter groups and freezing.
  func tower(of parameter: String) -> Tower
  /// A checkpoint's tensors keyed as this adapter's modules (after TAO's `model.` prefix is gone):
  /// families map the layouts their own libraries write.
  func adapterKeys(_ tensors: [String: Tensor]) throws -> [String: Tensor]
}

extension CLIPEncoder {
  public func adapterKeys(_ tensors: [String: Tensor]) throws -> [String: Tensor] { tensors }
}

public enum Tower: String, Sendable { case vision, text, logit }

/// A loaded model with the preprocessing that belongs to it.
public final class CLIPBundle {
  public let family: String
  public let encoder: CLIPEncoder
  /// The eval transform (squash/crop to the model's fixed input); NaFlex models use `preprocess`.
  public let transform: ImageTransform
  public let preprocess: ImagePreprocessing
  public let contextLength: Int
  public let canonicalize: Bool
  let tokenizeBatch: ([String]) throws -> BatchEncoding
  /// Where the weights came from, for messages.
  public let source: String
  /// The Hugging Face tokenizer files (export copies them beside the graph).
  public let tokenizerDirectory: String

  init(family: String, encoder: CLIPEncoder, transform: ImageTransform, preprocess: ImagePreprocessing, contextLength: Int,
       canonicalize: Bool, source: String, tokenizerDirectory: String? = nil, tokenize: @escaping ([String]) throws -> BatchEncoding) {
    self.tokenizerDirectory = tokenizerDirectory ?? source
    self.family = family
    self.encoder = encoder
    self.transform = transform
    self.preprocess = preprocess
    self.contextLength = contextLength
    self.canonicalize = canonicalize
    self.source = source
    self.tokenizeBatch = tokenize
  }

  /// Token ids and mask, padded to the model's context (canonicalised first when configured).
  public func tokenize(_ texts: [String]) throws -> BatchEncoding {
    try tokenizeBatch(canonicalize ? texts.map(TextCleaning.canonicalize) : texts)
  }
}

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

public enum ModelRegistryError: Error, LocalizedError {
  case unknownType(String, known: [String])
  case notImplemented(type: String, reason: String)

  public var errorDescription: String? {
    switch self {
    case .unknownType(let t, let known):
      return "model.type '\(t)' is not a known CLIP model; known types: \(known.joined(separator: ", ")) (or set model.pretrained_dir to a SigLIP or open_clip model directory)"
    case .notImplemented(let t, let r): return "model.type '\(t)': \(r)"
    }
  }
}

/// model.type → family and pretrained source.
public enum ModelRegistry {
  public static let siglip2Types = ["siglip2-so400m-patch14-224", "siglip2-so400m-patch14-384", "siglip2-so400m-patch16-256",
                                    "siglip2-so400m-patch16-384", "siglip2-so400m-patch16-512", "siglip2-so400m-patch16-naflex"]
  public static let radioTypes = ["c-radio_v3-b", "c-radio_v3-l", "c-radio_v3-h", "c-radio_v3-g"]
  public static let openCLIPTypes = ["ViT-L-14-SigLIP-CLIPA-224", "ViT-L-14-SigLIP-CLIPA-336", "ViT-H-14-SigLIP-CLIPA-224",
                                     "ViT-H-14-SigLIP-CLIPA-336", "ViT-H-14-SigLIP-CLIPA-574"]

  /// Loads the pretrained model for `type` (or the architecture in `pretrainedDir`), wrapped in
  /// the TAO adapter. Logit scale/bias: `initLogitScale`/`initLogitBias` when given, else the
  /// pretrained model's own values.
  /// `imageSize`: TAO's `model.image_size`, the transform size of its OpenCLIP (and RADIO) types.
  public static func load(type: String, pretrainedDir: String?, canonicalize: Bool,
                          initLogitScale: Double? = nil, initLogitBias: Double? = nil,
                          randomInit: Generator? = nil, weightsFromCheckpoint: Bool = false, imageSize: Int? = nil,
                          device: Device = .cpu) throws -> CLIPBundle {
    // Before any directory is looked at: a RADIO type names an architecture a SigLIP or OpenCLIP
    // directory does not have.
    if radioTypes.contains(type) {
      throw ModelRegistryError.notImplemented(type: type, reason: "the RADIO-CLIP family is not supported yet (model.pretrained_dir cannot stand in for it)")
    }
    if openCLIPTypes.contains(type) || pretrainedDir.map(OpenCLIPFamily.isModelDirectory) == true {
      return try OpenCLIPFamily.load(type: type, pretrainedDir: pretrainedDir, canonicalize: canonicalize, initLogitScale: initLogitScale,
                                     initLogitBias: initLogitBias, randomInit: randomInit, weightsFromCheckpoint: weightsFromCheckpoint,
                                     imageSize: openCLIPTypes.contains(type) ? imageSize : nil, device: device)
    }
    if pretrainedDir == nil && !siglip2Types.contains(type) {
      throw ModelRegistryError.unknownType(type, known: siglip2Types + radioTypes + openCLIPTypes)
    }
    let dir = try PretrainedLocator.directory(repo: "google/\(type)", pretrainedDir: pretrainedDir)
    // A checkpoint that will replace every weight needs only the architecture.
    let model = weightsFromCheckpoint ? try SiglipModel.fromConfig(dir, initialize: Initialization.empty.on(device))
      : try randomInit.map { try SiglipModel.fromConfig(dir, initialize: Initialization.random($0).on(device)) } ?? SiglipModel.fromPretrained(dir, device: device)
    if weightsFromCheckpoint { model.eval() }
    let scale = weightsFromCheckpoint ? 0 : try initLogitScale ?? model.logitScale.reshape([]).item()
    let bias = weightsFromCheckpoint ? 0 : try initLogitBias ?? model.logitBias.reshape([]).item()
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
    return CLIPBundle(family: model.isNaFlex ? "siglip2-naflex" : "siglip", encoder: adapter, transform: processor.transform,
                      preprocess: preprocess, contextLength: ctx, canonicalize: canonicalize, source: dir) { texts in
      try tokenizer(texts, maxLength: ctx, padding: .maxLength, truncation: true)
    }
  }

  /// Loads a TAO/ClipKit checkpoint (`.pth` with `state_dict` keyed `model.…`, or `.safetensors`)
  /// into the adapter, strictly.
  public static func loadCheckpoint(_ path: String, into bundle: CLIPBundle) throws {
    var tensors: [String: Tensor]
    if path.hasSuffix(".safetensors") {
      tensors = try Safetensors.read(path).dictionary
    } else {
      tensors = try PyTorchCheckpoint.read(path).tensors
    }
    // Checkpoint keys are the Lightning module's: "model." + adapter keys.
    if tensors.keys.allSatisfy({ $0.hasPrefix("model.") }) {
      tensors = Dictionary(uniqueKeysWithValues: tensors.map { (String($0.key.dropFirst(6)), $0.value) })
    }
    tensors = try bundle.encoder.adapterKeys(tensors)
    // The HF model's own logit parameters ride along inside the backbone; keep them if present.
    try bundle.encoder.module.load(stateDict: tensors.filter { !$0.key.hasSuffix("position_ids") }, source: path)
  }
}
