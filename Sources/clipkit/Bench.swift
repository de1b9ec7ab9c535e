import ArgumentParser
import Foundation
import Jobs
import Imaging
import Models
import Spec
import Torch
import Training

/// Benchmarks that print figures a user can reproduce (see the README's "Benchmarks").
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Measure ClipKit's throughput (image pipeline, embedding).",
    subcommands: [BenchImages.self, BenchEmbed.self, BenchTrain.self])
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

struct BenchEmbed: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "embed",
    abstract: "Whole-job image embedding (decode, preprocess, model) of a folder with a model directory; prints images/s.")

  @Option(help: "Hugging Face model directory (config.json, weights, tokenizer, preprocessor_config.json).") var model: String
  @Option(help: "Folder of images (searched recursively).") var images: String
  @Option(help: "Batch size.") var batchSize = 16
  @Option(help: "libtorch CPU threads.") var threads = 2
  @Option(help: "Passes (the first is a warm-up and is not counted when there are several).") var repeats = 2
  @Flag(help: "Also time text embedding of 256 generated captions.") var text = false
  @Option(help: "fp32 or bf16 (autocast).") var precision = "fp32"

  func run() throws {
    guard ["fp32", "bf16"].contains(precision) else { throw ValidationError("--precision must be fp32 or bf16") }
    Torch.threads = threads
    let bundle = try ModelRegistry.load(type: "bench", pretrainedDir: model, canonicalize: false)
    let files = try walkImages(images)
    guard !files.isEmpty else { throw ValidationError("no images under \(images)") }
    let embedder = Embedder(bundle: bundle, batchSize: batchSize, workers: threads)
    var best = Double.infinity
    for pass in 0..<repeats {
      let t = DispatchTime.now().uptimeNanoseconds
      // The model runs on this thread (the loader threads only decode), so the scope covers it.
      _ = try autocast(.cpu, dtype: .bfloat16, enabled: precision == "bf16") { try embedder.images(files, progressLabel: "pass \(pass + 1)") }
      let s = Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
      if repeats == 1 || pass > 0 { best = min(best, s) }
    }
    print(String(format: "clipkit  image embedding: %d images, batch %d, %d threads, %@: %.2f images/s", files.count, batchSize, threads,
                 precision, Double(files.count) / best))
    if text {
      let captions = (0..<256).map { "a photo of item number \($0) on a wooden table" }
      let t = DispatchTime.now().uptimeNanoseconds
      _ = try embedder.texts(captions)
      let s = Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
      print(String(format: "clipkit  text embedding: 256 captions, batch %d: %.1f texts/s", batchSize, 256 / s))
    }
  }
}

struct BenchTrain: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Training-step throughput (forward, SigLIP loss, backward, AdamW) on synthetic batches; prints images/s.")

  @Option(help: "Hugging Face model directory (config.json; weights are not needed).") var model: String
  @Option(help: "Batch size.") var batchSize = 16
  @Option(help: "libtorch CPU threads.") var threads = 2
  @Option(help: "Timed steps (after one warm-up step).") var steps = 5
  @Option(help: "fp32 or bf16 (autocast).") var precision = "fp32"

  func run() throws {
    Torch.threads = threads
    let bundle = try ModelRegistry.load(type: "bench", pretrainedDir: model, canonicalize: false, initLogitScale: 2.3026,
                                        initLogitBias: -10, randomInit: try Generator(seed: 0))
    let adapter = bundle.encoder.module
    adapter.train()
    let groups = parameterGroups(bundle.encoder, optim: try Spec.load(yaml: "").config().train.optim)
    let opt = AdamW(groups: groups, betas: (0.9, 0.95), eps: 1e-6)
    let (h, w) = bundle.transform.outputSize
    let g = try Generator(seed: 1)
    let pixels = try Tensor.randn([batchSize, 3, h, w], generator: g)
    let vocab = try bundle.tokenize(["x"]).ids[0].count
    let ids = try Tensor.randint(0, 1000, [batchSize, vocab], generator: g)
    func step() throws {
      let loss = try autocast(.cpu, dtype: .bfloat16, enabled: precision == "bf16") { () throws -> Tensor in
        try ContrastiveLoss.siglip(image: try bundle.encoder.encodeImages(pixels).to(.float32),
                                   text: try bundle.encoder.encodeTexts(ids, attentionMask: nil).to(.float32),
                                   logitScale: bundle.encoder.logitScale, logitBias: bundle.encoder.logitBias)
      }
      try opt.zeroGrad()
      try loss.backward()
      try opt.step()
    }
    try step()
    let t = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<steps { try step() }
    let s = Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
    print(String(format: "clipkit  train step: batch %d, %d threads, %@: %.2f images/s (%.2f s/step)", batchSize, threads, precision,
                 Double(batchSize * steps) / s, s / Double(steps)))
  }
}
