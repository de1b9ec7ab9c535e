import Deploy
import Export
import Foundation
import Paths
import Spec

/// `clipkit gen_trt_engine`: builds a TensorRT engine from an ONNX model (trtexec, else TensorRT's
/// Python package), one optimisation profile over every input, then copies the export sidecars
/// beside the engine. TensorRT 11 has no precision flags: for fp16 or `layers_precision` the
/// graph is first rewritten with those types (`<engine stem>_typed.onnx` in the results folder).
func runGenTrtEngine(_ ctx: ActionContext) throws {
  let cfg = ctx.config.genTrtEngine
  guard let onnx = cfg.onnxFile, FileManager.default.fileExists(atPath: onnx) else {
    throw ActionError.input("gen_trt_engine.onnx_file \(cfg.onnxFile ?? "null") does not exist")
  }
  let builder = try TensorRTBuilder.find()
  let engine = cfg.trtEngine ?? (NSTemporaryDirectory() + "clipkit-\(UUID().uuidString).engine")
  let engineDir = engine.parentPath
  try FileManager.default.createDirectory(atPath: engineDir, withIntermediateDirectories: true)
  let t = cfg.tensorrt
  let fp16 = t.dataType == "fp16", layers = t.layersPrecision ?? []
  var build = TensorRTBuild(onnx: onnx, engine: engine, minBatch: t.minBatchSize, optBatch: t.optBatchSize, maxBatch: t.maxBatchSize,
                            fixedBatch: cfg.batchSize, fp16: fp16, workspaceMB: t.workspaceSize,
                            timingCache: cfg.timingCache, layerPrecisions: layers, verbose: cfg.verbose, gpu: cfg.gpuId)
  let inputs = try ONNXInputs.read(onnx)
  _ = try build.profile(for: inputs)  // batch sizes checked before any conversion
  if !builder.precisionFlags && (fp16 || !layers.isEmpty) {
    var precisions = try ONNXMixedPrecision.layerPrecisions(layers)
    if !fp16 && precisions["*"] == nil { precisions["*"] = false }  // fp32 engine: only the named layers in fp16
    // In the action's results folder, not beside the engine, where deploy's discovery would take it.
    let typed = ctx.resultsDir + "/" + ((engine as NSString).lastPathComponent as NSString).deletingPathExtension + "_typed.onnx"
    let s = try ONNXMixedPrecision.convert(onnx, to: typed, layerPrecisions: precisions)
    print("This TensorRT builds strongly typed networks: wrote \(typed) (\(s.fp16Nodes) nodes in fp16, \(s.fp32Nodes) in fp32, \(s.casts) casts)")
    build.onnx = typed
  }
  try builder.build(build, inputs: inputs)
  // Deploy needs the config and tokenizer sidecars next to the engine (TAO copies them too).
  let src = onnx.parentPath
  if src != engineDir {
    for f in (try? FileManager.default.contentsOfDirectory(atPath: src)) ?? [] where f.hasSuffix("_config.yaml") || f.hasSuffix("_tokenizer") {
      let target = engineDir + "/" + f
      if !FileManager.default.fileExists(atPath: target) { try FileManager.default.copyItem(atPath: src + "/" + f, toPath: target) }
    }
  }
  print("Wrote TensorRT engine \(engine)")
  try ctx.status.write(.success, message: "TensorRT engine generated successfully.")
}
