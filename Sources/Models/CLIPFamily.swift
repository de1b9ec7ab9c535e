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
  /// `mask` [B, L] (1 = token) is given to towers that use the tokenizer's mask
  /// (`usesTextAttentionMask`); the others ignore it, as TAO's graph does.
  func onnxTextEmbedding(_ g: ONNXGraph, ids: String, mask: String?, length: Int) throws -> String
  /// Recompute encoder activations in the backward pass (train.grad_checkpointing).
  var gradientCheckpointing: Bool { get set }
  /// Which tower a parameter (by module key) belongs to: TAO's parameter groups and freezing.
  func tower(of parameter: String) -> Tower
  /// A checkpoint's tensors keyed as this adapter's modules (after TAO's `model.` prefix is gone):
  /// families map the layouts their own libraries write.
  func adapterKeys(_ tensors: [String: Tensor]) throws -> [String: Tensor]
  /// Whether the text tower takes the tokenizer's attention mask (else callers may pass nil).
  var usesTextAttentionMask: Bool { get }
  /// The tensors a checkpoint holds, under TAO's keys (the module's state dict, plus any
  /// aliases TAO's layout repeats).
  func checkpointStateDict() -> [(String, Tensor)]
  /// Training mode for the trainable towers; a frozen tower stays in eval mode where that changes
  /// its forward (TAO calls eval() on it; Lightning keeps it so).
  func train(frozen: Set<Tower>)
  /// A tower's transformer blocks, in order (where LoRA goes: TAO's get_encoder_blocks).
  func encoderBlocks(_ tower: Tower) -> [Module]
  /// The Hugging Face transformers module path of a module key (peft's adapter keys), or nil
  /// for families that are not transformers models.
  func transformersPath(_ key: String) -> String?
}

extension CLIPEncoder {
  public func adapterKeys(_ tensors: [String: Tensor]) throws -> [String: Tensor] { tensors }
  public var usesTextAttentionMask: Bool { false }
  public func checkpointStateDict() -> [(String, Tensor)] { module.stateDict() }
  public func train(frozen: Set<Tower>) { module.train() }
  public func encoderBlocks(_ tower: Tower) -> [Module] { [] }
  public func transformersPath(_ key: String) -> String? { nil }
}

public enum Tower: String, Sendable { case vision, text, logit }

/// A loaded model with the preprocessing that belongs to it.
public final class CLIPBundle {
  /// The family's name, for messages.
  public let family: String
  public let encoder: CLIPEncoder
  /// TAO trains SigLIP on its processor's preprocessing and the other families on open_clip's
  /// train transform (dataset.augmentation).
  public var trainsWithAugmentation = true
  /// Why this model cannot be exported to ONNX, when it cannot.
  public var exportRefusal: String? = nil
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

/// What loading a model needs: the spec's model section and the run's choices.
public struct ModelLoadOptions {
  public var type: String
  /// A local model directory (model.pretrained_dir); nil = the family's caches.
  public var pretrainedDir: String?
  /// model.adaptor_name (RADIO-CLIP's text adaptor).
  public var adaptorName: String?
  public var canonicalize: Bool
  /// The adapter's logit scale (log space) and bias; the pretrained model's own when nil.
  public var initLogitScale: Double?
  public var initLogitBias: Double?
  /// Random weights from this generator instead of pretrained ones.
  public var randomInit: Generator?
  /// A checkpoint will replace every weight: build the architecture only.
  public var weightsFromCheckpoint: Bool
  /// TAO's model.image_size: the transform size of its OpenCLIP and RADIO types.
  public var imageSize: Int?
  public var device: Device

  public init(type: String, pretrainedDir: String? = nil, adaptorName: String? = nil, canonicalize: Bool = false,
              initLogitScale: Double? = nil, initLogitBias: Double? = nil, randomInit: Generator? = nil,
              weightsFromCheckpoint: Bool = false, imageSize: Int? = nil, device: Device = .cpu) {
    self.type = type
    self.pretrainedDir = pretrainedDir
    self.adaptorName = adaptorName
    self.canonicalize = canonicalize
    self.initLogitScale = initLogitScale
    self.initLogitBias = initLogitBias
    self.randomInit = randomInit
    self.weightsFromCheckpoint = weightsFromCheckpoint
    self.imageSize = imageSize
    self.device = device
  }
}

/// A model family: one folder under Sources/Models and one entry in `ModelRegistry.families`.
public protocol CLIPFamily {
  /// The `model.type` values the family owns (listed in errors).
  static var types: [String] { get }
  /// Whether this family loads `type` / `pretrainedDir` (its own types, or a directory in its format).
  static func claims(type: String, pretrainedDir: String?) -> Bool
  static func load(_ options: ModelLoadOptions) throws -> CLIPBundle
  /// The eval transform of an exported graph of `type` at height × width (a deployment has no
  /// model directory to read it from).
  static func deployedTransform(height: Int, width: Int) -> ImageTransform
  /// Whether model.adaptor_name means something to the family.
  static var readsAdaptorName: Bool { get }
}

extension CLIPFamily {
  public static var readsAdaptorName: Bool { false }
  /// open_clip's eval transform as TAO runs it for RADIO and OpenCLIP: shortest side (Pillow,
  /// bicubic) + centre crop, OpenAI CLIP statistics.
  public static func deployedTransform(height: Int, width: Int) -> ImageTransform {
    ImageTransform(resize: .shortestPillow(size: height), filter: .bicubic, mean: [0.48145466, 0.4578275, 0.40821073],
                   std: [0.26862954, 0.26130258, 0.27577711])
  }
}

/// model.type (or the directory) → family.
public enum ModelRegistry {
  /// In claiming order: a RADIO type never falls through to a directory of another format.
  public static let families: [any CLIPFamily.Type] = [RADIOFamily.self, OpenCLIPFamily.self, SiglipFamily.self]

  public static func family(type: String, pretrainedDir: String?) -> (any CLIPFamily.Type)? {
    families.first { $0.claims(type: type, pretrainedDir: pretrainedDir) }
  }

  /// Loads the pretrained model (or the architecture) wrapped in TAO's adapter.
  public static func load(_ o: ModelLoadOptions) throws -> CLIPBundle {
    guard let f = family(type: o.type, pretrainedDir: o.pretrainedDir) else {
      throw ModelRegistryError.unknownType(o.type, known: families.flatMap { $0.types })
    }
    return try f.load(o)
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
    // TAO's drift-regularisation teacher rides along in its checkpoints; it is not the model.
    tensors = tensors.filter { !$0.key.hasPrefix("preservation_loss.") }
    // Checkpoint keys are the Lightning module's: "model." + adapter keys.
    if tensors.keys.allSatisfy({ $0.hasPrefix("model.") }) {
      tensors = Dictionary(uniqueKeysWithValues: tensors.map { (String($0.key.dropFirst(6)), $0.value) })
    }
    tensors = try bundle.encoder.adapterKeys(tensors)
    // LoRA checkpoints from before `scaling` was persisted: every adapter takes the configured
    // alpha/rank, as TAO does (with its warning).
    let scalings = bundle.encoder.module.namedSlots().filter { $0.0.hasSuffix(".scaling") && $0.1.tensor != nil }
    if !scalings.isEmpty && scalings.allSatisfy({ tensors[$0.0] == nil }) {
      for (k, slot) in scalings { tensors[k] = slot.tensor! }
      FileHandle.standardError.write(Data(("warning: loading a legacy LoRA checkpoint without persisted scaling for \(scalings.count) adapter(s); "
        + "using scaling derived from the current PEFT rank and alpha. These values must match the original training config.\n").utf8))
    }
    // Non-persistent buffers some writers keep (HF position_ids) are not weights.
    try bundle.encoder.module.load(stateDict: tensors.filter { !$0.key.hasSuffix("position_ids") }, source: path)
  }
}
