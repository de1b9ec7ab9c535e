import Export
import Foundation
import Paths
import Models
import Spec
import Torch

/// `clipkit export`: TAO's ONNX export. One combined graph (image, input_ids, attention_mask →
/// image_embedding, text_embedding, logit_scale, logit_bias) or separate `_vision`/`_text` graphs;
/// embeddings L2-normalised in the graph, logit_scale already exp()'d, only the batch axis
/// dynamic. Sidecars: `<base>_config.yaml` (the resolved spec with the learned raw logit values)
/// and `<base>_tokenizer/`.
func runExport(_ ctx: ActionContext) throws {
  let cfg = ctx.config.export
  guard let onnxFile = cfg.onnxFile ?? cfg.checkpoint.map({ (($0 as NSString).deletingPathExtension) + ".onnx" }) else {
    throw ActionError.input("export needs export.onnx_file or export.checkpoint (the ONNX path is derived from it)")
  }
  if onnxFile.hasSuffix(".etlt") {
    throw ActionError.input("export.onnx_file \(onnxFile): encrypted .etlt export is not supported; write a plain .onnx")
  }
  guard (14...21).contains(cfg.opsetVersion) else {
    throw ActionError.input("export.opset_version \(cfg.opsetVersion) is not supported: ClipKit writes opsets 14–21 (LayerNormalization from 17, spelled out in basic operators below it)")
  }
  guard cfg.batchSize == -1 || cfg.batchSize > 0 else {
    throw ActionError.input("export.batch_size \(cfg.batchSize) must be -1 (dynamic) or positive")
  }
  guard cfg.inputChannel == 3 else { throw ActionError.input("export.input_channel \(cfg.inputChannel): CLIP models take 3 channels") }
  let base = (onnxFile as NSString).deletingPathExtension
  let ext = (onnxFile as NSString).pathExtension.isEmpty ? "" : "." + (onnxFile as NSString).pathExtension
  let separate: Bool
  switch cfg.encoderType {
  case "combined": separate = false
  case "separate": separate = true
  default: throw ActionError.input("export.encoder_type '\(cfg.encoderType)' must be 'combined' or 'separate'")
  }
  let targets = separate ? [base + "_vision" + ext, base + "_text" + ext] : [onnxFile]
  // Nothing is overwritten: not the graphs, nor the sidecars a previous export left.
  let weights = targets.map { ($0 as NSString).deletingPathExtension + "_weights.bin" }  // past 1.9 GiB
  for t in targets + weights + [base + "_config.yaml", base + "_tokenizer"] + (cfg.adapterDir.map { [$0 + "/adapter_model.safetensors"] } ?? [])
  where FileManager.default.fileExists(atPath: t) {
    throw ExportError.exists(t)
  }
  let dir = onnxFile.parentPath
  if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }

  let bundle = try loadModel(ctx, checkpoint: cfg.checkpoint)
  let enc = bundle.encoder
  if let refusal = bundle.exportRefusal { throw ExportError.unsupported(refusal) }
  let batch: ONNXDim = cfg.batchSize == -1 ? .symbolic("batch_size") : .fixed(cfg.batchSize)
  let (h, w, l) = (cfg.inputHeight, cfg.inputWidth, bundle.contextLength)
  let rawScale = try enc.logitScale.reshape([]).item(), rawBias = try enc.logitBias.reshape([]).item()

  // The embedding width goes into the output shapes (deployments read it from there): one eager
  // pass per tower at the export resolution.
  let (imageDim, textDim) = try noGrad {
    (try enc.encodeImages(try Tensor.zeros([1, 3, h, w])).size(1),
     try enc.encodeTexts(try Tensor([Int64](repeating: 0, count: l), shape: [1, l]), attentionMask: nil).size(1))
  }
  func logits(_ g: ONNXGraph) throws {
    g.output(try g.weight("logit_scale.exp", try Tensor.scalar(Float(exp(rawScale)))), as: "logit_scale", .float, [])
    g.output(try g.weight("logit_bias.value", try Tensor.scalar(Float(rawBias))), as: "logit_bias", .float, [])
  }
  func vision(_ g: ONNXGraph) throws {
    let pixels = g.input("image", .float, [batch, .fixed(3), .fixed(h), .fixed(w)])
    g.output(try enc.onnxImageEmbedding(g, pixels: pixels, height: h, width: w), as: "image_embedding", .float, [batch, .fixed(imageDim)])
  }
  func text(_ g: ONNXGraph) throws {
    let ids = g.input("input_ids", .int64, [batch, .fixed(l)])
    let mask = g.input("attention_mask", .int64, [batch, .fixed(l)])
    // TAO keeps the deprecated mask in the graph as ids + 0·mask; its values never matter.
    let kept = g.op("Add", [ids, g.op("Mul", [mask, g.int64s([0], shape: [])])])
    g.output(try enc.onnxTextEmbedding(g, ids: kept, mask: mask, length: l), as: "text_embedding", .float, [batch, .fixed(textDim)])
  }

  var graphs: [(String, ONNXGraph)] = []
  try noGrad {
    if separate {
      let gv = ONNXGraph(name: "clip_vision", opset: cfg.opsetVersion), gt = ONNXGraph(name: "clip_text", opset: cfg.opsetVersion)
      try vision(gv); try logits(gv)
      try text(gt); try logits(gt)
      graphs = [(targets[0], gv), (targets[1], gt)]
    } else {
      let g = ONNXGraph(name: "clip", opset: cfg.opsetVersion)
      try vision(g); try text(g); try logits(g)
      graphs = [(onnxFile, g)]
    }
  }
  for (path, g) in graphs {
    if cfg.verbose {
      let nodes = g.nodeList
      print("Graph \(g.name) for \(path): \(nodes.count) nodes")
      for (i, n) in nodes.enumerated() { print(String(format: "  %5d  %-20@ %@", i, n.op as NSString, n.name as NSString)) }
    }
    try g.write(to: path, producerVersion: ClipKitVersion.string)
    print("Wrote \(path) (\(String(format: "%.1f", Double(g.weightBytes) / 1_048_576)) MiB of weights, opset \(cfg.opsetVersion), batch \(cfg.batchSize == -1 ? "dynamic" : String(cfg.batchSize)), image \(h)x\(w), text \(l) tokens, embedding \(imageDim))")
  }

  // Sidecars, named from the base even in separate mode (deploy looks for them there).
  let learned = try ctx.spec.overriding("model.init_logit_scale=\(rawScale)").overriding("model.init_logit_bias=\(rawBias)")
  try AtomicFile.write(base + "_config.yaml", data: Data(learned.yaml().utf8))
  let tokDir = base + "_tokenizer"
  try writeTokenizerSidecar(from: bundle.tokenizerDirectory, to: tokDir, maxLength: l)
  print("Wrote \(base)_config.yaml and \(tokDir)/")
  if let adapterDir = cfg.adapterDir { try writePeftAdapter(bundle, ctx.config.peft, to: adapterDir) }
  try ctx.status.write(.success, message: "Export finished successfully.",
                       kpi: ["onnx_files": graphs.map(\.0), "logit_scale": exp(rawScale), "logit_bias": rawBias])
}

/// The model directory's Hugging Face tokenizer files, with `model_max_length` set to the graph's
/// text length (what `save_pretrained` of TAO's tokenizer writes).
func writeTokenizerSidecar(from modelDir: String, to dir: String, maxLength: Int) throws {
  let fm = FileManager.default
  try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
  // (bpe_simple_vocab_16e6.txt.gz: open_clip's own CLIP vocabulary, for towers that use it.)
  let names = ["tokenizer.json", "special_tokens_map.json", "spiece.model", "tokenizer.model", "vocab.json", "merges.txt",
               "vocab.txt", "added_tokens.json", "bpe_simple_vocab_16e6.txt.gz"]
  var copied = 0
  for n in names where fm.fileExists(atPath: modelDir + "/" + n) {
    try fm.copyItem(atPath: modelDir + "/" + n, toPath: dir + "/" + n)
    copied += 1
  }
  guard copied > 0 else { throw ActionError.input("\(modelDir) has no tokenizer files to put beside the export") }
  var config: [String: Any] = [:]
  if let data = fm.contents(atPath: modelDir + "/tokenizer_config.json") {
    guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
      throw ActionError.input("\(modelDir)/tokenizer_config.json is not a JSON object")
    }
    config = obj
  }
  config["model_max_length"] = maxLength
  let out = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
  try AtomicFile.write(dir + "/tokenizer_config.json", data: out)
}
