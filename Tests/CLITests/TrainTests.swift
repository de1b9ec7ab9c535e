import Foundation
import Testing
import Torch

@Suite struct Training {
  let fixtures = repoRoot + "/Tests/ModelTests/Fixtures"

  func spec(_ results: String, epochs: Int, model: String = "type: siglip2-so400m-patch16-256\n  pretrained_dir: TINY/tiny_siglip") throws -> String {
    let dir = NSTemporaryDirectory() + "clipkit-train-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let text = """
      results_dir: \(results)
      model:
        \(model.replacingOccurrences(of: "TINY", with: fixtures))
      train:
        num_epochs: \(epochs)
        seed: 1234
        precision: fp32
        checkpoint_interval: 1
        optim:
          vision_lr: 1.0e-3
          text_lr: 2.0e-3
          weight_decay: 0.05
          betas: [0.9, 0.95]
          eps: 1.0e-6
          warmup_steps: 5
          scheduler: cosine
      dataset:
        seed: 1234
        train:
          datasets:
            - image_dir: \(fixtures)/images
          batch_size: 4
        augmentation:
          scale: [1.0, 1.0]
          color_jitter: []
          grayscale: 0.0
      """
    try text.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    return dir + "/spec.yaml"
  }

  func losses(_ out: String) -> [Double] {
    out.split(separator: "\n").compactMap { line in
      let p = line.split(separator: " ")
      return p.count >= 4 && p[0] == "step" && p[2] == "loss" ? Double(p[3]) : nil
    }
  }

  func run(_ args: [String], env: [String: String]) throws -> (Int32, String, String) {
    let r = try clipkit(args, env: env.merging(["CLIPKIT_LOG_LOSS": "1"]) { a, _ in a })
    return (r.code, r.out, r.err)
  }

  /// Reruns a killed run's command; it must continue with the uninterrupted run's last losses.
  @discardableResult
  func expectResumed(_ args: [String], continuing expected: ArraySlice<Double>) throws -> String {
    let (c, out, err) = try run(args, env: [:])
    #expect(c == 0, "\(err)")
    let resumed = losses(out)
    #expect(resumed.count == expected.count)
    for (g, e) in zip(resumed, expected) { #expect(abs(g - e) <= 1e-6 * max(1, abs(e)), "\(g) vs \(e)") }
    if zip(resumed, expected).contains(where: { abs($0 - $1) > 1e-6 * max(1, abs($1)) }) {
      // The resumed run's steps with their gradient norms, to tell a data, weight or draw difference apart.
      Issue.record("resumed run:\n\(out.split(separator: "\n").filter { $0.hasPrefix("step ") || $0.hasPrefix("Resumed") }.joined(separator: "\n"))")
    }
    return out
  }

  @Test func first20StepsMatchPyTorch() throws {
    let ref = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixtures + "/train_reference.json"))) as! [String: Any]
    let expected = (ref["losses"] as! [NSNumber]).map(\.doubleValue)
    let results = NSTemporaryDirectory() + "clipkit-train-\(UUID().uuidString)"
    let (code, out, err) = try run(["train", "-e", try spec(results, epochs: 20)], env: [:])
    #expect(code == 0, "\(err)")
    let got = losses(out)
    #expect(got.count == expected.count)
    for (i, (g, e)) in zip(got, expected).enumerated() {
      #expect(abs(g - e) <= 1e-4 * abs(e), "step \(i + 1): \(g) vs PyTorch \(e)")
    }
    // Every checkpoint loads as a PyTorch checkpoint with TAO's keys.
    for n in [1, 20] {
      let ck = try PyTorchCheckpoint.read(results + "/train/epoch_\(n).pth")
      let t = try ck.tensors
      #expect(t["model.logit_scale"] != nil && t["model.backbone.inner.vision_model.head.probe"] != nil)
    }
    let latest = try FileManager.default.destinationOfSymbolicLink(atPath: results + "/train/clip_latest.pth")
    #expect(latest == "epoch_20.pth")
    // A Lightning version TAO's loader knows (the layout written), and ClipKit named as the writer.
    let root = try PyTorchCheckpoint.read(results + "/train/epoch_20.pth").root.dictValue
    if case .string(let v)? = root?["pytorch-lightning_version"] { #expect(v == "2.6.1") } else { Issue.record("no pytorch-lightning_version") }
    if case .string(let w)? = root?["written_by"] { #expect(w.hasPrefix("ClipKit ")) } else { Issue.record("no written_by") }
  }

  /// TAO's LoRA recipe (vision `lora` on both blocks' q/k/v/out, r 4, alpha 8, dropout 0.05; text
  /// frozen; logit calibration trained) with drift regularisation against a frozen teacher: the
  /// first 20 losses equal PyTorch's (tools/fixtures/model_fixtures.py lora_train_reference);
  /// checkpoints keep TAO's LoRA layout and optimizer state for the trainable tensors only; kill -9
  /// and resume continue exactly.
  @Test func loraWithDriftRegularisationMatchesPyTorchAndResumes() throws {
    let ref = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixtures + "/lora_train_reference.json"))) as! [String: Any]
    let expected = (ref["losses"] as! [NSNumber]).map(\.doubleValue)
    let peft = ["peft.enabled=true", "peft.vision.mode=lora", "peft.vision.rank=4", "peft.vision.alpha=8", "peft.vision.num_last_blocks=2",
                "peft.text.mode=frozen", "regularization.enabled=true"]
    let results = NSTemporaryDirectory() + "clipkit-lora-\(UUID().uuidString)"
    let (code, out, err) = try run(["train", "-e", try spec(results, epochs: 20)] + peft, env: [:])
    #expect(code == 0, "\(err)")
    #expect(out.contains("8 LoRA modules adapted, 4098 / "), "\(out)")
    let got = losses(out)
    #expect(got.count == expected.count)
    for (i, (g, e)) in zip(got, expected).enumerated() { #expect(abs(g - e) <= 1e-4 * abs(e), "step \(i + 1): \(g) vs PyTorch \(e)") }
    let ck = try PyTorchCheckpoint.read(results + "/train/epoch_20.pth")
    let t = try ck.tensors
    let q = "model.backbone.inner.vision_model.encoder.layers.1.self_attn.q_proj."
    #expect(t[q + "original.weight"] != nil && t[q + "original.bias"] != nil && t[q + "lora_A"]?.shape == [4, 64] && t[q + "lora_B"]?.shape == [64, 4])
    #expect(try t[q + "scaling"]?.item() == 2 && t[q + "scaling"]?.shape == [])
    #expect(t["model.backbone.inner.text_model.encoder.layers.1.self_attn.q_proj.weight"] != nil)
    if case .list(let names)? = ck.root.dictValue?["clipkit_param_names"] { #expect(names.items.count == 18) } else { Issue.record("no param names") }

    let crashed = NSTemporaryDirectory() + "clipkit-lora-\(UUID().uuidString)"
    let s = try spec(crashed, epochs: 20)
    let (c2, _, _) = try run(["train", "-e", s] + peft, env: ["CLIPKIT_CRASH_AFTER_EPOCH": "7"])
    #expect(c2 == 137)
    try expectResumed(["train", "-e", s] + peft, continuing: got.suffix(13)[...])
    // evaluate rebuilds the adapters from the spec and loads the LoRA checkpoint.
    let ev = try run(["evaluate", "-e", s, "evaluate.checkpoint=\(crashed)/train/epoch_20.pth",
                      "evaluate.datasets=[{image_dir: \(fixtures)/images}]"] + peft, env: [:])
    #expect(ev.0 == 0, "\(ev.2)")
  }

  /// TAO's PEFT refusals, with its wording, before anything trains.
  @Test func peftRefusesWhatTAORefuses() throws {
    let results = NSTemporaryDirectory() + "clipkit-peft-\(UUID().uuidString)"
    let cases: [([String], String)] = [
      (["peft.vision.mode=lora", "peft.vision.target_modules=[qkv]", "peft.vision.num_last_blocks=2"],
       "target_modules ['qkv'] matched no nn.Linear modules. Available leaves: ['fc1', 'fc2', 'k_proj', 'out_proj', 'q_proj', 'v_proj']"),
      (["peft.vision.mode=lora"], "PEFT vision.num_last_blocks must be between 0 (all blocks) and 2, got 3."),
      (["peft.train_logit_calibration=false"], "PEFT is enabled but no tower parameters are trainable"),
      (["peft.text.mode=lora", "peft.text.enabled=false"], "PEFT text.mode='lora' conflicts with legacy text.enabled=False"),
    ]
    for (extra, fragment) in cases {
      let (code, _, err) = try run(["train", "-e", try spec(results, epochs: 1), "peft.enabled=true"] + extra, env: [:])
      #expect(code != 0 && err.contains(fragment), "\(extra): \(err)")
    }
    // open_clip towers use nn.MultiheadAttention: TAO refuses LoRA there.
    let model = "type: ViT-L-14-SigLIP-CLIPA-224\n  pretrained_dir: TINY/tiny_nvclip\n  image_size: 56"
    let (code, _, err) = try run(["train", "-e", try spec(results, epochs: 1, model: model), "peft.enabled=true", "peft.vision.mode=lora",
                                  "peft.vision.num_last_blocks=1"], env: [:])
    #expect(code != 0 && err.contains("not supported for nn.MultiheadAttention-based towers (OpenCLIP)"), "\(err)")
  }

  @Test func openCLIPFirst20StepsMatchOpenCLIP() throws {
    // tiny_nvclip through TAO's OpenCLIP recipe (tools/fixtures/openclip_fixtures.py train_reference).
    let ref = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixtures + "/tiny_nvclip_train_reference.json"))) as! [String: Any]
    let expected = (ref["losses"] as! [NSNumber]).map(\.doubleValue)
    let results = NSTemporaryDirectory() + "clipkit-train-\(UUID().uuidString)"
    let model = "type: ViT-L-14-SigLIP-CLIPA-224\n  pretrained_dir: TINY/tiny_nvclip\n  image_size: 56"
    let (code, out, err) = try run(["train", "-e", try spec(results, epochs: 20, model: model)], env: [:])
    #expect(code == 0, "\(err)")
    let got = losses(out)
    #expect(got.count == expected.count)
    for (i, (g, e)) in zip(got, expected).enumerated() {
      #expect(abs(g - e) <= 1e-4 * abs(e), "step \(i + 1): \(g) vs open_clip \(e)")
    }
    let t = try PyTorchCheckpoint.read(results + "/train/epoch_20.pth").tensors
    #expect(t["model.logit_bias"] != nil && t["model.backbone.model.visual.conv1.weight"] != nil)
  }

  /// As in TAO, dataset.seed decides the data order (its loaders reseed with it) and train.seed
  /// the model: with pretrained weights and no dropout, only dataset.seed changes the losses.
  @Test func datasetSeedOrdersTheDataTrainSeedTheModel() throws {
    func firstEpochs(_ overrides: [String]) throws -> [Double] {
      let results = NSTemporaryDirectory() + "clipkit-train-\(UUID().uuidString)"
      let (c, out, err) = try run(["train", "-e", try spec(results, epochs: 3)] + overrides, env: [:])
      #expect(c == 0, "\(err)")
      return losses(out)
    }
    let base = try firstEpochs([])
    #expect(base.count >= 2)
    #expect(try firstEpochs(["train.seed=99"]) == base)
    #expect(try firstEpochs(["dataset.seed=7"]) != base)
  }

  @Test func crashThenResumeContinuesExactly() throws {
    let full = NSTemporaryDirectory() + "clipkit-train-\(UUID().uuidString)"
    let (c1, out1, e1) = try run(["train", "-e", try spec(full, epochs: 6)], env: [:])
    #expect(c1 == 0, "\(e1)")
    let uninterrupted = losses(out1)
    let crashed = NSTemporaryDirectory() + "clipkit-train-\(UUID().uuidString)"
    let s = try spec(crashed, epochs: 6)
    let (c2, out2, _) = try run(["train", "-e", s], env: ["CLIPKIT_CRASH_AFTER_EPOCH": "3"])
    #expect(c2 == 137)
    #expect(losses(out2).count == 3)
    // No partial files under final names, only complete checkpoints.
    let files = try FileManager.default.contentsOfDirectory(atPath: crashed + "/train")
    #expect(!files.contains { $0.contains(".tmp") })
    let out3 = try expectResumed(["train", "-e", s], continuing: uninterrupted.suffix(3))
    #expect(out3.contains("Resumed from"))
  }

  @Test func stepCheckpointsResumeMidEpoch() throws {
    let extra = ["train.checkpoint_interval_unit=step", "train.checkpoint_interval=3", "dataset.train.batch_size=2"]
    let full = NSTemporaryDirectory() + "clipkit-train-\(UUID().uuidString)"
    let (c1, out1, e1) = try run(["train", "-e", try spec(full, epochs: 3)] + extra, env: [:])
    #expect(c1 == 0, "\(e1)")
    let uninterrupted = losses(out1)
    #expect(uninterrupted.count == 6)
    let crashed = NSTemporaryDirectory() + "clipkit-train-\(UUID().uuidString)"
    let s = try spec(crashed, epochs: 3)
    let (c2, _, _) = try run(["train", "-e", s] + extra, env: ["CLIPKIT_CRASH_AFTER_STEP": "3"])
    #expect(c2 == 137)
    #expect(try FileManager.default.destinationOfSymbolicLink(atPath: crashed + "/train/clip_latest.pth") == "step_3.pth")
    try expectResumed(["train", "-e", s] + extra, continuing: uninterrupted.suffix(3))
  }

  /// fp16 runs (autocast + dynamic loss scaling, as a GPU spec asks), keeps the scaler state in
  /// the checkpoint under Lightning's key, and resumes exactly.
  @Test func fp16WithLossScalingResumes() throws {
    let fp16 = ["train.precision=fp16"]
    let full = NSTemporaryDirectory() + "clipkit-train-\(UUID().uuidString)"
    let (c1, out1, e1) = try run(["train", "-e", try spec(full, epochs: 4)] + fp16, env: [:])
    #expect(c1 == 0, "\(e1)")
    let uninterrupted = losses(out1)
    #expect(uninterrupted.count == 4 && uninterrupted.allSatisfy(\.isFinite))
    let ck = try PyTorchCheckpoint.read(full + "/train/epoch_4.pth")
    guard case .dict(let top) = ck.root, case .dict(let amp)? = top["native_amp_scaling_state"],
          let scale = amp["scale"]?.doubleValue else { Issue.record("no native_amp_scaling_state"); return }
    #expect(scale > 0 && scale <= 65536 && Foundation.log2(scale) == Foundation.log2(scale).rounded())
    let crashed = NSTemporaryDirectory() + "clipkit-train-\(UUID().uuidString)"
    let s = try spec(crashed, epochs: 4)
    let (c2, _, _) = try run(["train", "-e", s] + fp16, env: ["CLIPKIT_CRASH_AFTER_EPOCH": "2"])
    #expect(c2 == 137)
    try expectResumed(["train", "-e", s] + fp16, continuing: uninterrupted.suffix(2))
  }

  /// Corrupt images are skipped and counted; past 10 % unreadable the run stops and says so.
  @Test func corruptImagesAreCountedThenFatal() throws {
    let dir = NSTemporaryDirectory() + "clipkit-corrupt-\(UUID().uuidString)"
    let fm = FileManager.default
    func dataset(_ name: String, good: Int, bad: Int) throws -> String {
      let d = dir + "/" + name
      try fm.createDirectory(atPath: d, withIntermediateDirectories: true)
      let photo = fm.contents(atPath: fixtures + "/images/photo_420.jpg")!
      for i in 0..<(good + bad) {
        let stem = String(format: "%@/img%02d", d, i)
        // Corrupt: a JPEG cut short after its header.
        fm.createFile(atPath: stem + ".jpg", contents: i < good ? photo : photo.prefix(200))
        try "a photo number \(i)".write(toFile: stem + ".txt", atomically: true, encoding: .utf8)
      }
      return d
    }
    let base = try spec(dir + "/r", epochs: 1)
    let (c1, out1, e1) = try run(["train", "-e", base, "dataset.train.datasets=[{image_dir: \(try dataset("few", good: 19, bad: 1))}]",
                                  "results_dir=\(dir)/r1"], env: [:])
    #expect(c1 == 0, "\(e1)")
    #expect(e1.contains("1 unreadable training samples were skipped"), "\(out1)\n\(e1)")
    let (c2, _, e2) = try run(["train", "-e", base, "dataset.train.datasets=[{image_dir: \(try dataset("many", good: 8, bad: 12))}]",
                               "results_dir=\(dir)/r2"], env: [:])
    #expect(c2 != 0 && e2.contains("unreadable (more than 10 %)"), "\(e2)")
  }

  /// clip_latest.pth past the end of train.num_epochs is an error naming the checkpoint and both
  /// numbers; one exactly at the end says training is complete.
  @Test func resumingPastNumEpochsIsAnError() throws {
    let results = NSTemporaryDirectory() + "clipkit-train-\(UUID().uuidString)"
    let s = try spec(results, epochs: 3)
    let (c1, _, e1) = try run(["train", "-e", s], env: [:])
    #expect(c1 == 0, "\(e1)")
    let (c2, _, e2) = try run(["train", "-e", s, "train.num_epochs=1"], env: [:])
    #expect(c2 != 0, "\(e2)")
    #expect(e2.contains(results + "/train/clip_latest.pth was saved at step 3") && e2.contains("train.num_epochs=1 (1 steps)"), "\(e2)")
    #expect(!e2.contains("Fatal error"), "\(e2)")
    let (c3, out3, e3) = try run(["train", "-e", s], env: [:])
    #expect(c3 == 0, "\(e3)")
    #expect(out3.contains("Training is already complete") && losses(out3).isEmpty, "\(out3)")
  }

  /// Optimiser betas and augmentation values torch/torchvision refuse are errors naming the key,
  /// reported before anything is loaded.
  @Test func badBetasAndAugmentationValuesNameTheKey() throws {
    let results = NSTemporaryDirectory() + "clipkit-train-\(UUID().uuidString)"
    let s = try spec(results, epochs: 1)
    for (override, fragment) in [
      ("train.optim.betas=[]", "train.optim.betas=[]: needs two values"),
      ("train.optim.betas=[0.9]", "train.optim.betas=[0.9]: needs two values"),
      ("train.optim.betas=[0.9,0.95,0.99]", "train.optim.betas=[0.9, 0.95, 0.99]: needs two values"),
      ("train.optim.betas=[0.9,1.0]", "each in [0, 1)"), ("train.optim.betas=[-0.1,0.9]", "each in [0, 1)"),
      ("dataset.augmentation.scale=[-1,1]", "dataset.augmentation.scale=[-1.0, 1.0]: needs 0 < min <= max"),
      ("dataset.augmentation.scale=[0.9,0.4]", "dataset.augmentation.scale=[0.9, 0.4]: needs 0 < min <= max"),
      ("dataset.augmentation.scale=[0.5]", "dataset.augmentation.scale=[0.5]: needs 2 values"),
      ("dataset.augmentation.scale=[]", "dataset.augmentation.scale=[]: needs 2 values"),
      ("dataset.augmentation.color_jitter=[0.8,0.3,0.3,0.3,1.0e300]", "dataset.augmentation.color_jitter=[0.8, 0.3, 0.3, 0.3, 1e+300]: hue 1e+300 is not in [0, 0.5]"),
      ("dataset.augmentation.color_jitter=[0.3,0.3,0.3,-0.1]", "hue -0.1 is not in [0, 0.5]"),
      ("dataset.augmentation.color_jitter=[0.8,-0.3,0.3,0.3,0.1]", "color_jitter=[0.8, -0.3, 0.3, 0.3, 0.1]: brightness -0.3 is negative"),
      ("dataset.augmentation.color_jitter=[1.5,0.3,0.3,0.3,0.1]", "probability 1.5 is not in [0, 1]"),
    ] {
      let (code, _, err) = try run(["train", "-e", s, override], env: [:])
      #expect(code != 0 && err.contains(fragment) && !err.contains("Fatal error"), "\(override): \(err)")
    }
  }

  @Test func unsupportedSettingsSaySo() throws {
    let results = NSTemporaryDirectory() + "clipkit-train-\(UUID().uuidString)"
    for (override, fragment) in [("train.num_gpus=2", "without a distributed launch"),
                                 ("dataset.train.batch_size=64", "fewer than one batch"),
                                 ("train.distributed_strategy=fsdp", "'train.distributed_strategy'"),
                                 ("model.type=c-radio_v3-h", "c-radio_v3-h_half.pth.tar")] {
      let (code, _, err) = try run(["train", "-e", try spec(results, epochs: 1), override], env: [:])
      #expect(code != 0 && err.contains(fragment), "\(override): \(err)")
    }
  }
}

@Suite struct TrainingOnShards {
  /// "step N loss X" of each step (the gradient norms that follow are reductions whose last bits
  /// depend on how many threads libtorch had, which varies when tests run side by side).
  func losses(_ out: String) -> [String] {
    out.split(separator: "\n").filter { $0.hasPrefix("step ") }.map { $0.split(separator: " ").prefix(4).joined(separator: " ") }
  }

  /// With TAO's default augmentation (OpenCLIP: SigLIP models train without it, as in TAO), the
  /// losses do not depend on the number of loader threads,
  /// and a run killed mid-epoch resumes on the same samples.
  @Test func deterministicAcrossWorkersAndResumesMidEpoch() throws {
    let fixtures = repoRoot + "/Tests/ModelTests/Fixtures"
    let shards = repoRoot + "/Tests/DataTests/Fixtures/shards"
    let dir = NSTemporaryDirectory() + "clipkit-wds-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try """
      model:
        type: ViT-L-14-SigLIP-CLIPA-224
        pretrained_dir: \(fixtures)/tiny_nvclip
        image_size: 56
      train:
        num_epochs: 3
        precision: fp32
        checkpoint_interval_unit: step
        checkpoint_interval: 1
      dataset:
        train:
          type: wds
          wds:
            root_dir: \(shards)
          batch_size: 2
      """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    func train(_ name: String, _ extra: [String], env: [String: String] = [:]) throws -> (Int32, [String]) {
      let r = try clipkit(["train", "-e", dir + "/spec.yaml", "results_dir=\(dir)/\(name)"] + extra,
                          env: env.merging(["CLIPKIT_LOG_LOSS": "1"]) { a, _ in a })
      return (r.code, losses(r.out))
    }
    let (c0, inline) = try train("w0", ["dataset.train.num_workers=0"])
    let (c3, threaded) = try train("w3", ["dataset.train.num_workers=3"])
    #expect(c0 == 0 && c3 == 0)
    #expect(inline.count == 6 && inline == threaded)
    let (k, first) = try train("killed", [], env: ["CLIPKIT_CRASH_AFTER_STEP": "3"])
    #expect(k == 137 && first == Array(inline.prefix(2)))  // it ends right after step 3's checkpoint
    let (c, rest) = try train("killed", [])
    #expect(c == 0 && rest == Array(inline.suffix(3)))
  }

  /// A folder with spec.yaml training tiny_siglip on the fixture shards.
  func shardSpec(epochs: Int, wds extra: String = "") throws -> String {
    let fixtures = repoRoot + "/Tests/ModelTests/Fixtures"
    let shards = repoRoot + "/Tests/DataTests/Fixtures/shards"
    let dir = NSTemporaryDirectory() + "clipkit-wds-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try """
      results_dir: \(dir)/results
      model:
        type: siglip2-so400m-patch16-256
        pretrained_dir: \(fixtures)/tiny_siglip
      train:
        num_epochs: \(epochs)
        precision: fp32
      dataset:
        train:
          type: wds
          wds:
            root_dir: \(shards)
            \(extra)
          batch_size: 2
      """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    return dir
  }

  /// samples_per_shard near Int.max only feeds the epoch estimate: no overflow, the counted
  /// samples set the epoch; a num_epochs whose step count overflows is an error naming it.
  @Test func hugeSamplesPerShardAndEpochCounts() throws {
    let dir = try shardSpec(epochs: 1, wds: "samples_per_shard: \(Int.max)")
    let r = try clipkit(["train", "-e", dir + "/spec.yaml"])
    #expect(r.code == 0, "\(r.err)")
    #expect(r.out.contains("samples_per_shard=\(Int.max) estimates") && r.out.contains("epochs use the 5 counted"), "\(r.out)")
    let big = try clipkit(["train", "-e", dir + "/spec.yaml", "results_dir=\(dir)/big", "train.num_epochs=\(Int.max)"])
    #expect(big.code != 0 && big.err.contains("train.num_epochs=\(Int.max) × 2 steps per epoch"), "\(big.err)")
  }

  @Test func trainsFromWebDatasetShards() throws {
    let dir = try shardSpec(epochs: 2)
    let r = try clipkit(["train", "-e", dir + "/spec.yaml"])
    #expect(r.code == 0, "\(r.err)")
    #expect(r.out.contains("Indexed 2 shards: 5 samples"))
    #expect(r.err.contains("3 training samples without a (non-empty) caption were skipped"))
    #expect(FileManager.default.fileExists(atPath: dir + "/results/train/epoch_2.pth"))
  }
}
