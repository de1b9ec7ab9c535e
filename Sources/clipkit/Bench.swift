import ArgumentParser
import Data
import Foundation
import Jobs
import Imaging
import Models
import Remote
import Retrieval
import Spec
import Torch
import Training

/// Benchmarks that print figures a user can reproduce (see the README's "Benchmarks").
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Measure ClipKit's throughput (image pipeline, embedding, training) and check a device against the CPU.",
    subcommands: [BenchImages.self, BenchEmbed.self, BenchTrain.self, BenchParity.self, BenchShards.self, BenchServeFiles.self, BenchSearch.self])
}

struct BenchImages: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "images",
    abstract: "Decode + resize + normalise every image of a folder on one thread; prints images/s.")

  @Argument(help: "Folder of images (searched recursively).") var folder: String
  @Option(help: "Output side length (squash resize).") var size = 256
  @Option(help: "Resampling filter: nearest, box, bilinear, hamming, bicubic, lanczos.") var filter = "bicubic"
  @Flag(help: "Decode JPEGs at reduced DCT scale first, as Pillow's Image.draft().") var draft = false
  @Option(help: "Passes over the folder (the first also warms the file cache).") var repeats = 3
  @Flag(help: "Apply TAO's default training augmentation (RandomResizedCrop 0.4-1, colour jitter, grayscale) instead of a resize.") var augment = false

  func run() throws {
    let filters: [String: ResampleFilter] = ["nearest": .nearest, "box": .box, "bilinear": .bilinear,
                                             "hamming": .hamming, "bicubic": .bicubic, "lanczos": .lanczos]
    guard let f = filters[filter] else { throw ValidationError("unknown filter '\(filter)'") }
    let files = try walkImages(folder)
    guard !files.isEmpty else { throw ValidationError("no images under \(folder)") }
    let transform = ImageTransform(resize: .squash(width: size, height: size), filter: f, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
    let decoder = ImageDecoder()
    let augmentation = Augmentation(size: (size, size), scale: [0.4, 1.0], colorJitter: [0.8, 0.32, 0.32, 0.32, 0.08], grayscale: 0.2)
    var best = Double.infinity
    var pixels = 0
    for _ in 0..<repeats {
      let start = DispatchTime.now().uptimeNanoseconds
      pixels = 0
      for path in files {
        let img = try decoder.decode(file: path, draft: draft ? (size, size) : nil)
        pixels += img.width * img.height
        let out: [Float]
        if augment {
          var rng = SeededRandom(seed: UInt64(pixels))
          out = transform.normalizedOnly(augmentation(img, rng: &rng))
        } else {
          out = transform(img)
        }
        precondition(out.count == 3 * size * size)
      }
      best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    print(String(format: "clipkit  %d images, %.1f MP decoded, %@ %dx%d%@%@: %.1f images/s (best of %d, 1 thread)",
                 files.count, Double(pixels) / 1e6, filter, size, size, draft ? ", draft" : "", augment ? ", augmented" : "",
                 Double(files.count) / best, repeats))
  }
}

/// `--device`: cpu, cuda or cuda:N (CUDA is loaded first, before any tensor work).
func benchDevice(_ name: String) throws -> Device {
  let d: Device
  do { d = try Device(parsing: name) } catch { throw ValidationError("--device must be cpu, cuda or cuda:N") }
  if d.isCUDA { try CUDA.load() }
  return d
}

/// Peak GPU memory of the run, for the summary ("" on CPU).
func benchPeakMemory(_ d: Device) -> String {
  guard case .cuda(let i) = d, let m = try? CUDA.memory(i) else {
    // On CPU: the process's peak resident set (VmHWM).
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          let kb = Double(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") else { return "" }
    return String(format: ", peak RSS %.2f GiB", kb / 1_048_576)
  }
  return String(format: ", peak memory %.2f GiB", Double(m.peakAllocated) / 1_073_741_824)
}

/// The autocast dtype of a --precision (nil: fp32).
func benchAutocast(_ precision: String) throws -> DType? {
  switch precision {
  case "fp32": return nil
  case "bf16": return .bfloat16
  case "fp16": return .float16
  default: throw ValidationError("--precision must be fp32, bf16 or fp16")
  }
}

struct BenchEmbed: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "embed",
    abstract: "Whole-job image embedding (decode, preprocess, model) of a folder with a model directory; prints images/s.")

  @Option(help: "Hugging Face model directory (config.json, weights, tokenizer, preprocessor_config.json), or what --model-type loads from (a RADIO hub checkpoint).") var model: String
  @Option(help: "A model.type whose family the directory cannot tell (c-radio_v3-b|l|h|g).") var modelType: String?
  @Option(help: "model.image_size for RADIO/OpenCLIP types.") var imageSize: Int?
  @Option(help: "Folder of images (searched recursively).") var images: String
  @Option(help: "Batch size.") var batchSize = 16
  @Option(help: "libtorch CPU threads (and decoding threads).") var threads = 2
  @Option(help: "Decoding threads (default: --threads).") var workers: Int?
  @Option(help: "Passes (the first is a warm-up and is not counted when there are several).") var repeats = 2
  @Flag(help: "Also time text embedding of 256 generated captions.") var text = false
  @Option(help: "fp32, bf16 or fp16 (autocast).") var precision = "fp32"
  @Option(help: "cpu, cuda or cuda:N.") var device = "cpu"
  @Flag(help: "Random weights from config.json (no weight files needed).") var randomInit = false

  func run() throws {
    let device = try benchDevice(self.device)
    let cast = try benchAutocast(precision)
    Torch.threads = threads
    let bundle = try ModelRegistry.load(ModelLoadOptions(type: modelType ?? "bench", pretrainedDir: model, canonicalize: false,
                                        randomInit: randomInit ? try Generator(seed: 0) : nil, imageSize: imageSize, device: device))
    let files = try walkImages(images)
    guard !files.isEmpty else { throw ValidationError("no images under \(images)") }
    let embedder = Embedder(bundle: bundle, batchSize: batchSize, workers: workers ?? threads)
    var best = Double.infinity
    for pass in 0..<repeats {
      let t = DispatchTime.now().uptimeNanoseconds
      // The model runs on this thread (the loader threads only decode), so the scope covers it;
      // each batch's embeddings are read back to the host, so the time includes the device's work.
      _ = try noGrad {
        try autocast(device, dtype: cast ?? .bfloat16, enabled: cast != nil) { try embedder.images(files, progressLabel: "pass \(pass + 1)") }
      }
      let s = Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
      if repeats == 1 || pass > 0 { best = min(best, s) }
    }
    print(String(format: "clipkit  image embedding: %d images, batch %d, %d threads, %@, %@: %.2f images/s%@", files.count, batchSize, threads,
                 precision, device.description, Double(files.count) / best, benchPeakMemory(device)))
    if text {
      let captions = (0..<256).map { "a photo of item number \($0) on a wooden table" }
      let t = DispatchTime.now().uptimeNanoseconds
      _ = try noGrad { try embedder.texts(captions) }
      let s = Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
      print(String(format: "clipkit  text embedding: 256 captions, batch %d: %.1f texts/s", batchSize, 256 / s))
    }
  }
}

struct BenchTrain: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Training-step throughput (forward, SigLIP loss, backward, AdamW) on synthetic batches; prints images/s, FLOPs and MFU.")

  @Option(help: "Hugging Face model directory (config.json; weights are not needed).") var model: String
  @Option(help: "Batch size.") var batchSize = 16
  @Option(help: "libtorch CPU threads.") var threads = 2
  @Option(help: "Timed steps (after the warm-up steps).") var steps = 5
  @Option(help: "Untimed warm-up steps.") var warmup = 1
  @Option(help: "fp32, bf16 or fp16 (autocast; fp16 with loss scaling).") var precision = "fp32"
  @Option(help: "cpu, cuda or cuda:N.") var device = "cpu"
  @Option(help: "Peak dense TFLOP/s of the device at this precision, for MFU (H100/H200 SXM bf16: 989).") var peakTflops: Double?
  @Option(help: "LoRA rank: TAO's peft with both towers in lora mode (q/k/v/out) instead of a full fine-tune.") var loraRank: Int?
  @Option(help: "With --lora-rank: the last N blocks of each tower (0: all).") var loraBlocks = 3

  func run() throws {
    let device = try benchDevice(self.device)
    let cast = try benchAutocast(precision)
    Torch.threads = threads
    let bundle = try ModelRegistry.load(ModelLoadOptions(type: "bench", pretrainedDir: model, canonicalize: false, initLogitScale: 2.3026,
                                        initLogitBias: -10, randomInit: try Generator(seed: 0), device: device))
    if let r = loraRank {
      var spec = try Spec.load(yaml: "")
      for o in ["peft.enabled=true", "peft.vision.mode=lora", "peft.text.mode=lora", "peft.vision.rank=\(r)", "peft.text.rank=\(r)",
                "peft.vision.alpha=\(2 * r)", "peft.text.alpha=\(2 * r)", "peft.vision.num_last_blocks=\(loraBlocks)",
                "peft.text.num_last_blocks=\(loraBlocks)"] { spec = try spec.overriding(o) }
      try injectPEFT(bundle.encoder, try spec.config().peft)
    }
    let adapter = bundle.encoder.module
    adapter.train()
    let groups = parameterGroups(bundle.encoder, optim: try Spec.load(yaml: "").config().train.optim)
    let opt = AdamW(groups: groups, betas: (0.9, 0.95), eps: 1e-6)
    let scaler = cast == .float16 ? GradScaler() : nil
    let (h, w) = bundle.transform.outputSize
    let g = try Generator(seed: 1)
    let pixels = try Tensor.randn([batchSize, 3, h, w], generator: g).upload(to: device)
    let textLength = try bundle.tokenize(["x"]).ids[0].count
    let ids = try Tensor.randint(0, 1000, [batchSize, textLength], generator: g).upload(to: device)
    let params = groups.flatMap { $0.params.map(\.1) }
    func step() throws {
      let loss = try autocast(device, dtype: cast ?? .bfloat16, enabled: cast != nil) { () throws -> Tensor in
        try ContrastiveLoss.siglip(image: try bundle.encoder.encodeImages(pixels).to(.float32),
                                   text: try bundle.encoder.encodeTexts(ids, attentionMask: nil).to(.float32),
                                   logitScale: bundle.encoder.logitScale, logitBias: bundle.encoder.logitBias)
      }
      try opt.zeroGrad()
      if let scaler {
        try scaler.scaled(loss).backward()
        try scaler.step(params) { try opt.step() }
      } else {
        try loss.backward()
        try opt.step()
      }
    }
    for _ in 0..<max(warmup, 1) { try step() }
    try Torch.synchronize(device)
    let t = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<steps { try step() }
    try Torch.synchronize(device)
    let s = Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
    let flops = TrainingFLOPs.siglipStep(bundle.encoder.module, batch: batchSize, imageTokens: (h / patchSize(bundle)) * (w / patchSize(bundle)),
                                         textTokens: textLength)
    let achieved = flops * Double(steps) / s / 1e12
    var line = String(format: "clipkit  train step: batch %d, %d threads, %@, %@: %.2f images/s (%.3f s/step), %.1f TFLOP/s", batchSize, threads,
                      precision, device.description, Double(batchSize * steps) / s, s / Double(steps), achieved)
    if let peak = peakTflops { line += String(format: ", MFU %.1f %%", 100 * achieved / peak) }
    print(line + benchPeakMemory(device))
  }

  private func patchSize(_ b: CLIPBundle) -> Int {
    // The patch embedding's kernel (conv [D, 3, p, p]) or NaFlex's linear over 3·p² values.
    for (k, p) in b.encoder.module.namedParameters() where k.hasSuffix("patch_embedding.weight") {
      return p.rank == 4 ? p.shape[3] : Int((Double(p.shape[1] / 3)).squareRoot())
    }
    return 16
  }
}

/// Model FLOPs of one SigLIP training step, counted the way MFU is usually counted: every matmul
/// of the forward pass (2·in·out per token for each weight matrix, the patch convolution as one,
/// and the attention products 2·2·T²·D per layer) times three for forward + backward. Embedding
/// lookups, norms and activations are not counted. tools/bench_pytorch_train.py counts the same.
enum TrainingFLOPs {
  static func siglipStep(_ m: Module, batch: Int, imageTokens: Int, textTokens: Int) -> Double {
    var forward = 0.0
    for (k, p) in m.namedParameters() {
      let vision = k.contains("vision_model."), tokens = Double(vision ? imageTokens : textTokens)
      guard k.hasSuffix("weight"), !k.contains("embedding.weight") || k.contains("patch_embedding") else { continue }
      let size = Double(p.count)
      if p.rank == 2 || p.rank == 4 {
        // Pooling heads see one query token; their key/value projections see every token.
        if k.contains(".head.") {
          forward += 2 * size * (k.hasSuffix("in_proj_weight") ? (1 + 2 * tokens) / 3 : 1)
        } else {
          forward += 2 * size * tokens
        }
      }
    }
    // Attention scores and weighted sums: 2·T²·D each, per layer.
    for (k, p) in m.namedParameters() where k.hasSuffix("self_attn.q_proj.weight") {
      let t = Double(k.contains("vision_model.") ? imageTokens : textTokens)
      forward += 4 * t * t * Double(p.shape[0])
    }
    return 3 * forward * Double(batch)
  }
}

/// `clipkit bench parity`: the same model on the CPU and on a GPU must give the same embeddings:
/// fp32 within 1e-4 (they are unit vectors, so absolute is relative), bf16 autocast with cosine
/// ≥ 0.999 to the CPU's fp32. Exits non-zero otherwise (scripts/gpu-check.sh runs it per family).
struct BenchParity: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "parity", abstract: "Compare a device's image and text embeddings with the CPU's (fp32 and bf16).")

  @Option(help: "Model directory (SigLIP / SigLIP 2 / open_clip) with weights.") var model: String
  @Option(help: "Folder of images (searched recursively).") var images: String
  @Option(help: "cuda or cuda:N.") var device = "cuda"
  @Option(help: "Largest fp32 difference allowed.") var fp32Tolerance = 1e-4
  @Option(help: "Smallest bf16 cosine allowed.") var bf16Cosine = 0.999

  func run() throws {
    let device = try benchDevice(self.device)
    try Torch.setTF32(matmul: false, cudnn: false)
    let cpu = try ModelRegistry.load(ModelLoadOptions(type: "parity", pretrainedDir: model, canonicalize: false))
    let gpu = try ModelRegistry.load(ModelLoadOptions(type: "parity", pretrainedDir: model, canonicalize: false, device: device))
    let decoder = ImageDecoder()
    let inputs = try walkImages(images).map { cpu.preprocess(try decoder.decode(file: $0)) }
    guard !inputs.isEmpty else { throw ValidationError("no images under \(images)") }
    let texts = ["a photo of a cat", "two dogs playing in the snow", "a red circle", "an aerial view of a city at night"]
    let ids = try cpu.tokenize(texts)
    let idTensor = try Tensor(ids.ids.flatMap { $0.map(Int64.init) }, shape: [texts.count, ids.ids[0].count])
    func embed(_ b: CLIPBundle, _ cast: DType?) throws -> (Tensor, Tensor) {
      try noGrad {
        try autocast(b.encoder.module.device, dtype: cast ?? .bfloat16, enabled: cast != nil) {
          (try b.encoder.encodeImages(inputs).to(.float32, device: .cpu), try b.encoder.encodeTexts(idTensor, attentionMask: nil).to(.float32, device: .cpu))
        }
      }
    }
    let (ri, rt) = try embed(cpu, nil)
    var failed: [String] = []
    for (label, cast) in [("fp32", DType?.none), ("bf16", .bfloat16)] {
      let (gi, gt) = try embed(gpu, cast)
      for (tower, a, b) in [("image", gi, ri), ("text", gt, rt)] {
        let maxAbs = try (a - b).abs().amax().item()
        let cos = try ((a * b).sum(dims: [-1]) / (a.norm(dims: [-1]) * b.norm(dims: [-1]))).amin().item()
        let ok = cast == nil ? maxAbs <= fp32Tolerance : cos >= bf16Cosine
        print(String(format: "parity %@ %@ %@: max |diff| %.2e, min cosine %.6f  %@", (model as NSString).lastPathComponent, label, tower,
                     maxAbs, cos, ok ? "ok" : "FAIL"))
        if !ok { failed.append("\(label) \(tower)") }
      }
    }
    if !failed.isEmpty { throw ValidationError("\(device) differs from the CPU: \(failed.joined(separator: ", "))") }
  }
}

struct BenchShards: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "shards",
    abstract: "Index WebDataset shards and read one epoch of their images (bytes, no decoding) as training does; prints MB/s.")

  @Argument(help: "A shard list file (local paths, s3://, http(s)://, pipe: lines; brace patterns expand).") var list: String
  @Option(help: "Loader threads, as dataset.train.num_workers.") var workers = 8
  @Option(help: "Samples per loader batch.") var batch = 64
  @Option(help: ArgumentHelp("Drop this folder's files from the page cache before the epoch read, so that it reads from the disk (repeatable).",
                             discussion: "The shard folder for a local list; the folder `bench serve-files` serves for a remote one."))
  var cold: [String] = []

  func run() throws {
    RemoteShards.install()
    let shards = try WebDataset.shards(rootDir: nil, listFile: list)
    guard !shards.isEmpty else { throw ValidationError("no shards in \(list)") }
    var start = DispatchTime.now().uptimeNanoseconds
    let set = WebDataset.index(shards)
    let indexSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    guard set.unopened.isEmpty && set.brokenShards.isEmpty else {
      throw ValidationError("unreadable shards: \((set.unopened + set.brokenShards).map { "\($0) (\(set.damage[$0] ?? "?"))" }.joined(separator: ", "))")
    }
    var rng = SeededRandom(seed: 0)
    let order = WebDataset.epochOrder(set.pairs, rng: &rng)
    let batches = stride(from: 0, to: order.count, by: batch).map { Array(order[$0..<min($0 + batch, order.count)]) }
    let pairs = set.pairs
    for dir in cold { try Self.evict(dir) }
    // The clock starts before `plan`: its background streams start reading at once.
    start = DispatchTime.now().uptimeNanoseconds
    RemoteReads.shared.plan(order.map { set.pairs[$0].image })
    let loader = BatchPrefetcher<Int>(batches: batches, workers: workers, depth: 4) { (try? pairs[$0].image.bytes().count) ?? -1 }
    var bytes = 0, samples = 0, failed = 0
    while let b = loader.next() {
      for n in b {
        if let n, n >= 0 { bytes += n; samples += 1 } else { failed += 1 }
      }
    }
    let readSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    guard failed == 0 else { throw ValidationError("\(failed) samples could not be read") }
    print(String(format: "clipkit  %d shards, %d samples: index %.2f s; epoch read %.1f MB of images in %.2f s = %.1f MB/s (%d threads, %d requests)",
                 shards.count, samples, indexSeconds, Double(bytes) / 1e6, readSeconds, Double(bytes) / 1e6 / readSeconds, workers,
                 RemoteReads.shared.opened))
  }

  /// Drops the folder's files' cached pages (clean pages go; no privileges needed).
  static func evict(_ dir: String) throws {
    guard let names = FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] else {
      throw ValidationError("--cold \(dir): not a readable folder")
    }
    for name in names {
      let fd = open(dir + "/" + name, O_RDONLY)
      guard fd >= 0 else { continue }
      _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
      close(fd)
    }
  }
}

struct BenchSearch: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "search",
    abstract: "Exact top-k throughput over an embedding file as `clipkit search` runs it (file read in blocks, products and top-k on libtorch); prints queries/s.",
    discussion: "Queries are the file's first rows. Compare: python tools/numpy_retrieval.py bench FILE QUERIES K.")

  @Argument(help: "An image_embeddings.h5 or text_embeddings.h5 (TAO's layout, any float type).") var file: String
  @Option(help: "Queries searched together in one pass.") var queries = 64
  @Option(name: .customLong("top-k")) var topK = 10
  @Option(help: "Rows per block.") var blockRows = 32_768
  @Option(help: "Passes (the first warms the page cache).") var repeats = 3

  func run() throws {
    let reader = try (try? EmbeddingReader(path: file, kind: .image)) ?? EmbeddingReader(path: file, kind: .text)
    let q = try Tensor(try reader.rows(0..<min(queries, reader.count)), shape: [min(queries, reader.count), reader.dimension])
    for pass in 1...max(1, repeats) {
      let start = DispatchTime.now().uptimeNanoseconds
      let hits = try ExactSearch.topK(queries: q, in: reader, k: topK, blockRows: blockRows)
      let s = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      precondition(hits.count == q.size(0))
      print(String(format: "clipkit  pass %d: %d x %d vectors, %d queries, top-%d: %.2f s = %.1f queries/s (%.2f M vectors/s scanned)",
                   pass, reader.count, reader.dimension, q.size(0), topK, s, Double(q.size(0)) / s, Double(reader.count) / s / 1e6))
    }
  }
}
