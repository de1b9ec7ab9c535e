@testable import Export
@testable import Jobs
import Spec
import Models
import Foundation
import Retrieval
import Testing
import Torch

/// Python with onnx + onnxruntime (scripts/test.sh makes one under ~/.cache/clipkit/pyenv and
/// sets CLIPKIT_REQUIRE_ORT so these tests cannot silently skip there).
let ortPython: String? = {
  let env = ProcessInfo.processInfo.environment
  let candidates = [env["CLIPKIT_PYTHON"], NSHomeDirectory() + "/.cache/clipkit/pyenv/bin/python"].compactMap { $0 }
  return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
}()
let ortRequired = ProcessInfo.processInfo.environment["CLIPKIT_REQUIRE_ORT"] == "1"

/// Runs `model` on onnxruntime with `inputs`; returns its outputs and the printed signature.
func runOnnxRuntime(_ model: String, _ inputs: [(String, Tensor)]) throws -> (outputs: [String: Tensor], signature: String) {
  guard let python = ortPython else { throw FileIOError.read(path: "python", reason: "no Python with onnxruntime (run scripts/test.sh)") }
  let dir = NSTemporaryDirectory() + "clipkit-ort-\(UUID().uuidString)"
  try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  try Safetensors.write(inputs, to: dir + "/in.safetensors")
  let r = try runProcess(URL(fileURLWithPath: python),
                         [repoRoot + "/tools/ort/run_onnx.py", model, dir + "/in.safetensors", dir + "/out.safetensors"])
  guard r.code == 0 else { throw FileIOError.read(path: model, reason: "onnxruntime failed: \(r.err)") }
  return (try Safetensors.read(dir + "/out.safetensors").dictionary, r.out)
}

/// Token ids [N·L] from transformers' AutoTokenizer on a saved tokenizer folder (padded to its
/// model_max_length, as TAO's deploy tokenises).
func transformersTokenize(_ folder: String, _ texts: [String]) throws -> [Int] {
  guard let python = ortPython else { throw FileIOError.read(path: "python", reason: "no Python with transformers (run scripts/test.sh)") }
  let r = try runProcess(URL(fileURLWithPath: python), ["-c", """
    import json, sys
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(sys.argv[1])
    texts = json.loads(sys.stdin.read())
    enc = tok(texts, padding="max_length", truncation=True, max_length=tok.model_max_length)
    print(json.dumps([i for row in enc["input_ids"] for i in row]))
    """, folder],
                         stdin: try JSONSerialization.data(withJSONObject: texts))
  guard r.code == 0, let ids = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [Int] else {
    throw FileIOError.read(path: folder, reason: "transformers could not tokenise with it: \(r.err)")
  }
  return ids
}

func maxAbsDiff(_ a: Tensor, _ b: Tensor) throws -> Double { try (a - b).abs().amax().item() }
/// The smallest row-wise cosine similarity of two [N, D] matrices.
func minCosine(_ a: Tensor, _ b: Tensor) throws -> Double {
  try (try a.l2Normalized() * b.l2Normalized()).sum(dims: [1]).amin().item()
}

@Suite struct ExportToONNX {
  let model = repoRoot + "/Tests/ModelTests/Fixtures/tiny_siglip"

  func workspace(_ extra: String = "") throws -> (dir: String, spec: String) {
    let dir = NSTemporaryDirectory() + "clipkit-export-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let spec = """
      results_dir: \(dir)/results
      model:
        type: siglip2-so400m-patch16-256
        pretrained_dir: \(model)
      export:
        onnx_file: \(dir)/export/clip_model.onnx
        input_height: 32
        input_width: 32
      \(extra)
      """
    try spec.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    return (dir, dir + "/spec.yaml")
  }

  var reference: [String: Tensor] { get throws { try Safetensors.read(model + "/reference.safetensors").dictionary } }
  var rawLogitScale: Double { get throws { try Safetensors.read(model + "/model.safetensors").dictionary["logit_scale"]!.reshape([]).item() } }

  @Test(.enabled(if: ortPython != nil || ortRequired))
  func combinedGraphMatchesTransformersOnOnnxRuntime() throws {
    let (dir, spec) = try workspace()
    let r = try clipkit(["export", "-e", spec])
    #expect(r.code == 0, "\(r.err)")
    let ref = try reference
    // Any mask values: TAO's graph keeps the mask only as a dummy input.
    let mask = try Tensor([Int64](repeating: 0, count: 6 * 16), shape: [6, 16])
    let (out, sig) = try runOnnxRuntime(dir + "/export/clip_model.onnx",
                                        [("image", ref["pixel_values"]!), ("input_ids", ref["input_ids"]!), ("attention_mask", mask)])
    #expect(try maxAbsDiff(out["image_embedding"]!, try ref["image_features"]!.l2Normalized()) < 1e-4)
    #expect(try maxAbsDiff(out["text_embedding"]!, try ref["text_features"]!.l2Normalized()) < 1e-4)
    #expect(abs(try out["logit_scale"]!.item() - exp(try rawLogitScale)) < 1e-3)
    #expect(sig.contains(#"["logit_scale", "tensor(float)", []]"#) && sig.contains(#"["logit_bias", "tensor(float)", []]"#), "\(sig)")
    // TAO's names, only the batch axis dynamic.
    #expect(sig.contains(#"["image", "tensor(float)", ["batch_size", 3, 32, 32]]"#), "\(sig)")
    #expect(sig.contains(#"["input_ids", "tensor(int64)", ["batch_size", 16]]"#), "\(sig)")
    #expect(sig.contains(#"["attention_mask", "tensor(int64)", ["batch_size", 16]]"#), "\(sig)")
    #expect(sig.contains(#""outputs": [["image_embedding", "tensor(float)", ["batch_size", 64]], ["text_embedding", "tensor(float)", ["batch_size", 64]]"#), "\(sig)")

    // The dynamic batch at 1 and 7 (the six references plus the first again).
    let pixels7 = try Tensor.cat([ref["pixel_values"]!, ref["pixel_values"]!.narrow(dim: 0, start: 0, length: 1)])
    let ids7 = try Tensor.cat([ref["input_ids"]!, ref["input_ids"]!.narrow(dim: 0, start: 0, length: 1)])
    let img7 = try Tensor.cat([ref["image_features"]!, ref["image_features"]!.narrow(dim: 0, start: 0, length: 1)])
    let txt7 = try Tensor.cat([ref["text_features"]!, ref["text_features"]!.narrow(dim: 0, start: 0, length: 1)])
    for n in [1, 7] {
      let (o, _) = try runOnnxRuntime(dir + "/export/clip_model.onnx",
                                      [("image", try pixels7.narrow(dim: 0, start: 0, length: n)),
                                       ("input_ids", try ids7.narrow(dim: 0, start: 0, length: n)),
                                       ("attention_mask", try Tensor([Int64](repeating: 1, count: n * 16), shape: [n, 16]))])
      let wantImg = try img7.narrow(dim: 0, start: 0, length: n).l2Normalized(), wantTxt = try txt7.narrow(dim: 0, start: 0, length: n).l2Normalized()
      #expect(o["image_embedding"]!.shape == [n, 64])
      #expect(try maxAbsDiff(o["image_embedding"]!, wantImg) < 1e-4 && minCosine(o["image_embedding"]!, wantImg) >= 0.99999)
      #expect(try maxAbsDiff(o["text_embedding"]!, wantTxt) < 1e-4 && minCosine(o["text_embedding"]!, wantTxt) >= 0.99999)
    }

    // Sidecars: the resolved spec with the learned raw logit values, and the tokenizer at the graph's length.
    let yaml = try String(contentsOfFile: dir + "/export/clip_model_config.yaml", encoding: .utf8)
    #expect(yaml.contains("init_logit_scale: \(try rawLogitScale)"), "\(yaml)")
    let tok = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/export/clip_model_tokenizer/tokenizer_config.json"))) as! [String: Any]
    #expect(tok["model_max_length"] as? Int == 16)
    #expect(FileManager.default.fileExists(atPath: dir + "/export/clip_model_tokenizer/tokenizer.json"))
    // transformers loads the folder and gives the ids clipkit's tokenizer gave the reference.
    let prompts = (try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: model + "/inputs.json"))) as! [String: Any])["prompts"] as! [String]
    let ids = try transformersTokenize(dir + "/export/clip_model_tokenizer", prompts)
    #expect(ids == (try ref["input_ids"]!.toArray(Int64.self)).map(Int.init))

    // Never overwrites.
    let again = try clipkit(["export", "-e", spec])
    #expect(again.code != 0 && again.err.contains("clip_model.onnx already exists"), "\(again.err)")
    // Nor the sidecars a previous export left: they stay as they were.
    let config = try String(contentsOfFile: dir + "/export/clip_model_config.yaml", encoding: .utf8)
    try FileManager.default.removeItem(atPath: dir + "/export/clip_model.onnx")
    let sidecar = try clipkit(["export", "-e", spec, "export.verbose=true"])
    #expect(sidecar.code != 0 && sidecar.err.contains("clip_model_config.yaml already exists"), "\(sidecar.err)")
    #expect(try String(contentsOfFile: dir + "/export/clip_model_config.yaml", encoding: .utf8) == config)
    #expect(FileManager.default.fileExists(atPath: dir + "/export/clip_model_tokenizer/tokenizer.json"))
    try FileManager.default.removeItem(atPath: dir + "/export/clip_model_config.yaml")
    let tokenizer = try clipkit(["export", "-e", spec])
    #expect(tokenizer.code != 0 && tokenizer.err.contains("clip_model_tokenizer already exists"), "\(tokenizer.err)")
    // export.verbose lists the graph's nodes.
    try FileManager.default.removeItem(atPath: dir + "/export/clip_model_tokenizer")
    let verbose = try clipkit(["export", "-e", spec, "export.verbose=true"])
    #expect(verbose.code == 0 && verbose.out.contains("Graph clip for") && verbose.out.contains("LayerNormalization"), "\(verbose.err)")
  }

  @Test(.enabled(if: ortPython != nil || ortRequired))
  func separateGraphsAtAnotherResolutionWithAStaticBatch() throws {
    let (dir, spec) = try workspace()
    let r = try clipkit(["export", "-e", spec, "export.encoder_type=separate", "export.input_height=48", "export.input_width=48",
                         "export.batch_size=6"])
    #expect(r.code == 0, "\(r.err)")
    let ref = try reference
    let (vision, vsig) = try runOnnxRuntime(dir + "/export/clip_model_vision.onnx", [("image", ref["pixel_values_large"]!)])
    // The position grid is resized bicubically, as transformers' interpolate_pos_encoding.
    #expect(try maxAbsDiff(vision["image_embedding"]!, try ref["image_features_large"]!.l2Normalized()) < 1e-4)
    #expect(vsig.contains(#"["image", "tensor(float)", [6, 3, 48, 48]]"#), "\(vsig)")
    #expect(!vsig.contains("text_embedding"))
    let (text, tsig) = try runOnnxRuntime(dir + "/export/clip_model_text.onnx",
                                          [("input_ids", ref["input_ids"]!), ("attention_mask", ref["attention_mask"]!)])
    #expect(try maxAbsDiff(text["text_embedding"]!, try ref["text_features"]!.l2Normalized()) < 1e-4)
    #expect(tsig.contains(#"["input_ids", "tensor(int64)", [6, 16]]"#) && tsig.contains("logit_bias"), "\(tsig)")
    #expect(FileManager.default.fileExists(atPath: dir + "/export/clip_model_config.yaml"))
  }

  @Test(.enabled(if: ortPython != nil || ortRequired))
  func combinedAndSeparateAgreeAtOpset15() throws {
    // Below opset 17 LayerNormalization is spelled out; both layouts give the same embeddings.
    let (dir, spec) = try workspace()
    #expect(try clipkit(["export", "-e", spec, "export.opset_version=15"]).code == 0)
    #expect(try clipkit(["export", "-e", spec, "export.encoder_type=separate", "export.onnx_file=\(dir)/sep/m.onnx"]).code == 0)
    let ref = try reference
    let (c, csig) = try runOnnxRuntime(dir + "/export/clip_model.onnx",
                                       [("image", ref["pixel_values"]!), ("input_ids", ref["input_ids"]!), ("attention_mask", ref["attention_mask"]!)])
    let (v, _) = try runOnnxRuntime(dir + "/sep/m_vision.onnx", [("image", ref["pixel_values"]!)])
    let (t, _) = try runOnnxRuntime(dir + "/sep/m_text.onnx", [("input_ids", ref["input_ids"]!), ("attention_mask", ref["attention_mask"]!)])
    #expect(try maxAbsDiff(c["image_embedding"]!, v["image_embedding"]!) < 1e-5)
    #expect(try maxAbsDiff(c["text_embedding"]!, t["text_embedding"]!) < 1e-5)
    #expect(try maxAbsDiff(c["image_embedding"]!, try ref["image_features"]!.l2Normalized()) < 1e-4)
    #expect(try c["logit_bias"]!.item() == v["logit_bias"]!.item())
    #expect(!csig.isEmpty)
  }

  @Test func refusesWhatCannotBeExported() throws {
    let (_, spec) = try workspace()
    let opset = try clipkit(["export", "-e", spec, "export.opset_version=13"])
    #expect(opset.code != 0 && opset.err.contains("opset_version 13"), "\(opset.err)")
    let etlt = try clipkit(["export", "-e", spec, "export.onnx_file=/tmp/x.etlt"])
    #expect(etlt.code != 0 && etlt.err.contains(".etlt"), "\(etlt.err)")
    let size = try clipkit(["export", "-e", spec, "export.input_height=36"])
    #expect(size.code != 0 && size.err.contains("multiples of the patch size"), "\(size.err)")
    let naflex = try clipkit(["export", "-e", spec, "model.pretrained_dir=\(repoRoot)/Tests/ModelTests/Fixtures/tiny_siglip2_naflex"])
    #expect(naflex.code != 0 && naflex.err.contains("NaFlex models take a variable number of patches"), "\(naflex.err)")
    let none = try clipkit(["export", "-e", spec, "export.onnx_file=null"])
    #expect(none.code != 0 && none.err.contains("export.onnx_file or export.checkpoint"), "\(none.err)")
  }
}

@Suite struct ONNXGraphWriting {
  @Test(.enabled(if: ortPython != nil || ortRequired))
  func weightsPastTheThresholdGoToOneExternalFile() throws {
    let dir = NSTemporaryDirectory() + "clipkit-ext-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let g = ONNXGraph(name: "ext")
    let x = g.input("x", .float, [.symbolic("batch_size"), .fixed(3)])
    let w = try Tensor((0..<48).map { Float($0 % 11) / 7 - 0.6 }, shape: [16, 3]), b = try Tensor((0..<16).map { Float($0) / 9 })
    g.output(g.l2Normalize(try g.linear(x, weight: w, bias: b, key: "fc")), as: "y", .float, [.symbolic("batch_size"), .fixed(16)])
    try g.write(to: dir + "/tiny.onnx", producerVersion: "test", externalThreshold: 0)
    let bin = try FileManager.default.attributesOfItem(atPath: dir + "/tiny_weights.bin")[.size] as! Int
    #expect(bin >= 48 * 4)  // the weight; small constants stay inline
    let input = try Tensor([Float(1), -2, 3, 0.5, 0, -1], shape: [2, 3])
    let (out, _) = try runOnnxRuntime(dir + "/tiny.onnx", [("x", input)])
    let want = try (try input.matmul(w.transpose(0, 1)) + b).l2Normalized()
    #expect(try maxAbsDiff(out["y"]!, want) < 1e-6)
  }
}

/// `clipkit deploy` on exported ONNX files (ClipKit's executor on libtorch) against the eager model.
@Suite struct DeployExportedModels {
  func workspace() throws -> (dir: String, spec: String) {
    let dir = NSTemporaryDirectory() + "clipkit-deploy-\(UUID().uuidString)"
    let fm = FileManager.default
    try fm.createDirectory(atPath: dir + "/pairs", withIntermediateDirectories: true)
    // TAO Deploy resizes SigLIP inputs bilinearly; so do real SigLIP processors (resample 2).
    try fm.copyItem(atPath: repoRoot + "/Tests/ModelTests/Fixtures/tiny_siglip", toPath: dir + "/model")
    let pre = dir + "/model/preprocessor_config.json"
    try String(contentsOfFile: pre, encoding: .utf8).replacingOccurrences(of: "\"resample\": 3", with: "\"resample\": 2")
      .write(toFile: pre, atomically: true, encoding: .utf8)
    let images = repoRoot + "/Tests/ModelTests/Fixtures/images"
    for (i, n) in try fm.contentsOfDirectory(atPath: images).filter({ !$0.hasSuffix(".txt") }).sorted().enumerated() {
      try fm.copyItem(atPath: images + "/" + n, toPath: dir + "/pairs/" + n)
      try "a caption number \(i) about \(n)".write(toFile: dir + "/pairs/" + (n as NSString).deletingPathExtension + ".txt", atomically: true, encoding: .utf8)
    }
    try "a photo of a cat\nA Red Car on the highway.\n".write(toFile: dir + "/prompts.txt", atomically: true, encoding: .utf8)
    let spec = """
      results_dir: \(dir)/results
      model:
        type: siglip2-so400m-patch16-256
        pretrained_dir: \(dir)/model
      dataset:
        val:
          datasets:
            - image_dir: \(dir)/pairs
      export:
        onnx_file: \(dir)/results/export/clip_model.onnx
        input_height: 32
        input_width: 32
      evaluate:
        batch_size: 4
        trt_engine: \(dir)/results/export/clip_model.onnx
      inference:
        batch_size: 4
        datasets:
          - image_dir: \(dir)/pairs
        text_file: \(dir)/prompts.txt
        trt_engine: \(dir)/results/export
      """
    try spec.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    return (dir, dir + "/spec.yaml")
  }

  func json(_ path: String) throws -> [String: Double] {
    let o = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    return o.compactMapValues { ($0 as? NSNumber)?.doubleValue }
  }

  @Test func deployEvaluateGivesTheEagerMetrics() throws {
    let (dir, spec) = try workspace()
    #expect(try clipkit(["export", "-e", spec]).code == 0)
    // TAO Deploy lists .jpg/.jpeg/.png/.bmp, TAO PyTorch .jpg/.jpeg/.png/.webp.
    #expect(try clipkit(["deploy", "evaluate", "-e", spec]).code == 0)
    let listed = try json(dir + "/results/evaluate/results.json")["num_images"]
    #expect(listed == 5)  // photo_420.jpg, rgba.png, gray.jpg, cmyk.jpg, palette8.bmp
    for f in ["lossy.webp", "lossy.txt", "palette8.bmp", "palette8.txt"] { try FileManager.default.removeItem(atPath: dir + "/pairs/" + f) }
    let eager = try clipkit(["evaluate", "-e", spec])
    #expect(eager.code == 0, "\(eager.err)")
    let want = try json(dir + "/results/evaluate/results.json")
    let deployed = try clipkit(["deploy", "evaluate", "-e", spec])
    #expect(deployed.code == 0, "\(deployed.err)")
    let got = try json(dir + "/results/evaluate/results.json")
    #expect(want.count >= 14 && Set(want.keys) == Set(got.keys))
    for (k, v) in want { #expect(abs(got[k]! - v) <= 1e-4, "\(k): \(got[k]!) vs \(v)") }
  }

  @Test func deployInferenceOnSeparateGraphsMatchesInference() throws {
    let (dir, spec) = try workspace()
    #expect(try clipkit(["inference", "-e", spec]).code == 0)
    let (img, _, _) = try EmbeddingFile.read(dir + "/results/inference/image_embeddings.h5", kind: .image)
    let (txt, _, _) = try EmbeddingFile.read(dir + "/results/inference/text_embeddings.h5", kind: .text)
    #expect(try clipkit(["export", "-e", spec, "export.encoder_type=separate", "export.onnx_file=\(dir)/sep/m.onnx"]).code == 0)
    // A path that does not exist resolves to its _vision/_text pair (TAO's discovery).
    let r = try clipkit(["deploy", "inference", "-e", spec, "inference.trt_engine=\(dir)/sep/m.onnx",
                         "inference.results_dir=\(dir)/deployed"])
    #expect(r.code == 0, "\(r.err)")
    let (dimg, _, _) = try EmbeddingFile.read(dir + "/deployed/image_embeddings.h5", kind: .image)
    let (dtxt, _, _) = try EmbeddingFile.read(dir + "/deployed/text_embeddings.h5", kind: .text)
    #expect(dimg.labels == img.labels && dtxt.labels == txt.labels && dimg.labels.count == 6)
    #expect(zip(dimg.embeddings, img.embeddings).map { abs($0 - $1) }.max()! < 1e-4)
    #expect(zip(dtxt.embeddings, txt.embeddings).map { abs($0 - $1) }.max()! < 1e-4)
  }

  @Test func runsATorchOnnxExportLikeTAOs() throws {
    // torch.onnx's graph (Shape/Gather/Concat arithmetic, Gemm, ReduceL2, Clip, …) of the same
    // weights, with the sidecars ClipKit's export wrote.
    let (dir, spec) = try workspace()
    #expect(try clipkit(["inference", "-e", spec]).code == 0)
    #expect(try clipkit(["export", "-e", spec]).code == 0)
    let fm = FileManager.default
    try fm.createDirectory(atPath: dir + "/tao", withIntermediateDirectories: true)
    try fm.copyItem(atPath: repoRoot + "/Tests/ModelTests/Fixtures/tiny_siglip_torch_onnx/clip_model.onnx", toPath: dir + "/tao/clip_model.onnx")
    try fm.copyItem(atPath: dir + "/results/export/clip_model_config.yaml", toPath: dir + "/tao/clip_model_config.yaml")
    try fm.copyItem(atPath: dir + "/results/export/clip_model_tokenizer", toPath: dir + "/tao/clip_model_tokenizer")
    let r = try clipkit(["deploy", "inference", "-e", spec, "inference.trt_engine=\(dir)/tao", "inference.results_dir=\(dir)/tao_out"])
    #expect(r.code == 0, "\(r.err)")
    for kind in [EmbeddingFile.Kind.image, .text] {
      let (want, _, _) = try EmbeddingFile.read(dir + "/results/inference/\(kind.rawValue)_embeddings.h5", kind: kind)
      let (got, _, _) = try EmbeddingFile.read(dir + "/tao_out/\(kind.rawValue)_embeddings.h5", kind: kind)
      #expect(got.labels == want.labels && !got.labels.isEmpty)
      #expect(zip(got.embeddings, want.embeddings).map { abs($0 - $1) }.max()! < 1e-4)
    }
  }

  /// `.engine` files go through the TensorRT helper process. With no GPU here, the helper answers
  /// from the ONNX bytes with onnxruntime (CLIPKIT_ENGINE_BACKEND): this checks the discovery of
  /// engines, the framing of tensors both ways, the combined engine's other-tower inputs and the
  /// metrics, against the eager model.
  @Test func engineFilesRunThroughTheHelper() throws {
    guard ProcessInfo.processInfo.environment["CLIPKIT_PYTHON"] != nil else { return }
    let (dir, spec) = try workspace()
    let fm = FileManager.default
    // Only files both listings take (TAO Deploy skips .webp, TAO PyTorch .bmp).
    for f in ["lossy.webp", "lossy.txt", "palette8.bmp", "palette8.txt"] { try fm.removeItem(atPath: dir + "/pairs/" + f) }
    #expect(try clipkit(["inference", "-e", spec]).code == 0)
    #expect(try clipkit(["evaluate", "-e", spec]).code == 0)
    let want = try json(dir + "/results/evaluate/results.json")
    #expect(try clipkit(["export", "-e", spec]).code == 0)
    #expect(try clipkit(["export", "-e", spec, "export.encoder_type=separate", "export.onnx_file=\(dir)/sep/m.onnx"]).code == 0)
    try fm.createDirectory(atPath: dir + "/engines", withIntermediateDirectories: true)
    try fm.copyItem(atPath: dir + "/results/export/clip_model.onnx", toPath: dir + "/engines/clip_model.engine")
    for t in ["vision", "text"] { try fm.copyItem(atPath: dir + "/sep/m_\(t).onnx", toPath: dir + "/sep/m_\(t).engine") }
    for f in ["clip_model_config.yaml", "clip_model_tokenizer"] { try fm.copyItem(atPath: dir + "/results/export/" + f, toPath: dir + "/engines/" + f) }
    let env = ["CLIPKIT_ENGINE_BACKEND": "onnxruntime"]
    let ev = try clipkit(["deploy", "evaluate", "-e", spec, "evaluate.trt_engine=\(dir)/engines/clip_model.engine"], env: env)
    #expect(ev.code == 0 && ev.out.contains("clip_model.engine on onnxruntime"), "\(ev.err)")
    let got = try json(dir + "/results/evaluate/results.json")
    for (k, v) in want { #expect(abs(got[k]! - v) <= 1e-4, "\(k): \(got[k]!) vs \(v)") }
    // A static-batch engine (batch 2) fed batches of 5: chunks of 2, the last one padded.
    #expect(try clipkit(["export", "-e", spec, "export.batch_size=2", "export.onnx_file=\(dir)/static/m.onnx"]).code == 0)
    try fm.moveItem(atPath: dir + "/static/m.onnx", toPath: dir + "/static/m.engine")
    for (engine, out) in [("engines", "combined"), ("sep/m_text.engine", "separate"), ("static/m.engine", "static")] {
      let r = try clipkit(["deploy", "inference", "-e", spec, "inference.trt_engine=\(dir)/\(engine)", "inference.results_dir=\(dir)/\(out)",
                           "inference.batch_size=5"], env: env)
      #expect(r.code == 0, "\(r.err)")
      for kind in [EmbeddingFile.Kind.image, .text] {
        let (w, _, _) = try EmbeddingFile.read(dir + "/results/inference/\(kind.rawValue)_embeddings.h5", kind: kind)
        let (g, _, _) = try EmbeddingFile.read(dir + "/\(out)/\(kind.rawValue)_embeddings.h5", kind: kind)
        #expect(g.labels == w.labels && !g.labels.isEmpty)
        #expect(zip(g.embeddings, w.embeddings).map { abs($0 - $1) }.max()! < 1e-4, "\(out) \(kind)")
      }
    }
  }

  @Test func enginesAndMissingSidecarsAreClearErrors() throws {
    let (dir, spec) = try workspace()
    try FileManager.default.createDirectory(atPath: dir + "/engines", withIntermediateDirectories: true)
    FileManager.default.createFile(atPath: dir + "/engines/clip.engine", contents: Data([1, 2, 3]))
    let noSidecar = try clipkit(["deploy", "evaluate", "-e", spec, "evaluate.trt_engine=\(dir)/engines/clip.engine"])
    #expect(noSidecar.code != 0 && noSidecar.err.contains("_config.yaml"), "\(noSidecar.err)")
    #expect(try clipkit(["export", "-e", spec, "export.onnx_file=\(dir)/engines/clip.onnx"]).code == 0)
    try FileManager.default.removeItem(atPath: dir + "/engines/clip.onnx")
    // The test environment's Python has no tensorrt: one line saying what to install.
    let engine = try clipkit(["deploy", "evaluate", "-e", spec, "evaluate.trt_engine=\(dir)/engines/clip.engine"])
    #expect(engine.code != 0 && engine.err.contains("TensorRT was not found") && engine.err.contains("CLIPKIT_PYTHON"), "\(engine.err)")
    #expect(engine.err.split(separator: "\n").filter { $0.hasPrefix("error") }.count == 1)
    let missing = try clipkit(["deploy", "inference", "-e", spec, "inference.trt_engine=\(dir)/nowhere/x.onnx"])
    #expect(missing.code != 0 && missing.err.contains("does not exist"), "\(missing.err)")
  }
}

/// The typed (mixed fp16/fp32) graphs gen_trt_engine writes for TensorRT 11, which has no
/// precision flags: checked with onnx.checker, run by onnxruntime and by ClipKit's executor
/// against the float32 graph.
@Suite struct MixedPrecisionGraphs {
  let tao = repoRoot + "/Tests/ModelTests/Fixtures/tiny_siglip_torch_onnx/clip_model.onnx"

  func exported() throws -> String {
    let dir = NSTemporaryDirectory() + "clipkit-typed-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try """
      model:
        type: siglip2-so400m-patch16-256
        pretrained_dir: \(repoRoot)/Tests/ModelTests/Fixtures/tiny_siglip
      export:
        onnx_file: \(dir)/clip_model.onnx
        input_height: 32
        input_width: 32
      results_dir: \(dir)/results
      """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    let r = try clipkit(["export", "-e", dir + "/spec.yaml"])
    #expect(r.code == 0, "\(r.err)")
    return dir + "/clip_model.onnx"
  }

  func feeds(batch: Int) throws -> [(String, Tensor)] {
    let ids = try Tensor((0..<(batch * 16)).map { Int64(($0 * 37 + 5) % 100) }, shape: [batch, 16])
    return [("image", try Tensor.randn([batch, 3, 32, 32], generator: try Generator(seed: 3))), ("input_ids", ids), ("attention_mask", try Tensor.ones([batch, 16], dtype: .int64))]
  }

  @Test func executorRunsTheTypedGraphCloseToFloat32() throws {
    for source in [try exported(), tao] {
      let typed = NSTemporaryDirectory() + "typed-\(UUID().uuidString).onnx"
      let s = try ONNXMixedPrecision.convert(source, to: typed)
      #expect(s.fp16Nodes > 2 * s.fp32Nodes && s.casts > 0, "\(s)")
      // Weights read by fp16 nodes are stored in fp16: the file is about half the size.
      let size = { (p: String) in try FileManager.default.attributesOfItem(atPath: p)[.size] as! Int }
      #expect(Double(try size(typed)) < 0.6 * Double(try size(source)))
      let f = Dictionary(uniqueKeysWithValues: try feeds(batch: 5))
      let want = try ONNXExecutor(path: source).run(f), got = try ONNXExecutor(path: typed).run(f)
      for k in ["image_embedding", "text_embedding"] {
        #expect(got[k]!.dtype == .float32)
        #expect(try minCosine(got[k]!, want[k]!) > 0.9999, "\(k)")
        #expect(try maxAbsDiff(got[k]!, want[k]!) < 2e-3, "\(k)")
      }
      // Constants-only work (the exponentiated logit scale, the bias) stays exact.
      #expect(try got["logit_scale"]!.item() == want["logit_scale"]!.item())
      #expect(try got["logit_bias"]!.item() == want["logit_bias"]!.item())
    }
  }

  @Test(.enabled(if: ortPython != nil || ortRequired))
  func onnxRuntimeRunsTheTypedGraphAndLayerPrecisionsHold() throws {
    let source = try exported()
    let typed = source.replacingOccurrences(of: ".onnx", with: "_typed.onnx")
    try ONNXMixedPrecision.convert(source, to: typed)
    let f = try feeds(batch: 7)
    let (want, _) = try runOnnxRuntime(source, f)
    let (got, sig) = try runOnnxRuntime(typed, f)  // onnx.checker full_check first
    #expect(sig.contains(#"["image", "tensor(float)""#) && sig.contains(#"["image_embedding", "tensor(float)""#), "\(sig)")
    for k in ["image_embedding", "text_embedding"] {
      #expect(try minCosine(got[k]!, want[k]!) > 0.9999, "\(k)")
    }
    // torch.onnx's node names: one MatMul forced to fp32 keeps it (and what it feeds) in fp32.
    let plain = try ONNXMixedPrecision.convert(tao, to: NSTemporaryDirectory() + "p-\(UUID().uuidString).onnx")
    let forcedPath = NSTemporaryDirectory() + "f-\(UUID().uuidString).onnx"
    let forced = try ONNXMixedPrecision.convert(tao, to: forcedPath, layerPrecisions: try ONNXMixedPrecision.layerPrecisions(
      ["/text_model/encoder/layers.0/mlp/fc1/MatMul:fp32"]))
    #expect(forced.fp32Nodes > plain.fp32Nodes && forced.fp16Nodes < plain.fp16Nodes)
    // Wildcards as trtexec's: every fc1 MatMul of the text tower.
    let all = try ONNXMixedPrecision.convert(tao, to: NSTemporaryDirectory() + "w-\(UUID().uuidString).onnx",
                                             layerPrecisions: ["/text_model/*/fc1/MatMul": false])
    #expect(all.fp32Nodes > forced.fp32Nodes)
    #expect(ONNXMixedPrecision.glob("/a/*/fc1*", "/a/layers.0/fc1/MatMul") && !ONNXMixedPrecision.glob("/a/*/fc2", "/a/layers.0/fc1"))
    let (t, _) = try runOnnxRuntime(forcedPath, f)
    let (r, _) = try runOnnxRuntime(tao, f)
    #expect(try minCosine(t["text_embedding"]!, r["text_embedding"]!) > 0.9999)
  }

  @Test func normsOfLargeActivationsDoNotOverflow() throws {
    // |x| ≈ 1000 before the L2 norm: x·x in fp16 would be inf and the embedding 0.
    let dir = NSTemporaryDirectory() + "clipkit-norm-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let g = ONNXGraph(name: "norm")
    let x = g.input("x", .float, [.symbolic("batch_size"), .fixed(4)])
    let w = try Tensor((0..<32).map { Float(($0 * 7) % 5) * 300 - 600 }, shape: [8, 4]), b = try Tensor([Float](repeating: 10, count: 8))
    g.output(g.l2Normalize(try g.linear(x, weight: w, bias: b, key: "proj")), as: "y", .float, [.symbolic("batch_size"), .fixed(8)])
    try g.write(to: dir + "/n.onnx", producerVersion: "test")
    try ONNXMixedPrecision.convert(dir + "/n.onnx", to: dir + "/t.onnx")
    let input = try Tensor([Float(1), -0.5, 0.25, 2, 0.3, 0.1, -1, 0.7], shape: [2, 4])
    let want = try ONNXExecutor(path: dir + "/n.onnx").run(["x": input])["y"]!, got = try ONNXExecutor(path: dir + "/t.onnx").run(["x": input])["y"]!
    #expect(try want.abs().amax().item() > 0.1)
    #expect(try maxAbsDiff(got, want) < 2e-3)
  }

  @Test func layerPrecisionEntriesAreChecked() throws {
    #expect(try ONNXMixedPrecision.layerPrecisions(["a/b:fp32", "*:FP16"]) == ["a/b": false, "*": true])
    #expect(throws: ExportError.self) { try ONNXMixedPrecision.layerPrecisions(["a/b"]) }
    #expect(throws: ExportError.self) { try ONNXMixedPrecision.layerPrecisions(["a/b:int4"]) }
    // Everything forced to fp32 leaves nothing in fp16: refused, not written.
    #expect(throws: ExportError.self) { try ONNXMixedPrecision.convert(tao, to: NSTemporaryDirectory() + "x.onnx", layerPrecisions: ["*": false]) }
  }
}

/// Graphs with impossible shapes, short attribute lists or axes out of range: errors naming the
/// input or node, never a trap in the executor.
@Suite struct MalformedONNXGraphs {
  /// A graph over x [2, 3, 4] whose output is `body`'s value.
  func graph(_ dims: [ONNXDim] = [.fixed(2), .fixed(3), .fixed(4)], type: ONNXElement = .float,
             _ body: (ONNXGraph, String) throws -> String) throws -> String {
    let path = NSTemporaryDirectory() + "clipkit-bad-\(UUID().uuidString).onnx"
    let g = ONNXGraph(name: "bad")
    let x = g.input("x", type, dims)
    g.output(try body(g, x), as: "y", type, [.symbolic("any")])
    try g.write(to: path, producerVersion: "test")
    return path
  }
  func expectUnsupported(_ path: String, _ fragment: String, feed: Tensor? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    let error = #expect(throws: ExportError.self, sourceLocation: sourceLocation) {
      let x = try feed ?? Tensor.randn([2, 3, 4])
      _ = try ONNXExecutor(path: path).run(["x": x])
    }
    guard case .unsupported(let m)? = error else { return }
    #expect(m.hasPrefix(path) && m.contains(fragment), "\(m)", sourceLocation: sourceLocation)
  }

  @Test func negativeAndZeroDimensionsNameTheInput() throws {
    let bad = try graph([.symbolic("b"), .fixed(3), .fixed(-224), .fixed(224)]) { g, x in g.op("Identity", [x]) }
    expectUnsupported(bad, "'x' has a negative dimension (dim_value -224)")
    // A deployed image input must have a positive size (a zero one would be an empty image).
    let dir = NSTemporaryDirectory() + "clipkit-zero-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let g = ONNXGraph(name: "zero")
    let image = g.input("image", .float, [.symbolic("b"), .fixed(3), .fixed(0), .fixed(32)])
    g.output(g.op("ReduceMean", [image], [.ints("axes", [2, 3]), .int("keepdims", 0)]), as: "image_embedding", .float, [.symbolic("b"), .fixed(3)])
    try g.write(to: dir + "/m.onnx", producerVersion: "test")
    let error = #expect(throws: ExportError.self) {
      _ = try CLIPBundle.deployed(combined: nil, vision: dir + "/m.onnx", text: nil, tokenizerDir: dir, modelType: "siglip", canonicalize: false)
    }
    #expect(error?.localizedDescription.contains("input 'image' must be [B, C, H, W] with fixed, positive C, H, W (it is [?, 3, 0, 32])") == true,
            "\(String(describing: error))")
  }

  @Test func shortAttributeListsAndAxesOutOfRangeNameTheNode() throws {
    expectUnsupported(try graph { g, x in g.op("Slice", [x, g.int64s([0, 0]), g.int64s([1])], hint: "cut") }, "node cut_")
    expectUnsupported(try graph { g, x in g.op("Slice", [x, g.int64s([0, 0]), g.int64s([1])]) }, "has 2 starts, 1 ends, 2 axes and 2 steps")
    expectUnsupported(try graph { g, x in g.op("Slice", [x, g.int64s([0]), g.int64s([1]), g.int64s([0, 1])]) }, "has 1 starts, 1 ends, 2 axes")
    expectUnsupported(try graph { g, x in g.op("Slice", [x, g.int64s([0]), g.int64s([1]), g.int64s([5])]) }, "has axis 5, outside a tensor of rank 3")
    expectUnsupported(try graph { g, x in g.op("Slice", [x, g.int64s([0]), g.int64s([1]), g.int64s([0]), g.int64s([])]) }, "and 0 steps")
    expectUnsupported(try graph { g, x in g.op("LayerNormalization", [x, try g.weight("w", Tensor.ones([4]))], [.int("axis", 3)]) },
                      "has axis 3, outside a tensor of rank 3")
    expectUnsupported(try graph { g, x in g.op("Gather", [x, g.int64s([0])], [.int("axis", -4)]) }, "has axis -4, outside a tensor of rank 3")
    expectUnsupported(try graph { g, x in g.op("Reshape", [x, g.int64s([2, 3, 4, 0])]) }, "copies dimension 3 (a 0 in the shape) of a tensor of rank 3")
    expectUnsupported(try graph { g, x in g.op("Tile", [x, g.int64s([2])]) }, "has repeats [2] for a tensor of rank 3")
    expectUnsupported(try graph { g, x in g.op("Tile", [x, g.int64s([1, -1, 1])]) }, "has repeats [1, -1, 1]")
    let conv = try graph([.fixed(1), .fixed(3), .fixed(4), .fixed(4)]) { g, x in
      g.op("Conv", [x, try g.weight("k", Tensor.ones([2, 3, 1, 1]))], [.ints("strides", [1])])
    }
    expectUnsupported(conv, "has strides [1] and dilations [1, 1]; a 2-D convolution needs 2 of each", feed: try Tensor.randn([1, 3, 4, 4]))
    // A node without an output (nothing could hold its result).
    let path = try graph { g, x in g.op("Neg", [x]) }
    var model = try ONNXFile.read(path)
    model.graph.node[0].output = []
    try ONNXFile.write(model, to: path)
    expectUnsupported(path, "node Neg_1 (Neg) has no output")
    // Well-formed versions of the same nodes run.
    let tiled = try ONNXExecutor(path: try graph { g, x in g.op("Tile", [x, g.int64s([1, 2, 0])]) }).run(["x": try Tensor.randn([2, 3, 4])])
    #expect(tiled["y"]?.shape == [2, 6, 0])
  }

  /// Integer shape arithmetic that overflows (Int64.min / -1, Int64.min % -1) wraps as the
  /// hardware would; it never traps.
  @Test func integerDivisionOverflowWraps() throws {
    for (op, want) in [("Div", Int64.min), ("Mod", 0)] {
      let path = try graph([.fixed(2)], type: .int64) { g, x in g.op(op, [x, g.int64s([-1])]) }
      let y = try ONNXExecutor(path: path).run(["x": try Tensor([Int64.min, 7], shape: [2])])["y"]!
      #expect(try y.toArray(Int64.self) == [want, op == "Div" ? -7 : 0], "\(op)")
    }
  }
}

/// OpenCLIP graphs against open_clip's own outputs (tools/fixtures/openclip_fixtures.py), on
/// onnxruntime and on ClipKit's executor.
@Suite struct OpenCLIPExport {
  let fixtures = repoRoot + "/Tests/ModelTests/Fixtures"

  @Test(.enabled(if: ortPython != nil || ortRequired))
  func nvclipExportMatchesOpenCLIP() throws {
    let dir = NSTemporaryDirectory() + "clipkit-ocx-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try """
      model:
        type: ViT-L-14-SigLIP-CLIPA-224
        pretrained_dir: \(fixtures)/tiny_nvclip
      export:
        onnx_file: \(dir)/export/clip_model.onnx
        input_height: 56
        input_width: 56
      results_dir: \(dir)/results
      """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    let r = try clipkit(["export", "-e", dir + "/spec.yaml"])
    #expect(r.code == 0, "\(r.err)")
    let ref = try Safetensors.read(fixtures + "/tiny_nvclip/reference.safetensors").dictionary
    let feeds = [("image", ref["pixel_values"]!), ("input_ids", ref["input_ids"]!), ("attention_mask", try Tensor.ones(ref["input_ids"]!.shape, dtype: .int64))]
    let (out, _) = try runOnnxRuntime(dir + "/export/clip_model.onnx", feeds)
    let mine = try ONNXExecutor(path: dir + "/export/clip_model.onnx").run(Dictionary(uniqueKeysWithValues: feeds))
    for (k, want) in [("image_embedding", ref["image_features"]!), ("text_embedding", ref["text_features"]!)] {
      #expect(try maxAbsDiff(out[k]!, try want.l2Normalized()) < 1e-4, "\(k) onnxruntime")
      #expect(try maxAbsDiff(mine[k]!, try want.l2Normalized()) < 1e-4, "\(k) executor")
    }
    // The BERT tokenizer folder travels with the export.
    #expect(FileManager.default.fileExists(atPath: dir + "/export/clip_model_tokenizer/tokenizer.json"))
    // Another resolution: the position table is resized in the graph as TAO's wrapper does.
    let other = try clipkit(["export", "-e", dir + "/spec.yaml", "export.input_height=84", "export.input_width=84",
                             "export.encoder_type=separate", "export.onnx_file=\(dir)/big/m.onnx"])
    #expect(other.code == 0, "\(other.err)")
    let (big, sig) = try runOnnxRuntime(dir + "/big/m_vision.onnx", [("image", ref["pixel_values_large"]!)])
    #expect(sig.contains(#"["image", "tensor(float)", ["batch_size", 3, 84, 84]]"#), "\(sig)")
    #expect(try maxAbsDiff(big["image_embedding"]!, try ref["image_features_large"]!.l2Normalized()) < 1e-4)
    let odd = try clipkit(["export", "-e", dir + "/spec.yaml", "export.input_height=60", "export.input_width=70", "export.onnx_file=\(dir)/x.onnx"])
    #expect(odd.code != 0 && odd.err.contains("square"), "\(odd.err)")
  }

  @Test(.enabled(if: ortPython != nil || ortRequired))
  func openAILayoutGraphCausalArgmax() throws {
    // The causal mask and the argmax pooling, written by ClipKit, run by onnxruntime and ClipKit.
    let dir = fixtures + "/tiny_openai_clip"
    let ref = try Safetensors.read(dir + "/reference.safetensors").dictionary
    let model = try OpenCLIPModel(try OpenCLIPFamily.config(dir), initialize: .empty)
    try model.load(stateDict: try OpenCLIPFamily.weights(in: dir), assign: true, source: dir)
    let adapter = try OpenCLIPAdapter(model)
    adapter.eval()
    let g = ONNXGraph(name: "openai", opset: 17)
    try noGrad {
      let pixels = g.input("image", .float, [.symbolic("batch_size"), .fixed(3), .fixed(32), .fixed(32)])
      g.output(try adapter.onnxImageEmbedding(g, pixels: pixels, height: 32, width: 32), as: "image_embedding", .float, [.symbolic("batch_size"), .fixed(24)])
      let ids = g.input("input_ids", .int64, [.symbolic("batch_size"), .fixed(12)])
      g.output(try adapter.onnxTextEmbedding(g, ids: ids, mask: nil, length: 12), as: "text_embedding", .float, [.symbolic("batch_size"), .fixed(24)])
    }
    let path = NSTemporaryDirectory() + "openai-\(UUID().uuidString).onnx"
    try g.write(to: path, producerVersion: "test")
    let feeds = [("image", ref["pixel_values"]!), ("input_ids", ref["input_ids"]!)]
    let (out, _) = try runOnnxRuntime(path, feeds)
    let mine = try ONNXExecutor(path: path).run(Dictionary(uniqueKeysWithValues: feeds))
    for (k, want) in [("image_embedding", ref["image_features"]!), ("text_embedding", ref["text_features"]!)] {
      #expect(try maxAbsDiff(out[k]!, try want.l2Normalized()) < 1e-4, "\(k) onnxruntime")
      #expect(try maxAbsDiff(mine[k]!, try want.l2Normalized()) < 1e-4, "\(k) executor")
    }
  }
}

/// A LoRA checkpoint (vision r 4 on both blocks, text r 2 on q/v of the last block) exported: the
/// ONNX graph is the plain model with the adapters merged, equal on onnxruntime to the eager
/// un-merged model; `export.adapter_dir` holds the adapters alone in peft's layout. (Loading that
/// folder with peft.PeftModel.from_pretrained onto transformers' SiglipModel is checked by
/// tools/check_peft_adapter.py, which needs torch + peft: 1.5e-7 from the merged graph.)
@Suite struct LoRAExport {
  @Test(.enabled(if: ortPython != nil || ortRequired)) func mergedGraphAndPeftAdapter() throws {
    let fixtures = repoRoot + "/Tests/ModelTests/Fixtures"
    let dir = NSTemporaryDirectory() + "clipkit-lora-export-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try """
      results_dir: \(dir)/results
      model: {type: siglip2-so400m-patch16-256, pretrained_dir: \(fixtures)/tiny_siglip}
      train:
        num_epochs: 3
        checkpoint_interval: 3
        precision: fp32
        optim: {vision_lr: 1.0e-2, text_lr: 1.0e-2, warmup_steps: 1}
      dataset:
        train:
          datasets:
            - image_dir: \(fixtures)/images
          batch_size: 4
      peft:
        enabled: true
        vision: {mode: lora, rank: 4, alpha: 8, num_last_blocks: 2}
        text: {mode: lora, rank: 2, alpha: 4, num_last_blocks: 1, target_modules: [q_proj, v_proj]}
      export:
        checkpoint: \(dir)/results/train/epoch_3.pth
        onnx_file: \(dir)/export/m.onnx
        input_height: 32
        input_width: 32
        adapter_dir: \(dir)/adapter
      """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    for action in ["train", "export"] {
      let r = try clipkit([action, "-e", dir + "/spec.yaml"])
      #expect(r.code == 0, "\(action): \(r.err)")
    }
    // The eager model: the spec's adapters rebuilt, the checkpoint loaded, not merged.
    let bundle = try ModelRegistry.load(ModelLoadOptions(type: "x", pretrainedDir: fixtures + "/tiny_siglip", weightsFromCheckpoint: true))
    try injectPEFT(bundle.encoder, try Spec.load(file: dir + "/spec.yaml").config().peft, quiet: true)
    try ModelRegistry.loadCheckpoint(dir + "/results/train/epoch_3.pth", into: bundle)
    let ref = try Safetensors.read(fixtures + "/tiny_siglip/reference.safetensors").dictionary
    let (px, ids) = (ref["pixel_values"]!, ref["input_ids"]!)
    let (img, txt) = try noGrad { (try bundle.encoder.encodeImages(px), try bundle.encoder.encodeTexts(ids, attentionMask: nil)) }
    let (o, _) = try runOnnxRuntime(dir + "/export/m.onnx", [("image", px), ("input_ids", ids), ("attention_mask", try Tensor.ones(ids.shape, dtype: .int64))])
    #expect(try maxAbsDiff(o["image_embedding"]!, img) < 1e-4 && maxAbsDiff(o["text_embedding"]!, txt) < 1e-4)
    let plain = try ModelRegistry.load(ModelLoadOptions(type: "x", pretrainedDir: fixtures + "/tiny_siglip"))
    #expect(try maxAbsDiff(noGrad { try plain.encoder.encodeImages(px) }, img) > 1e-3, "the adapters changed the model")
    // peft's layout: 10 adapted modules, A rank×in and B out×rank, one regex of exactly them.
    let adapter = try Safetensors.read(dir + "/adapter/adapter_model.safetensors").dictionary
    #expect(adapter.count == 20)
    #expect(adapter["base_model.model.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"]?.shape == [4, 64])
    #expect(adapter["base_model.model.text_model.encoder.layers.1.self_attn.v_proj.lora_B.weight"]?.shape == [64, 2])
    #expect(adapter["base_model.model.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"] == nil)
    let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/adapter/adapter_config.json"))) as! [String: Any]
    #expect(cfg["peft_type"] as? String == "LORA" && (cfg["target_modules"] as? String)?.hasPrefix("^(?:") == true)
    let ranks = (cfg["rank_pattern"] as? [String: Int] ?? [:]).values.sorted() + [cfg["r"] as! Int]
    #expect(Set(ranks) == [2, 4])

    // TAO's older LoRA checkpoints (no `scaling`) and ones carrying its teacher load the same model.
    var tensors = try PyTorchCheckpoint.read(dir + "/results/train/epoch_3.pth").tensors.filter { !$0.key.hasSuffix(".scaling") }
    tensors["preservation_loss.teacher.backbone.inner.logit_scale"] = try Tensor.zeros([1])
    let legacy = dir + "/legacy.safetensors"
    try Safetensors.write(tensors.sorted { $0.key < $1.key }, to: legacy)
    let again = try ModelRegistry.load(ModelLoadOptions(type: "x", pretrainedDir: fixtures + "/tiny_siglip", weightsFromCheckpoint: true))
    try injectPEFT(again.encoder, try Spec.load(file: dir + "/spec.yaml").config().peft, quiet: true)
    try ModelRegistry.loadCheckpoint(legacy, into: again)
    // Same weights; the two forwards may run with different intra-op thread counts (tests run side
    // by side), so reductions can differ in their last bits.
    #expect(try maxAbsDiff(noGrad { try again.encoder.encodeImages(px) }, img) <= 1e-6)
  }
}
