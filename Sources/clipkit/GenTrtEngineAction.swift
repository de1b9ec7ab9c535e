import Deploy
import Foundation
import Spec

/// `clipkit gen_trt_engine`: builds a TensorRT engine from an ONNX model with trtexec, one
/// optimisation profile over every input, then copies the export sidecars beside the engine.
func runGenTrtEngine(_ ctx: ActionContext) throws {
  let cfg = ctx.config.genTrtEngine
  guard let trtexec = TensorRTBuild.findTrtexec() else {
    throw ActionError.input("TensorRT was not found: gen_trt_engine runs NVIDIA TensorRT's trtexec, which is neither on PATH nor in /usr/src/tensorrt/bin; install TensorRT on a machine with an NVIDIA GPU, or set CLIPKIT_TRTEXEC to the trtexec binary")
  }
  guard let onnx = cfg.onnxFile, FileManager.default.fileExists(atPath: onnx) else {
    throw ActionError.input("gen_trt_engine.onnx_file \(cfg.onnxFile ?? "null") does not exist")
  }
  let engine = cfg.trtEngine ?? (NSTemporaryDirectory() + "clipkit-\(UUID().uuidString).engine")
  let t = cfg.tensorrt
  let build = TensorRTBuild(onnx: onnx, engine: engine, minBatch: t.minBatchSize, optBatch: t.optBatchSize, maxBatch: t.maxBatchSize,
                            fixedBatch: cfg.batchSize, fp16: t.dataType == "fp16", workspaceMB: t.workspaceSize,
                            timingCache: cfg.timingCache, layerPrecisions: t.layersPrecision ?? [], verbose: cfg.verbose)
  let args = try build.arguments(for: try ONNXInputs.read(onnx))
  try FileManager.default.createDirectory(atPath: (engine as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
  print("Running \(trtexec) " + args.joined(separator: " "))
  let p = Process()
  p.executableURL = URL(fileURLWithPath: trtexec)
  p.arguments = args
  try p.run()
  p.waitUntilExit()
  guard p.terminationStatus == 0, FileManager.default.fileExists(atPath: engine) else {
    throw ActionError.input("trtexec failed (exit \(p.terminationStatus)); no engine was written to \(engine)")
  }
  // Deploy needs the config and tokenizer sidecars next to the engine (TAO copies them too).
  let src = (onnx as NSString).deletingLastPathComponent, dst = (engine as NSString).deletingLastPathComponent
  if src != dst {
    for f in (try? FileManager.default.contentsOfDirectory(atPath: src)) ?? [] where f.hasSuffix("_config.yaml") || f.hasSuffix("_tokenizer") {
      let target = dst + "/" + f
      if !FileManager.default.fileExists(atPath: target) { try FileManager.default.copyItem(atPath: src + "/" + f, toPath: target) }
    }
  }
  print("Wrote TensorRT engine \(engine)")
  try ctx.status.write(.success, message: "TensorRT engine generated successfully.")
}
