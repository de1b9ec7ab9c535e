import Foundation
import Testing
import Torch
@testable import Jobs

/// A TCP port nothing listens on now (Jobs' pick, the kernel's for port 0).
func freePort() -> Int { freeTCPPort() ?? 29500 }

/// Runs one `clipkit` process per rank at once, each with `env(rank)` added, and waits for all.
func launch(_ args: [String], ranks: Int, env: (Int) -> [String: String]) throws -> [(code: Int32, out: String, err: String, seconds: Double)] {
  var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
  while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("clipkit").path), dir.path != "/" {
    dir = dir.deletingLastPathComponent()
  }
  let logs = NSTemporaryDirectory() + "clipkit-ranks-\(UUID().uuidString)"
  try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
  let start = Date()
  let procs = try (0..<ranks).map { r -> Process in
    let p = Process()
    p.executableURL = dir.appendingPathComponent("clipkit")
    p.arguments = args
    p.environment = ProcessInfo.processInfo.environment.merging(env(r)) { _, new in new }
    for (name, set) in [("out", { (h: FileHandle) in p.standardOutput = h }), ("err", { (h: FileHandle) in p.standardError = h })] {
      FileManager.default.createFile(atPath: "\(logs)/\(r).\(name)", contents: nil)
      set(FileHandle(forWritingAtPath: "\(logs)/\(r).\(name)")!)
    }
    try p.run()
    return p
  }
  var results: [(Int32, String, String, Double)] = []
  for (r, p) in procs.enumerated() {
    p.waitUntilExit()
    let read = { (n: String) in (try? String(contentsOfFile: "\(logs)/\(r).\(n)", encoding: .utf8)) ?? "" }
    results.append((p.terminationStatus, read("out"), read("err"), Date().timeIntervalSince(start)))
  }
  return results
}

/// Data-parallel training over Gloo, launched as torchrun launches it: W ranks at batch b must
/// train as one process at batch W·b.
@Suite(.serialized) struct DataParallelTraining {
  let fixtures = repoRoot + "/Tests/ModelTests/Fixtures"

  func spec(loss: String = "siglip", epochs: Int = 10, extra: String = "") throws -> String {
    let dir = NSTemporaryDirectory() + "clipkit-ddp-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try """
      results_dir: \(dir)/results
      model:
        type: siglip2-so400m-patch16-256
        pretrained_dir: \(fixtures)/tiny_siglip
      train:
        num_epochs: \(epochs)
        seed: 1234
        precision: fp32
        loss_type: \(loss)
        checkpoint_interval: \(epochs)
        optim: {vision_lr: 1.0e-3, text_lr: 2.0e-3, weight_decay: 0.05, betas: [0.9, 0.95], eps: 1.0e-6, warmup_steps: 5, scheduler: cosine}
        \(extra)
      dataset:
        seed: 1234
        train:
          datasets:
            - image_dir: \(fixtures)/images
          batch_size: 4
        augmentation: {scale: [1.0, 1.0], color_jitter: [], grayscale: 0.0}
      """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    return dir
  }

  /// (loss, gradient norm, vision and text towers' gradient norms) per logged step.
  func steps(_ out: String) -> [(loss: Double, gradNorm: Double, vision: Double, text: Double)] {
    out.split(separator: "\n").compactMap { line in
      let p = line.split(separator: " ")
      guard p.count == 9, p[0] == "step", p[2] == "loss", let l = Double(p[3]), let g = Double(p[5]), let v = Double(p[7]), let t = Double(p[8])
      else { return nil }
      return (l, g, v, t)
    }
  }

  func one(_ dir: String, _ extra: [String] = []) throws -> (code: Int32, out: String, err: String) {
    try clipkit(["train", "-e", dir + "/spec.yaml", "results_dir=\(dir)/one"] + extra, env: ["CLIPKIT_LOG_LOSS": "1"])
  }

  /// torchrun's variables for rank r of `world` (batch 2 each).
  func ranks(_ dir: String, _ name: String, _ extra: [String] = [], world: Int = 2, env: @escaping (Int) -> [String: String] = { _ in [:] })
    throws -> [(code: Int32, out: String, err: String, seconds: Double)] {
    let port = freePort()
    return try launch(["train", "-e", dir + "/spec.yaml", "results_dir=\(dir)/\(name)", "dataset.train.batch_size=2"] + extra, ranks: world) { r in
      ["RANK": "\(r)", "WORLD_SIZE": "\(world)", "LOCAL_RANK": "\(r)", "LOCAL_WORLD_SIZE": "\(world)", "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1",
       "MASTER_PORT": "\(port)", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "CLIPKIT_LOG_LOSS": "1", "CLIPKIT_DEVICE": "cpu",
       "CLIPKIT_DIST_TIMEOUT": "30"].merging(env(r)) { _, new in new }
    }
  }

  func expectClose(_ a: [Double], _ b: [Double], _ what: String, tolerance: Double = 1e-5) {
    #expect(a.count == b.count && !a.isEmpty, "\(what): \(a.count) vs \(b.count) values")
    for (i, (x, y)) in zip(a, b).enumerated() { #expect(abs(x - y) <= tolerance * max(1, abs(y)), "\(what) \(i + 1): \(x) vs \(y)") }
  }

  func weights(_ path: String) throws -> [String: [Float]] {
    var out: [String: [Float]] = [:]
    for (k, t) in try PyTorchCheckpoint.read(path).tensors where t.dtype == .float32 { out[k] = try t.floats() }
    return out
  }

  /// SigLIP with every exchange TAO offers (except `local`, which is not the combined batch), and
  /// two "nodes" of one rank each (NODE_RANK, as Lightning): the 2-rank losses and the weights
  /// after 10 AdamW steps equal the single process's; the replicas stay bitwise identical.
  @Test func siglipRanksTrainLikeOneProcessAtTheirCombinedBatch() throws {
    let dir = try spec()
    let single = try one(dir)
    #expect(single.code == 0, "\(single.err)")
    let reference = steps(single.out)
    #expect(reference.count == 10)
    let refWeights = try weights(dir + "/one/train/epoch_10.pth")
    for impl in ["gather", "bidir", "shift", "reduce", "nodes"] {
      let r = impl == "nodes"
        ? try { () throws -> [(code: Int32, out: String, err: String, seconds: Double)] in
          let port = freePort()
          return try launch(["train", "-e", dir + "/spec.yaml", "results_dir=\(dir)/nodes", "dataset.train.batch_size=2", "train.num_nodes=2"],
                            ranks: 2) { r in
            ["NODE_RANK": "\(r)", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "\(port)", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
             "CLIPKIT_LOG_LOSS": "1", "CLIPKIT_DEVICE": "cpu", "CLIPKIT_DIST_TIMEOUT": "30", "CLIPKIT_DDP_BUCKET_MB": "0.002"]
          }
        }()
        : try ranks(dir, impl, ["train.siglip_loss_dist_impl=\(impl)"])
      #expect(r.allSatisfy { $0.code == 0 }, "\(impl): \(r.map(\.err))")
      expectClose(steps(r[0].out).map(\.loss), reference.map(\.loss), "\(impl) loss")
      expectClose(steps(r[0].out).map(\.gradNorm), reference.map(\.gradNorm), "\(impl) grad norm", tolerance: 1e-4)
      #expect(r[0].out.contains("All 2 replicas hold bitwise identical parameters"), "\(impl)")
      // 2 KB buckets (the "nodes" run): many buckets a step, most started while backward still ran.
      if impl == "nodes", let line = r[0].out.split(separator: "\n").first(where: { $0.hasPrefix("Gradient all-reduce:") }) {
        let n = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        #expect(n.count >= 3 && n[0] > 10 && n[1] > n[2] / 2 && n[2] == n[0] * 10, "\(line)")
        #expect(!line.contains("reduced again"), "\(line)")
      } else if impl == "nodes" {
        Issue.record("no all-reduce summary: \(r[0].out)")
      }
      #expect(r[1].out.isEmpty, "rank 1 prints nothing: \(r[1].out)")
      let w = try weights(dir + "/\(impl)/train/epoch_10.pth")
      #expect(Set(w.keys) == Set(refWeights.keys))
      // Attention key biases have an exactly zero gradient (softmax ignores a shift shared by all
      // keys), so AdamW's normalisation turns rounding noise into steps in any two runs that sum
      // in a different order, PyTorch's included; they are left out (for the packed in_proj_bias,
      // its key third). Every other tensor, and all of them together, must agree to 1e-5.
      var diff2 = 0.0, norm2 = 0.0
      for (k, v) in refWeights where !k.hasSuffix("k_proj.bias") {
        var (x, y) = (w[k]!.map(Double.init), v.map(Double.init))
        if k.hasSuffix("in_proj_bias") {
          let d = y.count / 3
          (x, y) = (Array(x[..<d] + x[(2 * d)...]), Array(y[..<d] + y[(2 * d)...]))
        }
        let dk = zip(x, y).map { ($0 - $1) * ($0 - $1) }.reduce(0, +), nk = y.map { $0 * $0 }.reduce(0, +)
        diff2 += dk
        norm2 += nk
        #expect(dk.squareRoot() <= 1e-5 * nk.squareRoot(), "\(impl) \(k): relative difference \((dk / nk).squareRoot())")
      }
      #expect(diff2.squareRoot() <= 1e-5 * norm2.squareRoot(), "\(impl): all weights, relative difference \((diff2 / norm2).squareRoot())")
    }
  }

  /// Validation on 2 ranks: each embeds its share of the 5-pair set (smaller than 2 ranks × the
  /// batch), the embeddings are gathered back in order, and rank 0 reports the single process's metrics.
  @Test func validationIsGatheredAcrossRanks() throws {
    let dir = try spec(epochs: 2)
    let val = ["dataset.val.datasets=[{image_dir: \(fixtures)/images}]", "train.validation_interval=1"]
    let single = try one(dir, val)
    #expect(single.code == 0, "\(single.err)")
    let r = try ranks(dir, "val", val)
    #expect(r.allSatisfy { $0.code == 0 }, "\(r.map(\.err))")
    let metrics = { (out: String) in out.split(separator: "\n").filter { $0.contains("val Image-to-Text") || $0.contains("val Text-to-Image") } }
    #expect(metrics(single.out).count == 4 && metrics(r[0].out) == metrics(single.out), "\(metrics(r[0].out)) vs \(metrics(single.out))")
    let status = try String(contentsOfFile: dir + "/val/train/status.json", encoding: .utf8)
    // Rank 0 alone writes it: STARTED, one line per epoch, SUCCESS.
    #expect(status.contains("i2t_R@1") && status.contains("SUCCESS") && status.split(separator: "\n").count == 4, "\(status)")
    // Its checkpoint continues only with 2 ranks (steps per epoch depend on them).
    let alone = try clipkit(["train", "-e", dir + "/spec.yaml", "results_dir=\(dir)/val", "train.num_epochs=4"])
    #expect(alone.code != 0 && alone.err.contains("saved by a run of 2 ranks and this run has 1"), "\(alone.err)")
  }

  /// An unreadable image on one rank: every rank still trains on the same number of pairs (the
  /// exchanges are sized by it), the run finishes and rank 0 counts the skipped sample.
  @Test func anUnreadableSampleOnOneRankDoesNotStallTheOthers() throws {
    let dir = try spec(epochs: 3)
    let images = dir + "/images"
    try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
    for k in 0..<30 {
      let src = ["photo_420.jpg", "gray.jpg", "rgba.png"][k % 3]
      try FileManager.default.createSymbolicLink(atPath: "\(images)/\(k).\((src as NSString).pathExtension)", withDestinationPath: fixtures + "/images/" + src)
      try "caption \(k)".write(toFile: "\(images)/\(k).txt", atomically: true, encoding: .utf8)
    }
    try Data("not an image".utf8).write(to: URL(fileURLWithPath: images + "/broken.jpg"))
    try "a broken file".write(toFile: images + "/broken.txt", atomically: true, encoding: .utf8)
    let r = try ranks(dir, "broken", ["dataset.train.datasets=[{image_dir: \(images)}]"])
    #expect(r.allSatisfy { $0.code == 0 }, "\(r.map(\.err))")
    // 31 pairs: 16 per rank, 8 steps per epoch; a step where a rank holds the broken file has one
    // readable pair there, so all ranks skip it (once per epoch).
    #expect(steps(r[0].out).count == 21 && r[0].out.contains("All 2 replicas hold bitwise identical parameters"), "\(r[0].out)")
    #expect(r[0].err.contains("unreadable training samples were skipped"), "\(r[0].err)")
  }

  /// Three ranks, where the ring and two-way exchanges take more than one round: each exchange
  /// gives the single process's losses and gradients at batch 6.
  @Test func threeRanksExchangeTextsLikeOneProcess() throws {
    let dir = try spec(epochs: 4)
    // Six captioned images: the five fixtures and one photo again under another caption.
    let images = dir + "/images"
    try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
    for f in try FileManager.default.contentsOfDirectory(atPath: fixtures + "/images") {
      try FileManager.default.createSymbolicLink(atPath: images + "/" + f, withDestinationPath: fixtures + "/images/" + f)
    }
    try FileManager.default.createSymbolicLink(atPath: images + "/again.jpg", withDestinationPath: fixtures + "/images/photo_420.jpg")
    try "the same photo, captioned again".write(toFile: images + "/again.txt", atomically: true, encoding: .utf8)
    let data = ["dataset.train.datasets=[{image_dir: \(images)}]"]
    let single = try one(dir, data + ["dataset.train.batch_size=6"])
    #expect(single.code == 0, "\(single.err)")
    let reference = steps(single.out)
    #expect(reference.count == 4)
    for impl in ["gather", "bidir", "shift", "reduce"] {
      let r = try ranks(dir, "three-\(impl)", data + ["train.siglip_loss_dist_impl=\(impl)"], world: 3)
      #expect(r.allSatisfy { $0.code == 0 }, "\(impl): \(r.map(\.err))")
      expectClose(steps(r[0].out).map(\.loss), reference.map(\.loss), "3 ranks, \(impl), loss")
      expectClose(steps(r[0].out).map(\.gradNorm), reference.map(\.gradNorm), "3 ranks, \(impl), grad norm", tolerance: 1e-4)
      #expect(r[0].out.contains("All 3 replicas hold bitwise identical parameters"), "\(impl)")
    }
  }

  /// CLIP as TAO calls open_clip's ClipLoss (no gradient through the gather): every rank computes
  /// the whole batch's loss, so the losses match, and the towers' averaged gradient is the single
  /// process's divided by W = 2, shown at step 1 (before the runs' weights part). (The logit scale
  /// is in every rank's whole loss, so its gradient is not divided.)
  @Test func clipRanksAverageAGradientDividedByTheWorldSize() throws {
    let dir = try spec(loss: "clip", epochs: 3)
    let single = try one(dir)
    #expect(single.code == 0, "\(single.err)")
    let r = try ranks(dir, "two")
    #expect(r.allSatisfy { $0.code == 0 }, "\(r.map(\.err))")
    let (a, b) = (steps(r[0].out), steps(single.out))
    #expect(a.count == 3 && b.count == 3)
    expectClose(a.map(\.loss), b.map(\.loss), "clip loss")
    expectClose([a[0].vision * 2, a[0].text * 2], [b[0].vision, b[0].text], "2 × the ranks' averaged tower gradient norms")
    #expect(abs(a[0].gradNorm * 2 - b[0].gradNorm) > 1e-3 * b[0].gradNorm, "the logit scale's gradient is whole on every rank")
  }

  /// kill -9 of one rank: the other stops with an error within the collective timeout instead of
  /// hanging; rerunning both resumes from rank 0's last checkpoint with the uninterrupted losses.
  @Test func aKilledRankStopsTheOthersAndTheRunResumes() throws {
    let dir = try spec(epochs: 6, extra: "checkpoint_interval_unit: step")
    let full = try ranks(dir, "full", ["train.checkpoint_interval=1"])
    #expect(full.allSatisfy { $0.code == 0 }, "\(full.map(\.err))")
    let expected = steps(full[0].out).map(\.loss)
    #expect(expected.count == 6)
    let killed = try ranks(dir, "killed", ["train.checkpoint_interval=1"]) { r in r == 1 ? ["CLIPKIT_CRASH_AFTER_STEP": "3"] : [:] }
    #expect(killed[1].code == 137)
    #expect(killed[0].code != 0 && killed[0].seconds < 90, "rank 0: exit \(killed[0].code) after \(killed[0].seconds) s: \(killed[0].err)")
    #expect(killed[0].err.hasPrefix("error: ") || killed[0].err.contains("\nerror: "), "\(killed[0].err)")
    let resumed = try ranks(dir, "killed", ["train.checkpoint_interval=1"])
    #expect(resumed.allSatisfy { $0.code == 0 }, "\(resumed.map(\.err))")
    #expect(resumed[0].out.contains("Resumed from") && resumed[0].out.contains("step 3"))
    expectClose(steps(resumed[0].out).map(\.loss), Array(expected.suffix(3)), "resumed loss", tolerance: 1e-6)
  }

  /// train.num_gpus > 1 without torchrun on a machine with the GPUs: the node starts one rank per
  /// GPU with torchrun's variables (Lightning's numbering across nodes). The environments only:
  /// starting GPU ranks needs GPUs.
  @Test func aNodeStartsOneRankPerGPU() throws {
    let env = ["MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29999", "NODE_RANK": "1", "PATH": "/bin", "RANK": "stale"]
    let ranks = try #require(try localRanks(env, numGpus: 2, numNodes: 3, gpuIds: [2, 3]))
    #expect(ranks.count == 2)
    for (i, r) in ranks.enumerated() {
      #expect(r["RANK"] == "\(2 + i)" && r["LOCAL_RANK"] == "\(i)" && r["WORLD_SIZE"] == "6" && r["LOCAL_WORLD_SIZE"] == "2")
      #expect(r["GROUP_RANK"] == "1" && r["NODE_RANK"] == nil && r["MASTER_ADDR"] == "10.0.0.1" && r["MASTER_PORT"] == "29999")
      #expect(r["CUDA_VISIBLE_DEVICES"] == "2,3" && r["PATH"] == "/bin")
    }
    let one = try #require(try localRanks([:], numGpus: 4, numNodes: 1, gpuIds: [0]))
    #expect(one.map { $0["RANK"] } == ["0", "1", "2", "3"] && one.allSatisfy { $0["MASTER_ADDR"] == "127.0.0.1" && $0["CUDA_VISIBLE_DEVICES"] == nil })
    #expect((Int(one[0]["MASTER_PORT"] ?? "") ?? 0) > 0)
    #expect(try localRanks(["WORLD_SIZE": "2", "RANK": "0"], numGpus: 2, numNodes: 1, gpuIds: [0, 1]) == nil)  // torchrun's own
    #expect(try localRanks([:], numGpus: 1, numNodes: 1, gpuIds: [0]) == nil)
    #expect(throws: Error.self) { try localRanks([:], numGpus: 2, numNodes: 2, gpuIds: [0, 1]) }  // no NODE_RANK
  }

  @Test func severalGPUsWithoutALaunchAreRefused() throws {
    let dir = try spec()
    let r = try clipkit(["train", "-e", dir + "/spec.yaml", "train.num_gpus=2"])
    #expect(r.code != 0 && r.err.contains("train.num_gpus=2 without a distributed launch") && r.err.contains("torchrun"), "\(r.err)")
    #expect(r.err.split(separator: "\n").count == 1)
    let nodes = try clipkit(["train", "-e", dir + "/spec.yaml", "train.num_nodes=2"])
    #expect(nodes.code != 0 && nodes.err.contains("NODE_RANK"), "\(nodes.err)")
  }
}

/// The overlapped reducer's mechanics in one process (a 1-rank group: the sum is the identity, so
/// the gradients must come back bitwise): buckets start during backward, and a weight whose
/// gradient accumulates twice (inside a recomputed block and outside it) makes the step re-reduce
/// from the final gradients instead of sending a partial one.
@Suite struct OverlappedGradientReducer {
  func weights(_ seed: UInt64) throws -> [Tensor] {
    let g = try Generator(seed: seed)
    return try [[6, 6], [6, 6], [6, 3]].map { try Tensor.randn($0, generator: g).requiresGrad(true) }
  }
  func loss(_ w: [Tensor], x: Tensor, scope: CheckpointScope, reuse: Bool) throws -> Tensor {
    let h = try scope.run(x) { try $0.matmul(w[0]).tanh() }
    let k = try h.matmul(reuse ? w[0] : w[1]).tanh()
    return try k.matmul(w[2]).tanh().sum()
  }

  @Test(arguments: [false, true]) func gradientsComeBackExact(reuse: Bool) throws {
    let group = try ProcessGroup(gloo: "127.0.0.1", port: freePort(), rank: 0, worldSize: 1, timeoutSeconds: 30)
    // x needs a gradient: a recomputed block's weights get theirs only then (reentrant checkpoint).
    let x = try Tensor.randn([4, 6], generator: try Generator(seed: 3)).requiresGrad(true)
    let plain = try weights(11), reduced = try weights(11)
    let s1 = CheckpointScope(), s2 = CheckpointScope()
    try loss(plain, x: x, scope: s1, reuse: reuse).backward()
    let reducer = try GradientReducer(group, params: reduced, bucketBytes: 1)  // one bucket per tensor
    #expect(reducer.bucketCount == 3)
    for _ in 0..<2 {  // twice: the second step starts from the first's gradients
      for w in reduced { try w.zeroGrad() }
      try reducer.prepare()
      try loss(reduced, x: x, scope: s2, reuse: reuse).backward()
      try reducer.finish()
    }
    for (a, b) in zip(plain, reduced) {
      #expect(try a.grad.map { try $0.toArray(Float.self) } == b.grad.map { try $0.toArray(Float.self) })
    }
    #expect((reduced[1].grad == nil) == reuse, "an unused weight keeps no gradient")
    #expect(reducer.redoneSteps == (reuse ? 2 : 0))
    // Buckets hold w2, w1, w0 (reverse order) and start in that order: all three during backward.
    // With reuse, w1 gets no gradient: in step 1 its bucket holds w0's back until finish() (1 of
    // 3 started); step 2 knows w1 is unused and starts all three (w0's on its first arrival).
    #expect(reducer.overlappedBuckets == (reuse ? 4 : 6), "\(reducer.overlappedBuckets)")
  }
}

/// One ustar member: a 512-byte header (octal fields, checksum over the header with its own field
/// as spaces) and the data padded to 512 bytes.
func tarMember(_ name: String, _ data: [UInt8]) -> [UInt8] {
  var h = [UInt8](repeating: 0, count: 512)
  func put(_ s: String, _ at: Int) { for (i, b) in s.utf8.enumerated() { h[at + i] = b } }
  put(name, 0)
  put("0000644", 100); put("0000000", 108); put("0000000", 116)
  put(String(format: "%011o", data.count), 124)
  put("00000000000", 136)
  h[156] = UInt8(ascii: "0")
  put("ustar", 257); put("00", 263)
  put("        ", 148)
  put(String(format: "%06o", h.reduce(0) { $0 + Int($1) }), 148)
  h[154] = 0; h[155] = UInt8(ascii: " ")
  return h + data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
}

extension DataParallelTraining {
  /// One shard, two ranks, two loader threads each (fewer shards than ranks × threads, which hangs
  /// webdataset's whole-shard split): each rank trains on its half of the shard, same step count.
  @Test func oneShardFeedsEveryRank() throws {
    let dir = NSTemporaryDirectory() + "clipkit-ddp-wds-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let images = try FileManager.default.contentsOfDirectory(atPath: fixtures + "/images").filter { $0.hasSuffix(".png") || $0.hasSuffix(".jpg") }.sorted()
    var tar: [UInt8] = []
    for i in 0..<8 {
      let file = images[i % images.count]
      let ext = (file as NSString).pathExtension
      tar += tarMember(String(format: "s%03d.%@", i, ext), [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixtures + "/images/" + file))))
      tar += tarMember(String(format: "s%03d.txt", i), Array("a picture number \(i)".utf8))
    }
    tar += [UInt8](repeating: 0, count: 1024)
    try FileManager.default.createDirectory(atPath: dir + "/shards", withIntermediateDirectories: true)
    try Data(tar).write(to: URL(fileURLWithPath: dir + "/shards/only-000.tar"))
    try """
      model:
        type: siglip2-so400m-patch16-256
        pretrained_dir: \(fixtures)/tiny_siglip
      train: {num_epochs: 2, precision: fp32, checkpoint_interval: 2}
      dataset:
        train:
          type: wds
          wds: {root_dir: \(dir)/shards}
          batch_size: 2
          num_workers: 2
      """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    let r = try ranks(dir, "two")
    #expect(r.allSatisfy { $0.code == 0 }, "\(r.map(\.err))")
    #expect(r[0].out.contains("Indexed 1 shard: 8 samples"), "\(r[0].out)")
    #expect(steps(r[0].out).count == 4, "2 steps an epoch on each rank: \(r[0].out)")
    #expect(r[0].out.contains("All 2 replicas hold bitwise identical parameters"))
  }
}

extension DataParallelTraining {
  /// Remote shards are indexed once across the ranks, not once per rank: each rank streams every
  /// W-th shard and the indexes are exchanged. The shards here are `pipe:` commands that log the
  /// rank opening them; training gives the local shards' losses.
  @Test func ranksShareTheIndexingOfRemoteShards() throws {
    let dir = NSTemporaryDirectory() + "clipkit-ddp-remote-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir + "/shards", withIntermediateDirectories: true)
    let images = try FileManager.default.contentsOfDirectory(atPath: fixtures + "/images").filter { $0.hasSuffix(".png") || $0.hasSuffix(".jpg") }.sorted()
    for s in 0..<2 {
      var tar: [UInt8] = []
      for i in 0..<8 {
        let file = images[(s * 8 + i) % images.count]
        tar += tarMember(String(format: "s%d%03d.%@", s, i, (file as NSString).pathExtension),
                         [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixtures + "/images/" + file))))
        tar += tarMember(String(format: "s%d%03d.txt", s, i), Array("picture \(i) of shard \(s)".utf8))
      }
      try Data(tar + [UInt8](repeating: 0, count: 1024)).write(to: URL(fileURLWithPath: "\(dir)/shards/part-00\(s).tar"))
    }
    try (0..<2).map { "pipe:echo $RANK >> \(dir)/opens; cat \(dir)/shards/part-00\($0).tar" }.joined(separator: "\n")
      .write(toFile: dir + "/list.txt", atomically: true, encoding: .utf8)
    func spec(_ data: String) -> String {
      """
      model:
        type: siglip2-so400m-patch16-256
        pretrained_dir: \(fixtures)/tiny_siglip
      train: {num_epochs: 2, precision: fp32, checkpoint_interval: 2, seed: 7}
      dataset:
        train:
          type: wds
          wds: {\(data)}
          batch_size: 2
          num_workers: 2
      """
    }
    try spec("root_dir: \(dir)/shards").write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    let local = try ranks(dir, "local")
    #expect(local.allSatisfy { $0.code == 0 }, "\(local.map(\.err))")
    try spec("shard_list_file: \(dir)/list.txt").write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    let piped = try ranks(dir, "piped")
    #expect(piped.allSatisfy { $0.code == 0 }, "\(piped.map(\.err))")
    #expect(piped[0].out.contains("Indexed 2 shards: 16 samples"), "\(piped[0].out)")
    #expect(steps(piped[0].out).map(\.loss) == steps(local[0].out).map(\.loss) && steps(local[0].out).count == 8, "\(piped[0].out)")
    // Per rank: one shard indexed, then one shard streamed in each of the 2 epochs (4 samples a
    // step × 2 steps is one shard's 8 samples). Indexing every shard on every rank made it 4 each.
    let opens = (try String(contentsOfFile: dir + "/opens", encoding: .utf8)).split(separator: "\n")
    #expect(opens.filter { $0 == "0" }.count == 3 && opens.filter { $0 == "1" }.count == 3, "\(opens)")
  }
}
