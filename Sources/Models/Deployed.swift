import Deploy
import Export
import Foundation
import Imaging
import Tokenizers
import Torch

// An exported model (ONNX, TAO's layout) as a CLIPEncoder, run by ClipKit's ONNX executor on
// libtorch or, for `.engine` files, by TensorRT, with TAO Deploy's preprocessing (§7.3) and the
// exported tokenizer.

/// What runs a deployed graph: ClipKit's ONNX executor or a TensorRT engine.
public protocol DeployedGraph: AnyObject {
  var path: String { get }
  var inputs: [ONNXExecutor.Signature] { get }
  var outputs: [ONNXExecutor.Signature] { get }
  func run(_ feeds: [String: Tensor], outputs: [String]?) throws -> [String: Tensor]
  /// The batch a run must have (a static-batch engine) or may have at most (the engine's
  /// optimisation profile); nil where any batch runs.
  var batchLimit: (fixed: Int?, max: Int?) { get }
}

// ClipKit's executor runs any batch, static-batch exports included.
extension ONNXExecutor: DeployedGraph {
  public var batchLimit: (fixed: Int?, max: Int?) { (nil, nil) }
}

/// A TensorRT engine (through the Python helper) seen as a DeployedGraph; float16 outputs of
/// engines built from mixed-precision graphs come back as float32.
public final class TensorRTGraph: DeployedGraph {
  let engine: TensorRTEngine
  public var path: String { engine.path }
  public let inputs: [ONNXExecutor.Signature]
  public let outputs: [ONNXExecutor.Signature]

  public var batchLimit: (fixed: Int?, max: Int?) {
    (engine.inputs.compactMap { $0.shape.first }.first { $0 > 0 }, engine.inputs.compactMap { $0.max?.first }.min())
  }

  public init(_ engine: TensorRTEngine) {
    self.engine = engine
    func sig(_ io: TensorRTEngine.IO) -> ONNXExecutor.Signature { .init(name: io.name, dims: io.shape.map { $0 < 0 ? nil : $0 }) }
    inputs = engine.inputs.map(sig)
    outputs = engine.outputs.map(sig)
  }

  /// The element types the helper exchanges, by their numpy names (DType's descriptions).
  static let exchanged: [DType] = [.float32, .float16, .int64, .int32, .bool]

  public func run(_ feeds: [String: Tensor], outputs wanted: [String]?) throws -> [String: Tensor] {
    var host: [String: HostTensor] = [:]
    for (k, t) in feeds {
      guard Self.exchanged.contains(t.dtype) else { throw ModelError.input("\(path): input \(k) has unsupported type \(t.dtype)") }
      host[k] = HostTensor(dtype: t.dtype.description, shape: t.shape, data: Data(try t.contiguous().bytes()))
    }
    let got = try engine.run(host, outputs: wanted ?? outputs.map(\.name))
    return try got.mapValues { h in
      guard let dtype = Self.exchanged.first(where: { $0.description == h.dtype }) else {
        throw ModelError.input("\(path): output of unsupported type \(h.dtype)")
      }
      let t = try h.data.withUnsafeBytes { try Tensor(bytes: $0, shape: h.shape, dtype: dtype) }
      return dtype.isFloatingPoint && dtype != .float32 ? try t.to(.float32) : t
    }
  }
}

public final class DeployedEncoder: CLIPEncoder {
  let vision: DeployedGraph?
  let text: DeployedGraph?
  let combined: Bool
  let imageShape: (c: Int, h: Int, w: Int)
  let textLength: Int
  public let logitScale: Tensor
  public let logitBias: Tensor
  public let module = Module()
  public var gradientCheckpointing = false

  /// `combined` = one graph for both towers; otherwise either or both of `vision`/`text`.
  init(vision: DeployedGraph?, text: DeployedGraph?, combined: Bool) throws {
    self.vision = vision
    self.text = text
    self.combined = combined
    func dims(_ e: DeployedGraph?, _ name: String) -> [Int?]? { e?.inputs.first { $0.name == name }?.dims }
    let img = dims(vision, "image"), ids = dims(text, "input_ids")
    if let img {
      guard img.count == 4, let c = img[1], let h = img[2], let w = img[3], c > 0, h > 0, w > 0 else {
        throw ExportError.unsupported("\(vision!.path): input 'image' must be [B, C, H, W] with fixed, positive C, H, W (it is [\(img.map { $0.map(String.init) ?? "?" }.joined(separator: ", "))])")
      }
      imageShape = (c, h, w)
    } else {
      imageShape = (3, 0, 0)
    }
    if let ids {
      guard ids.count == 2, let l = ids[1], l > 0 else {
        throw ExportError.unsupported("\(text!.path): input 'input_ids' must be [B, L] with a fixed, positive L (it is [\(ids.map { $0.map(String.init) ?? "?" }.joined(separator: ", "))])")
      }
      textLength = l
    } else {
      textLength = 0
    }
    if vision != nil && img == nil { throw ExportError.unsupported("\(vision!.path) has no 'image' input") }
    if text != nil && ids == nil { throw ExportError.unsupported("\(text!.path) has no 'input_ids' input") }
    // logit_scale/bias are constants of the graph: asking for them alone runs no tower.
    guard let probe = vision ?? text else { throw ModelError.input("a deployment needs a vision or a text model") }
    let present = Set(probe.outputs.map(\.name))
    let out = try noGrad { try probe.run([:], outputs: ["logit_scale", "logit_bias"].filter(present.contains)) }
    logitScale = try (out["logit_scale"] ?? Tensor.scalar(Float(1))).log()
    logitBias = try out["logit_bias"] ?? Tensor.scalar(Float(0))
  }

  public func encodeImages(_ pixels: Tensor) throws -> Tensor {
    guard let vision else { throw ModelError.input("this deployment has no vision model (export the _vision graph too)") }
    return try Self.embedding(vision, ["image": pixels], "image_embedding")
  }

  public func encodeImages(_ inputs: [ImageInput]) throws -> Tensor { try encodeImages(try ImageInput.pixelBatch(inputs)) }

  /// The tokenizer's mask goes in: graphs that tie it in unused (TAO's) ignore its values.
  public var usesTextAttentionMask: Bool { true }
  public func encodeTexts(_ ids: Tensor, attentionMask: Tensor?) throws -> Tensor {
    guard let g = combined ? vision : text else { throw ModelError.input("Text engine not loaded: this deployment has no text model (export the _text graph too)") }
    // TAO's graphs keep the mask as a dummy input (all ones would do); graphs of towers that use
    // the tokenizer's mask read it.
    let mask = try attentionMask ?? Tensor([Int64](repeating: 1, count: ids.count), shape: ids.shape)
    return try Self.embedding(g, ["input_ids": ids, "attention_mask": mask], "text_embedding")
  }

  /// One tower's output, re-normalised as TAO Deploy does (L2 with +1e-8). Only that tower runs.
  /// Batches larger than the engine takes run in chunks; a static-batch engine gets its exact
  /// batch, the last chunk padded by repeating its final row (the padding's outputs are dropped).
  static func embedding(_ g: DeployedGraph, _ feeds: [String: Tensor], _ name: String) throws -> Tensor {
    guard g.outputs.contains(where: { $0.name == name }) else { throw ModelError.input("\(g.path) has no \(name) output") }
    let e = try noGrad { () throws -> Tensor in
      let n = feeds.values.first?.size(0) ?? 0
      let (fixed, most) = g.batchLimit
      // A graph (or engine helper) that leaves the output out is an error, not a missing value.
      func output(_ feeds: [String: Tensor]) throws -> Tensor {
        guard let e = try g.run(feeds, outputs: [name])[name] else { throw ModelError.input("\(g.path) did not return its \(name) output") }
        return e
      }
      guard n > 0, let step = fixed ?? most else { return try output(feeds) }
      guard step > 0 else { throw ModelError.input("\(g.path) declares a batch of \(step)") }
      var parts: [Tensor] = []
      for start in stride(from: 0, to: n, by: step) {
        let count = min(step, n - start)
        let chunk = try feeds.mapValues { t -> Tensor in
          let c = try t.narrow(dim: 0, start: start, length: count)
          guard let fixed, count < fixed else { return c }
          return try Tensor.cat([c] + Array(repeating: try c.narrow(dim: 0, start: count - 1, length: 1), count: fixed - count))
        }
        let e = try output(chunk)
        parts.append(e.size(0) == count ? e : try e.narrow(dim: 0, start: 0, length: count))
      }
      return parts.count == 1 ? parts[0] : try Tensor.cat(parts)
    }
    return try e / (try (e * e).sum(dims: [1], keepDim: true).sqrt() + 1e-8)
  }

  public func tower(of parameter: String) -> Tower { .logit }  // an exported graph has no parameters

  public func onnxImageEmbedding(_ g: ONNXGraph, pixels: String, height: Int, width: Int) throws -> String {
    throw ExportError.unsupported("an exported model cannot be exported again; export the checkpoint")
  }
  public func onnxTextEmbedding(_ g: ONNXGraph, ids: String, mask: String?, length: Int) throws -> String {
    throw ExportError.unsupported("an exported model cannot be exported again; export the checkpoint")
  }
}

extension CLIPBundle {
  /// A deployment: the exported graph(s), the `_tokenizer` folder and the `model.type` /
  /// `canonicalize_text` of its `_config.yaml`. `open` runs a file (ONNX executor or TensorRT).
  public static func deployed(combined: String?, vision: String?, text: String?, tokenizerDir: String, modelType: String,
                              canonicalize: Bool,
                              open: (String) throws -> DeployedGraph = { try ONNXExecutor(path: $0) }) throws -> CLIPBundle {
    let v = try (combined ?? vision).map(open)
    let t = try combined == nil ? text.map(open) : v
    let enc = try DeployedEncoder(vision: v, text: t, combined: combined != nil)
    let (c, h, w) = enc.imageShape
    guard c == 3 else { throw ModelError.input("\(v?.path ?? "model"): image input has \(c) channels, expected 3") }
    // The family of the exported model.type decides the eval transform (SigLIP squashes; RADIO
    // and OpenCLIP crop); a type no family owns gets open_clip's.
    let family = ModelRegistry.family(type: modelType, pretrainedDir: nil) ?? OpenCLIPFamily.self
    let transform = family.deployedTransform(height: h, width: w)
    let l = enc.textLength
    let tokenize: ([String]) throws -> BatchEncoding
    let bpe = tokenizerDir + "/bpe_simple_vocab_16e6.txt.gz"
    if !FileManager.default.fileExists(atPath: tokenizerDir + "/tokenizer.json") && FileManager.default.fileExists(atPath: bpe) {
      // open_clip's SimpleTokenizer vocabulary (an open_clip text tower's export).
      let clip = try CLIPBPETokenizer(bpePath: bpe, contextLength: l)
      tokenize = { BatchEncoding(zeroPadded: clip($0)) }
    } else {
      let tokenizer = try Tokenizer(directory: tokenizerDir)
      tokenize = { try tokenizer($0, maxLength: l, padding: .maxLength, truncation: true) }
    }
    return CLIPBundle(family: "deployed", encoder: enc, transform: transform, preprocess: .fixed(transform), contextLength: l,
                      canonicalize: canonicalize, source: combined ?? [vision, text].compactMap { $0 }.joined(separator: " + "), tokenize: tokenize)
  }
}
