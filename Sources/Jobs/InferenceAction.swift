import Deploy
import Export
import Foundation
import Models
import Retrieval
import Spec
import Torch

/// Loads the spec's model: pretrained weights (model.pretrained_dir or the HF cache), then the
/// checkpoint when one is given.
func loadModel(_ ctx: ActionContext, checkpoint: String?) throws -> CLIPBundle {
  let m = ctx.config.model
  // Embeddings are fp32: on a GPU, true fp32 (TF32 off), as TAO's export does too.
  try setMathMode(ctx.device, precision: "fp32")
  let bundle = try ModelRegistry.load(ModelLoadOptions(type: m.type, pretrainedDir: m.pretrainedDir, adaptorName: m.adaptorName, canonicalize: m.canonicalizeText,
                                      initLogitScale: m.initLogitScale, initLogitBias: m.initLogitBias,
                                      weightsFromCheckpoint: checkpoint != nil, imageSize: m.imageSize, device: ctx.device))
  // A LoRA checkpoint needs the adapters the spec's peft section describes (export merges them).
  try injectPEFT(bundle.encoder, ctx.config.peft, quiet: true)
  if let ckpt = checkpoint {
    guard FileManager.default.fileExists(atPath: ckpt) else { throw ActionError.input("checkpoint \(ckpt) does not exist") }
    try ModelRegistry.loadCheckpoint(ckpt, into: bundle)
    print("Loaded checkpoint \(ckpt)")
  } else {
    print(bundle.source.hasPrefix("random") ? "Using \(bundle.source)" : "Using pretrained weights from \(bundle.source)")
  }
  return bundle
}

/// An exported model for `clipkit deploy`: discovery as TAO Deploy (a file, its `_vision`/`_text`
/// partners, or a directory). ONNX runs on ClipKit's executor (libtorch), `.engine` files on
/// TensorRT through its Python package.
func loadDeployed(_ path: String?, section: String, gpu: Int) throws -> CLIPBundle {
  guard let path else {
    throw ActionError.input("\(section).trt_engine is not set: give the exported .onnx or .engine (its _vision/_text pair, or their directory)")
  }
  let files = try DeployedFiles.discover(path)
  let engines = files.all.contains { $0.hasSuffix(".engine") }
  let exported = try Spec.load(file: files.config)
  guard let type = exported.value("model.type")?.stringValue else { throw ActionError.input("\(files.config) has no model.type") }
  var canonicalize = false
  if case .bool(true)? = exported.value("model.canonicalize_text") { canonicalize = true }
  // CLIPKIT_ENGINE_BACKEND=onnxruntime answers engine requests from ONNX with onnxruntime instead:
  // how the tests drive this path on machines without a GPU.
  let backend = TensorRTEngine.Backend(rawValue: ProcessInfo.processInfo.environment["CLIPKIT_ENGINE_BACKEND"] ?? "") ?? .tensorrt
  let bundle = try CLIPBundle.deployed(combined: files.combined, vision: files.vision, text: files.text, tokenizerDir: files.tokenizer,
                                       modelType: type, canonicalize: canonicalize) { file in
    file.hasSuffix(".engine") ? TensorRTGraph(try TensorRTEngine(path: file, backend: backend, gpu: gpu)) as DeployedGraph : try ONNXExecutor(path: file)
  }
  let runner = engines ? (backend == .tensorrt ? "TensorRT" : "onnxruntime (CLIPKIT_ENGINE_BACKEND)") : "ClipKit's ONNX executor"
  print("Running \(bundle.source) on \(runner) (tokenizer \(files.tokenizer))")
  return bundle
}

/// `clipkit inference`: embeds inference.datasets[].image_dir (recursively) and inference.text_file
/// into HDF5 files in TAO's layout.
/// `model` gives the encoder: the spec's checkpoint by default, an exported model for `deploy`.
func runInference(_ ctx: ActionContext,
                  model: (ActionContext) throws -> CLIPBundle = { try loadModel($0, checkpoint: $0.config.inference.checkpoint) }) throws {
  let cfg = ctx.config.inference
  let dirs = cfg.datasets.compactMap(\.imageDir)
  guard !dirs.isEmpty || cfg.textFile != nil else {
    throw ActionError.input("inference needs inference.datasets (image_dir) or inference.text_file")
  }
  var images: [String] = []
  for d in dirs { images += try walkImages(d) }
  images.sort { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
  var texts: [String] = []
  if let tf = cfg.textFile {
    guard let content = try? String(contentsOfFile: tf, encoding: .utf8) else {
      throw ActionError.input("inference.text_file \(tf) cannot be read as UTF-8 text")
    }
    texts = content.components(separatedBy: .newlines).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
  }
  let bundle = try model(ctx)
  let embedder = Embedder(bundle: bundle, batchSize: max(1, cfg.batchSize), workers: max(1, cfg.numWorkers))
  var kpi: [String: Any] = [:]
  if !dirs.isEmpty {
    let r = try embedder.images(images)
    let skipped = images.count - r.kept.count
    if skipped > 0 { warn("\(skipped) of \(images.count) images could not be read and were skipped") }
    let file = EmbeddingFile(kind: .image, embeddings: r.embeddings, dimension: r.dim, labels: r.kept.map { images[$0] })
    let out = ctx.resultsDir + "/image_embeddings.h5"
    try file.write(to: out)
    print("Wrote \(r.kept.count) image embeddings (dim \(r.dim)) to \(out)")
    kpi["num_images"] = r.kept.count
    kpi["skipped_images"] = skipped
  }
  if !texts.isEmpty {
    let r = try embedder.texts(texts)
    let out = ctx.resultsDir + "/text_embeddings.h5"
    try EmbeddingFile(kind: .text, embeddings: r.embeddings, dimension: r.dim, labels: texts).write(to: out)
    print("Wrote \(texts.count) text embeddings (dim \(r.dim)) to \(out)")
    kpi["num_texts"] = texts.count
  }
  try ctx.status.write(.success, message: "Inference finished successfully.", kpi: kpi)
}
