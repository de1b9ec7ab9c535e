import Export
import Foundation
import Retrieval
import Testing
import Torch

/// The repository checkout (tests run from it).
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

@Suite struct InferenceAndEvaluateWithATinySiglip {
  let model = repoRoot + "/Tests/ModelTests/Fixtures/tiny_siglip"
  let images = repoRoot + "/Tests/ModelTests/Fixtures/images"

  func workspace() throws -> (dir: String, spec: String) {
    let dir = NSTemporaryDirectory() + "clipkit-e2e-\(UUID().uuidString)"
    let data = dir + "/pairs"
    try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
    let names = try FileManager.default.contentsOfDirectory(atPath: images).filter { !$0.hasSuffix(".txt") }.sorted()
    for (i, n) in names.enumerated() {
      try FileManager.default.copyItem(atPath: images + "/" + n, toPath: data + "/" + n)
      try "caption number \(i) for \(n)".write(toFile: data + "/" + (n as NSString).deletingPathExtension + ".txt", atomically: true, encoding: .utf8)
    }
    try "a photo of a cat\nA Red Car on the highway.\n\n".write(toFile: dir + "/prompts.txt", atomically: true, encoding: .utf8)
    let spec = """
      results_dir: \(dir)/results
      model:
        type: siglip2-so400m-patch16-256
        pretrained_dir: \(model)
      dataset:
        val:
          datasets:
            - image_dir: \(data)
      inference:
        datasets:
          - image_dir: \(data)
        text_file: \(dir)/prompts.txt
        batch_size: 4
      evaluate:
        batch_size: 3
      """
    try spec.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    return (dir, dir + "/spec.yaml")
  }

  @Test func inferenceWritesTransformersEmbeddings() throws {
    let (dir, spec) = try workspace()
    let r = try clipkit(["inference", "-e", spec])
    #expect(r.code == 0, "\(r.err)")
    let (img, count, type) = try EmbeddingFile.read(dir + "/results/inference/image_embeddings.h5", kind: .image)
    #expect(count == 6 && type == "image" && img.dimension == 64)
    // Compare with transformers' features for the same files (reference order: inputs.json).
    let ref = try Safetensors.read(model + "/reference.safetensors").dictionary
    let expected = try ref["image_features"]!.l2Normalized().floats()
    let order = ["photo_420.jpg", "rgba.png", "lossy.webp", "gray.jpg", "cmyk.jpg", "palette8.bmp"]
    for (i, name) in order.enumerated() {
      guard let row = img.labels.firstIndex(where: { $0.hasSuffix("/" + name) }) else { Issue.record("\(name) missing"); continue }
      let got = Array(img.embeddings[(row * 64)..<((row + 1) * 64)])
      let want = Array(expected[(i * 64)..<((i + 1) * 64)])
      let maxd = zip(got, want).map { abs($0 - $1) }.max()!
      #expect(maxd < 1e-4, "\(name): max |diff| \(maxd)")
    }
    let (txt, n, _) = try EmbeddingFile.read(dir + "/results/inference/text_embeddings.h5", kind: .text)
    #expect(n == 2 && txt.labels == ["a photo of a cat", "A Red Car on the highway."])
    let tref = try ref["text_features"]!.l2Normalized().floats()
    #expect(zip(txt.embeddings, tref.prefix(128)).map { abs($0 - $1) }.max()! < 1e-4)
  }

  @Test func evaluatePrintsAndWritesMetrics() throws {
    let (dir, spec) = try workspace()
    let r = try clipkit(["evaluate", "-e", spec])
    #expect(r.code == 0, "\(r.err)")
    #expect(r.out.contains("Image-to-Text: R@1=") && r.out.contains("Text-to-Image: R@1="))
    let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/results/evaluate/results.json"))) as! [String: Any]
    // The custom layout takes .jpg .jpeg .png .webp (TAO's list plus WebP): the .bmp is not a pair.
    #expect(json["num_images"] as? Int == 5 && json["num_texts"] as? Int == 5)
    for k in ["R@1", "R@5", "R@10", "mAP", "MedR", "MeanR", "AUC"] {
      #expect(json["i2t_\(k)"] != nil && json["t2i_\(k)"] != nil, "\(k)")
    }
    #expect(json["i2t_R@10"] as? Double == 1.0)  // 5 items: everything is within the top 10
    let status = try String(contentsOfFile: dir + "/results/evaluate/status.json", encoding: .utf8)
    #expect(status.contains("\"SUCCESS\"") && status.contains("i2t_R@1"))
  }

  /// Every image unreadable: a clear error, not a crash in the metrics; GPU placement keys that ask
  /// for more than this build does are refused by name; adaptor_name is noted, not ignored.
  @Test func unreadableImagesAndPlacementKeysAreClearErrors() throws {
    let (dir, spec) = try workspace()
    for f in try FileManager.default.contentsOfDirectory(atPath: dir + "/pairs") where !f.hasSuffix(".txt") {
      try Data("not an image".utf8).write(to: URL(fileURLWithPath: dir + "/pairs/" + f))
    }
    let r = try clipkit(["evaluate", "-e", spec])
    #expect(r.code != 0 && r.err.contains("could be read: nothing to evaluate"), "\(r.err)")
    let gpus = try clipkit(["inference", "-e", spec, "inference.num_gpus=2"])
    #expect(gpus.code != 0 && gpus.err.contains("inference.num_gpus=2"), "\(gpus.err)")
    let ids = try clipkit(["evaluate", "-e", spec, "evaluate.gpu_ids=[0,1]"])
    #expect(ids.code != 0 && ids.err.contains("evaluate.gpu_ids=[0, 1]"), "\(ids.err)")
    let none = try clipkit(["evaluate", "-e", spec, "evaluate.gpu_ids=[]"])
    #expect(none.code != 0 && none.err.contains("evaluate.gpu_ids is empty"), "\(none.err)")
    if case .failure = CUDA.driverGPUs() {
      // No GPU here: TAO's default placement runs on CPU and says so; insisting on one is an error.
      let forced = try clipkit(["inference", "-e", spec], env: ["CLIPKIT_DEVICE": "cuda:0"])
      #expect(forced.code != 0 && forced.err.contains("CLIPKIT_DEVICE asks for a GPU but there is none"), "\(forced.err)")
      let bad = try clipkit(["inference", "-e", spec], env: ["CLIPKIT_DEVICE": "tpu"])
      #expect(bad.code != 0 && bad.err.contains("CLIPKIT_DEVICE=tpu"), "\(bad.err)")
    }
    let text = try clipkit(["evaluate", "-e", spec, "evaluate.text_file=\(dir)/prompts.txt"])
    #expect(text.code != 0 && text.err.contains("'evaluate.text_file'"), "\(text.err)")
    let adaptor = try clipkit(["inference", "-e", spec, "model.adaptor_name=clip", "inference.datasets=[]"])
    #expect(adaptor.code == 0 && adaptor.out.contains("model.adaptor_name=clip is read by RADIO-CLIP models only"), "\(adaptor.err)")
    if case .failure = CUDA.driverGPUs() { #expect(adaptor.out.contains("No GPU found") && adaptor.out.contains("running on CPU"), "\(adaptor.out)") }
  }

  @Test func missingWeightsSayWhereItLooked() throws {
    let (_, spec) = try workspace()
    let r = try clipkit(["evaluate", "-e", spec, "model.pretrained_dir=null", "model.type=siglip2-so400m-patch16-384"])
    #expect(r.code != 0)
    #expect(r.err.contains("google/siglip2-so400m-patch16-384") && r.err.contains("model.pretrained_dir") && r.err.contains("looked in"))
    let bad = try clipkit(["inference", "-e", spec, "inference.checkpoint=/nonexistent.pth"])
    #expect(bad.code != 0 && bad.err.contains("/nonexistent.pth"))
  }
}

@Suite struct HubCacheLookup {
  @Test func modelTypeResolvesThroughTheHubCache() throws {
    let cache = NSTemporaryDirectory() + "hf-cache-\(UUID().uuidString)"
    let snapshot = cache + "/models--google--siglip2-so400m-patch16-384/snapshots/abc123"
    try FileManager.default.createDirectory(atPath: snapshot, withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: cache + "/models--google--siglip2-so400m-patch16-384/refs", withIntermediateDirectories: true)
    try "abc123".write(toFile: cache + "/models--google--siglip2-so400m-patch16-384/refs/main", atomically: true, encoding: .utf8)
    let model = repoRoot + "/Tests/ModelTests/Fixtures/tiny_siglip"
    for f in try FileManager.default.contentsOfDirectory(atPath: model) {
      try FileManager.default.copyItem(atPath: model + "/" + f, toPath: snapshot + "/" + f)
    }
    let dir = NSTemporaryDirectory() + "hf-spec-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try "a cat\n".write(toFile: dir + "/p.txt", atomically: true, encoding: .utf8)
    try "results_dir: \(dir)/r\nmodel:\n  type: siglip2-so400m-patch16-384\ninference:\n  text_file: \(dir)/p.txt\n"
      .write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    let r = try clipkit(["inference", "-e", dir + "/spec.yaml"], env: ["HF_HUB_CACHE": cache])
    #expect(r.code == 0, "\(r.err)")
    #expect(r.out.contains(snapshot))
  }
}

@Suite struct NaFlexEndToEnd {
  @Test func inferenceEvaluateAndTrainWithNaFlex() throws {
    let model = repoRoot + "/Tests/ModelTests/Fixtures/tiny_siglip2_naflex"
    let images = repoRoot + "/Tests/ModelTests/Fixtures/images"
    let dir = NSTemporaryDirectory() + "clipkit-naflex-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try """
      results_dir: \(dir)/results
      model:
        type: siglip2-so400m-patch16-naflex
        pretrained_dir: \(model)
      train:
        num_epochs: 1
        precision: fp32
      dataset:
        train:
          datasets:
            - image_dir: \(images)
          batch_size: 2
        val:
          datasets:
            - image_dir: \(images)
      inference:
        datasets:
          - image_dir: \(images)
      """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    let inf = try clipkit(["inference", "-e", dir + "/spec.yaml"])
    #expect(inf.code == 0, "\(inf.err)")
    let (img, _, _) = try EmbeddingFile.read(dir + "/results/inference/image_embeddings.h5", kind: .image)
    let ref = try Safetensors.read(model + "/reference.safetensors").dictionary
    let expected = try ref["image_features"]!.l2Normalized().floats()
    let order = ["photo_420.jpg", "rgba.png", "lossy.webp", "gray.jpg", "cmyk.jpg", "palette8.bmp"]
    let d = img.dimension
    for (i, name) in order.enumerated() {
      guard let row = img.labels.firstIndex(where: { $0.hasSuffix("/" + name) }) else { Issue.record("\(name) missing"); continue }
      let got = Array(img.embeddings[(row * d)..<((row + 1) * d)]), want = Array(expected[(i * d)..<((i + 1) * d)])
      #expect(zip(got, want).map { abs($0 - $1) }.max()! < 1e-4, "\(name)")
    }
    let ev = try clipkit(["evaluate", "-e", dir + "/spec.yaml"])
    #expect(ev.code == 0 && ev.out.contains("Image-to-Text: R@1="), "\(ev.err)")
    let tr = try clipkit(["train", "-e", dir + "/spec.yaml"])
    #expect(tr.code == 0, "\(tr.err)")
    #expect(tr.out.contains("SigLIP models train on their processor's preprocessing, as in TAO"), "\(tr.out)")
  }
}

@Suite struct GenTrtEngine {
  func spec() throws -> (String, String) {
    let dir = NSTemporaryDirectory() + "trt-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir + "/export/clip_model_tokenizer", withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: repoRoot + "/Tests/DeployTests/Fixtures/dynamic_batch.onnx", toPath: dir + "/export/clip_model.onnx")
    try "model: {}\n".write(toFile: dir + "/export/clip_model_config.yaml", atomically: true, encoding: .utf8)
    try """
      results_dir: \(dir)/results
      gen_trt_engine:
        onnx_file: \(dir)/export/clip_model.onnx
        trt_engine: \(dir)/deploy/clip_model.engine
        tensorrt:
          data_type: fp16
          min_batch_size: 1
          opt_batch_size: 4
          max_batch_size: 8
      """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    return (dir, dir + "/spec.yaml")
  }

  @Test func withoutTensorRTSaysSoInOneLine() throws {
    let (_, s) = try spec()
    let r = try clipkit(["gen_trt_engine", "-e", s], env: ["PATH": "/usr/bin:/bin", "CLIPKIT_TRTEXEC": ""])
    if FileManager.default.fileExists(atPath: "/usr/src/tensorrt/bin/trtexec") { return }
    #expect(r.code != 0)
    #expect(r.err.contains("TensorRT was not found") && r.err.contains("CLIPKIT_TRTEXEC") && r.err.contains("pip install tensorrt"))
    #expect(r.err.split(separator: "\n").count == 1)
  }

  /// A stand-in trtexec that records its arguments and writes the engine file; its --help lists
  /// --fp16 as TensorRT 10's does, or not, as TensorRT 11's.
  func standIn(_ dir: String, tensorRT10: Bool) throws -> String {
    let fake = dir + "/trtexec"
    try """
      #!/bin/sh
      if [ "$1" = --help ]; then echo "  --onnx=<file>"; \(tensorRT10 ? "echo '  --fp16'" : "true"); exit 0; fi
      echo "$@" > \(dir)/trtexec.args
      for a in "$@"; do case "$a" in --saveEngine=*) echo engine > "${a#--saveEngine=}";; esac; done
      """.write(toFile: fake, atomically: true, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: fake)
    return fake
  }

  @Test func runsTrtexecWithOneProfileAndCopiesSidecars() throws {
    let (dir, s) = try spec()
    let r = try clipkit(["gen_trt_engine", "-e", s], env: ["CLIPKIT_TRTEXEC": try standIn(dir, tensorRT10: true)])
    #expect(r.code == 0, "\(r.err)")
    let args = try String(contentsOfFile: dir + "/trtexec.args", encoding: .utf8)
    #expect(args.contains("--optShapes=image:4x3x224x224,input_ids:4x64,attention_mask:4x64") && args.contains("--fp16"))
    #expect(FileManager.default.fileExists(atPath: dir + "/deploy/clip_model.engine"))
    #expect(FileManager.default.fileExists(atPath: dir + "/deploy/clip_model_config.yaml"))
    #expect(FileManager.default.fileExists(atPath: dir + "/deploy/clip_model_tokenizer"))
  }

  @Test func tensorRT11GetsATypedGraphInsteadOfPrecisionFlags() throws {
    let (dir, s) = try spec()
    // A real export (the profile fixture has no weights to convert).
    let export = try clipkit(["export", "-e", s, "model.type=siglip2-so400m-patch16-256", "model.pretrained_dir=\(repoRoot)/Tests/ModelTests/Fixtures/tiny_siglip",
                              "export.onnx_file=\(dir)/tiny/clip_model.onnx", "export.input_height=32", "export.input_width=32"])
    #expect(export.code == 0, "\(export.err)")
    let r = try clipkit(["gen_trt_engine", "-e", s, "gen_trt_engine.onnx_file=\(dir)/tiny/clip_model.onnx"],
                        env: ["CLIPKIT_TRTEXEC": try standIn(dir, tensorRT10: false)])
    #expect(r.code == 0, "\(r.err)")
    let args = try String(contentsOfFile: dir + "/trtexec.args", encoding: .utf8)
    let typed = dir + "/results/gen_trt_engine/clip_model_typed.onnx"
    #expect(args.contains("--onnx=\(typed)") && !args.contains("--fp16") && args.contains("--maxShapes=image:8x3x32x32"), "\(args)")
    #expect(r.out.contains("nodes in fp16"))
    // Converted graphs run: ClipKit's executor reads the fp16 weights.
    let f: [String: Tensor] = ["image": try Tensor.zeros([2, 3, 32, 32]), "input_ids": try Tensor.zeros([2, 16], dtype: .int64),
                               "attention_mask": try Tensor.ones([2, 16], dtype: .int64)]
    let got = try ONNXExecutor(path: typed).run(f)["image_embedding"]!, want = try ONNXExecutor(path: dir + "/tiny/clip_model.onnx").run(f)["image_embedding"]!
    #expect(try (got - want).abs().amax().item() < 2e-3)
    // An fp32 engine keeps the ONNX as it is.
    let fp32 = try clipkit(["gen_trt_engine", "-e", s, "gen_trt_engine.tensorrt.data_type=fp32", "gen_trt_engine.trt_engine=\(dir)/deploy/fp32.engine"],
                           env: ["CLIPKIT_TRTEXEC": try standIn(dir, tensorRT10: false)])
    #expect(fp32.code == 0, "\(fp32.err)")
    #expect(try String(contentsOfFile: dir + "/trtexec.args", encoding: .utf8).contains("--onnx=\(dir)/export/clip_model.onnx"))
  }
}
