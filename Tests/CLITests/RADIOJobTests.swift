import Foundation
@testable import Jobs
import Models
import Spec
import Retrieval
import Testing
import Torch

/// The seeds' RADIO-CLIP example spec (c-radio_v3-h, siglip adaptor, fp16, custom folders,
/// combined export at 224×224), paths changed, run as a user runs it: weights from the torch.hub
/// and Hugging Face caches (the tiny fixtures made with NVlabs/RADIO's code).
@Suite(.serialized) struct RADIOCLIPJobs {
  static let radio = repoRoot + "/Tests/ModelTests/Fixtures/radio"

  /// TORCH_HOME and HF_HUB_CACHE pointing at copies of the fixture caches (the DFN snapshot with
  /// open_clip's vocabulary beside it).
  func caches(_ dir: String) throws -> [String: String] {
    let fm = FileManager.default
    try fm.copyItem(atPath: Self.radio + "/torch_home", toPath: dir + "/torch")
    try fm.copyItem(atPath: Self.radio + "/hf_cache", toPath: dir + "/hf")
    let dfn = dir + "/hf/hub/models--apple--DFN5B-CLIP-ViT-H-14-378/snapshots"
    try fm.copyItem(atPath: repoRoot + "/Tests/TokenizerTests/Fixtures/bpe_simple_vocab_16e6.txt.gz",
                    toPath: dfn + "/" + (try fm.contentsOfDirectory(atPath: dfn))[0] + "/bpe_simple_vocab_16e6.txt.gz")
    return ["TORCH_HOME": dir + "/torch", "HF_HUB_CACHE": dir + "/hf/hub", "CLIPKIT_DEVICE": "cpu"]
  }

  /// images/ and captions/ (TAO's custom layout) from the model fixtures' test images.
  func data(_ dir: String) throws {
    let fm = FileManager.default
    let src = repoRoot + "/Tests/ModelTests/Fixtures/images"
    for sub in ["images", "captions"] { try fm.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true) }
    let images = try fm.contentsOfDirectory(atPath: src).filter { ["png", "jpg"].contains(($0 as NSString).pathExtension) }.sorted()
    for (i, f) in images.enumerated() {
      try fm.copyItem(atPath: src + "/" + f, toPath: dir + "/images/" + f)
      try "a picture number \(i), \(f)".write(toFile: dir + "/captions/" + (f as NSString).deletingPathExtension + ".txt", atomically: true, encoding: .utf8)
    }
    try "a red car\na photo of a cat\n".write(toFile: dir + "/prompts.txt", atomically: true, encoding: .utf8)
  }

  func spec(_ dir: String, adaptor: String = "siglip") -> String {
    """
    results_dir: \(dir)/results/clip_experiment
    model:
      type: c-radio_v3-\(adaptor == "clip" ? "l" : "h")
      adaptor_name: \(adaptor)
      freeze_vision_encoder: false
      freeze_text_encoder: false
      canonicalize_text: false
    train:
      num_epochs: 2
      num_gpus: 1
      num_nodes: 1
      checkpoint_interval: 1
      resume_training_checkpoint_path: null
      pretrained_model_path: null
      loss_type: siglip
      precision: fp16
      grad_checkpointing: false
      grad_clip_norm: null
      distributed_strategy: ddp
      validation_interval: 1
      val_check_interval: null
      optim:
        optimizer_type: adamw
        vision_lr: 1.0e-4
        text_lr: 1.0e-4
        weight_decay: 1.0e-4
        betas: [0.9, 0.95]
        eps: 1.0e-6
        warmup_steps: 100
        scheduler: cosine
    dataset:
      seed: 42
      train:
        type: custom
        datasets:
          - image_dir: \(dir)/images
            caption_dir: \(dir)/captions
            caption_file_suffix: .txt
            image_list_file: null
        batch_size: 2
        num_workers: 2
      val:
        datasets:
          - image_dir: \(dir)/images
            caption_dir: \(dir)/captions
        batch_size: 2
        num_workers: 2
      augmentation:
        scale: [0.4, 1.0]
        color_jitter: [0.8, 0.32, 0.32, 0.32, 0.08]
        grayscale: 0.2
    evaluate:
      checkpoint: \(dir)/results/clip_experiment/train/epoch_2.pth
      batch_size: 2
    inference:
      checkpoint: \(dir)/results/clip_experiment/train/epoch_2.pth
      datasets:
        - image_dir: \(dir)/images
      text_file: \(dir)/prompts.txt
      batch_size: 2
    export:
      checkpoint: \(dir)/results/clip_experiment/train/epoch_2.pth
      onnx_file: \(dir)/results/clip_experiment/export/clip_model.onnx
      encoder_type: combined
      input_height: 224
      input_width: 224
      batch_size: -1
      opset_version: 17
    """
  }

  func json(_ path: String) throws -> [String: Double] {
    let o = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    return o.compactMapValues { ($0 as? NSNumber)?.doubleValue }
  }

  @Test(arguments: ["siglip", "clip"]) func trainEvaluateInferExportDeploy(adaptor: String) throws {
    let dir = NSTemporaryDirectory() + "clipkit-radio-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let env = try caches(dir)
    try data(dir)
    try spec(dir, adaptor: adaptor).write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    let out = dir + "/results/clip_experiment"
    for action in ["train", "evaluate", "inference", "export"] {
      let r = try clipkit([action, "-e", dir + "/spec.yaml"], env: env)
      #expect(r.code == 0, "\(adaptor) \(action): \(r.err)")
    }
    for f in ["train/epoch_1.pth", "train/epoch_2.pth", "evaluate/results.json", "inference/image_embeddings.h5", "inference/text_embeddings.h5",
              "export/clip_model.onnx", "export/clip_model_config.yaml"] {
      #expect(FileManager.default.fileExists(atPath: out + "/" + f), "\(adaptor): \(f)")
    }
    // The TAO layout: the adaptor under radio_model.adaptors.<name> and again under adaptor.
    let keys = try PyTorchCheckpoint.read(out + "/train/epoch_2.pth").tensors.keys
    let teacher = adaptor == "clip" ? "clip" : "siglip2-g"
    #expect(keys.contains("model.adaptor.head_mlp.fc1.weight") && keys.contains("model.radio_model.adaptors.\(teacher).head_mlp.fc1.weight"))

    // The exported graph on onnxruntime equals the eager model with the same checkpoint, at batch 1 and 7.
    guard ortPython != nil || ortRequired else { return }
    setenv("HF_HUB_CACHE", env["HF_HUB_CACHE"]!, 1)
    setenv("TORCH_HOME", env["TORCH_HOME"]!, 1)
    let bundle = try ModelRegistry.load(ModelLoadOptions(type: "c-radio_v3-\(adaptor == "clip" ? "l" : "h")", adaptorName: adaptor, weightsFromCheckpoint: true))
    try ModelRegistry.loadCheckpoint(out + "/train/epoch_2.pth", into: bundle)
    let pixels = try Tensor.randn([7, 3, 224, 224], generator: try Generator(seed: 5))
    let enc = try bundle.tokenize(["a red car", "two dogs", "a photo of a cat on a sofa", "x", "a b c d e f", "night", "the end"])
    let ids = try Tensor(enc.ids.flatMap { $0.map(Int64.init) }, shape: [7, enc.ids[0].count])
    let (wantImg, wantTxt) = try noGrad { (try bundle.encoder.encodeImages(pixels), try bundle.encoder.encodeTexts(ids, attentionMask: nil)) }
    for n in [1, 7] {
      let (o, _) = try runOnnxRuntime(out + "/export/clip_model.onnx", [
        ("image", try pixels.narrow(dim: 0, start: 0, length: n)), ("input_ids", try ids.narrow(dim: 0, start: 0, length: n)),
        ("attention_mask", try Tensor([Int64](repeating: 1, count: n * enc.ids[0].count), shape: [n, enc.ids[0].count]))])
      #expect(try maxAbsDiff(o["image_embedding"]!, try wantImg.narrow(dim: 0, start: 0, length: n)) < 1e-4, "\(adaptor) image, batch \(n)")
      #expect(try maxAbsDiff(o["text_embedding"]!, try wantTxt.narrow(dim: 0, start: 0, length: n)) < 1e-4, "\(adaptor) text, batch \(n)")
    }
    // deploy evaluate on the exported graph gives evaluate's metrics, both at the export's 224 px
    // (the spec evaluates at TAO's default model.image_size, 256).
    #expect(try clipkit(["evaluate", "-e", dir + "/spec.yaml", "model.image_size=224"], env: env).code == 0)
    let want = try json(out + "/evaluate/results.json")
    let deployed = try clipkit(["deploy", "evaluate", "-e", dir + "/spec.yaml", "evaluate.trt_engine=\(out)/export/clip_model.onnx",
                                "export.input_height=224"], env: env)
    #expect(deployed.code == 0, "\(deployed.err)")
    let got = try json(out + "/evaluate/results.json")
    #expect(want.count >= 14 && Set(want.keys) == Set(got.keys))
    for (k, v) in want { #expect(abs(got[k]! - v) <= 1e-3, "\(adaptor) \(k): deployed \(got[k]!) vs eager \(v)") }
  }

  /// TAO's recipe on c-radio_v3-h (siglip adaptor, the ViT in train mode: CPE crops and positional
  /// dropout from the seeded generator) against the same 20 steps in PyTorch with RADIO's own model
  /// (tools/fixtures/radio_train_reference.py); then kill -9 after epoch 8 and resume: the run
  /// continues with the uninterrupted losses (the generator's state travels in the checkpoint).
  @Test func first20StepsMatchPyTorchAndResumeExactly() throws {
    let dir = NSTemporaryDirectory() + "clipkit-radio-train-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let env = try caches(dir).merging(["CLIPKIT_LOG_LOSS": "1"]) { a, _ in a }
    let images = repoRoot + "/Tests/ModelTests/Fixtures/images"
    func spec(_ name: String) throws -> String {
      try """
        results_dir: \(dir)/\(name)
        model: {type: c-radio_v3-h, adaptor_name: siglip, image_size: 64}
        train:
          num_epochs: 20
          seed: 1234
          precision: fp32
          checkpoint_interval: 1
          optim: {vision_lr: 1.0e-3, text_lr: 2.0e-3, weight_decay: 0.05, betas: [0.9, 0.95], eps: 1.0e-6, warmup_steps: 5, scheduler: cosine}
        dataset:
          seed: 1234
          train:
            datasets:
              - image_dir: \(images)
            batch_size: 4
          augmentation: {scale: [1.0, 1.0], color_jitter: [], grayscale: 0.0}
        """.write(toFile: dir + "/\(name).yaml", atomically: true, encoding: .utf8)
      return dir + "/\(name).yaml"
    }
    func losses(_ out: String) -> [Double] {
      out.split(separator: "\n").compactMap { l in
        let p = l.split(separator: " ")
        return p.count >= 4 && p[0] == "step" && p[2] == "loss" ? Double(p[3]) : nil
      }
    }
    let ref = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.radio + "/train_reference.json"))) as! [String: Any]
    let expected = (ref["losses"] as! [NSNumber]).map(\.doubleValue)
    let full = try clipkit(["train", "-e", try spec("full")], env: env)
    #expect(full.code == 0, "\(full.err)")
    let got = losses(full.out)
    #expect(got.count == 20 && expected.count == 20)
    for (i, (g, e)) in zip(got, expected).enumerated() { #expect(abs(g - e) <= 1e-4 * abs(e), "step \(i + 1): \(g) vs PyTorch \(e)") }

    let s = try spec("killed")
    let killed = try clipkit(["train", "-e", s], env: env.merging(["CLIPKIT_CRASH_AFTER_EPOCH": "8"]) { _, n in n })
    #expect(killed.code == 137 && losses(killed.out).count == 8)
    let resumed = try clipkit(["train", "-e", s], env: env)
    #expect(resumed.code == 0 && resumed.out.contains("Resumed from"), "\(resumed.err)")
    let rest = losses(resumed.out)
    #expect(rest.count == 12)
    for (g, e) in zip(rest, got.suffix(12)) { #expect(abs(g - e) <= 1e-6 * max(1, abs(e)), "resumed \(g) vs uninterrupted \(e)") }
  }

  /// LoRA on RADIO's attention leaves (`qkv`, `proj`) of every ViT block, text frozen: it trains,
  /// and the merged export equals the eager LoRA model on onnxruntime.
  @Test func loraOnTheViT() throws {
    let dir = NSTemporaryDirectory() + "clipkit-radio-lora-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let env = try caches(dir)
    try data(dir)
    try spec(dir).write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    let peft = ["peft.enabled=true", "peft.vision.mode=lora", "peft.vision.target_modules=[qkv,proj]", "peft.vision.num_last_blocks=0",
                "train.precision=fp32", "train.optim.vision_lr=1.0e-2", "train.optim.warmup_steps=1", "model.image_size=64",
                "export.input_height=64", "export.input_width=64"]
    let r = try clipkit(["train", "-e", dir + "/spec.yaml"] + peft, env: env)
    #expect(r.code == 0 && r.out.contains("4 LoRA modules adapted"), "\(r.err) \(r.out)")
    let keys = try PyTorchCheckpoint.read(dir + "/results/clip_experiment/train/epoch_2.pth").tensors.keys
    #expect(keys.contains("model.radio_model.model.blocks.1.attn.qkv.lora_A") && keys.contains("model.radio_model.model.blocks.1.attn.qkv.original.weight"))
    let e = try clipkit(["export", "-e", dir + "/spec.yaml"] + peft, env: env)
    #expect(e.code == 0, "\(e.err)")
    guard ortPython != nil || ortRequired else { return }
    setenv("HF_HUB_CACHE", env["HF_HUB_CACHE"]!, 1)
    setenv("TORCH_HOME", env["TORCH_HOME"]!, 1)
    let bundle = try ModelRegistry.load(ModelLoadOptions(type: "c-radio_v3-h", adaptorName: "siglip", weightsFromCheckpoint: true, imageSize: 64))
    try injectPEFT(bundle.encoder, try peft.reduce(try Spec.load(file: dir + "/spec.yaml")) { try $0.overriding($1) }.config().peft, quiet: true)
    try ModelRegistry.loadCheckpoint(dir + "/results/clip_experiment/train/epoch_2.pth", into: bundle)
    let px = try Tensor.randn([2, 3, 64, 64], generator: try Generator(seed: 3))
    let img = try noGrad { try bundle.encoder.encodeImages(px) }
    let ids = try Tensor([Int64](repeating: 5, count: 128), shape: [2, 64])
    let (o, _) = try runOnnxRuntime(dir + "/results/clip_experiment/export/clip_model.onnx",
                                    [("image", px), ("input_ids", ids), ("attention_mask", try Tensor.ones([2, 64], dtype: .int64))])
    #expect(try maxAbsDiff(o["image_embedding"]!, img) < 1e-4)
  }
}
