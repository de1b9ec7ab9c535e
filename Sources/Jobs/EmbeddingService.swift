import Foundation
import Imaging
import Models
import Spec
import Torch

public enum ServiceError: Error, LocalizedError, Equatable {
  /// The model is still loading (or failed to load).
  case notReady(String)
  /// More items wait than serve.max_queue allows.
  case queueFull(Int)
  /// An input item the model cannot take (the index is the request's).
  case input(index: Int, reason: String)
  case failed(String)

  public var errorDescription: String? {
    switch self {
    case .notReady(let m): return m
    case .queueFull(let n): return "the server is busy: \(n) items are already waiting (serve.max_queue); retry later"
    case .input(let i, let r): return "input[\(i)]: \(r)"
    case .failed(let m): return m
    }
  }
}

/// What `clipkit serve` runs: the spec's model behind a dynamic batcher. Requests hand in prepared
/// items (token-ready texts, preprocessed images) and wait; one worker thread takes up to
/// serve.max_batch queued items (waiting at most serve.max_wait_ms for more after the first),
/// runs the texts and the images of that batch through the model and hands every request its
/// rows. libtorch runs on that thread only, never on Swift's cooperative pool.
public final class EmbeddingService: @unchecked Sendable {
  public enum Item: Sendable {
    case text(String)
    case image(ImageInput)
  }

  public let config: CLIPExperimentConfig
  public var serve: ServeConfig { config.serve }
  /// The id `GET /v1/models` lists and requests must name: the spec's model.type.
  public var modelID: String { config.model.type }
  public let createdAt = Int(Date().timeIntervalSince1970)
  let spec: Spec

  private let lock = NSCondition()
  private var bundle: CLIPBundle?
  private var loadError: String?
  private var queue: [(request: Pending, index: Int)] = []
  private var stopping = false
  private var worker: Thread?
  /// Sizes of the batches run so far (the metrics histogram reads them).
  public let batchSizes = Histogram(bounds: [1, 2, 4, 8, 16, 32, 64, 128])

  /// One request's items and where their embeddings go.
  final class Pending: @unchecked Sendable {
    let items: [Item]
    var rows: [[Float]?]
    var remaining: Int
    var done = false
    let finish: (Result<[[Float]], Error>) -> Void
    init(_ items: [Item], finish: @escaping (Result<[[Float]], Error>) -> Void) {
      self.items = items
      rows = Array(repeating: nil, count: items.count)
      remaining = items.count
      self.finish = finish
    }
  }

  /// Validates the spec (its `serve` section included) and checks the weights it names exist;
  /// the model itself loads in `start()`.
  public init(specFile: String, overrides: [String] = []) throws {
    spec = try Spec.load(file: specFile, overrides: overrides)
    try spec.requireSet(["model"])
    try spec.refuseUnsupported(action: "serve")
    config = try spec.config()
    let s = config.serve
    if s.checkpoint != nil && s.trtEngine != nil {
      throw ActionError.input("serve.checkpoint and serve.trt_engine are both set: give one (a checkpoint, or an exported .onnx/.engine)")
    }
    if let c = s.checkpoint, !FileManager.default.fileExists(atPath: c) { throw ActionError.input("serve.checkpoint \(c) does not exist") }
    if let e = s.trtEngine, !FileManager.default.fileExists(atPath: e) { throw ActionError.input("serve.trt_engine \(e) does not exist") }
  }

  public var isReady: Bool { lock.withLock { bundle != nil } }
  public var contextLength: Int { lock.withLock { bundle?.contextLength ?? 0 } }
  public var queued: Int { lock.withLock { queue.count } }

  /// Loads the model on the worker thread (the server answers health checks meanwhile), then
  /// serves batches until `stop()`.
  public func start() {
    let t = Thread { [self] in
      do {
        let loaded = try loadBundle()
        lock.withLock { bundle = loaded }
        Console.current.out("Model \(modelID) ready (\(loaded.family), context \(loaded.contextLength))\n")
      } catch {
        lock.withLock { loadError = oneLine(error) }
        Console.current.err("error: the model could not be loaded: \(oneLine(error))\n")
        return
      }
      run()
    }
    t.name = "clipkit-serve-model"
    t.stackSize = 8 << 20
    worker = t
    t.start()
  }

  /// Ends the worker after the items already queued.
  public func stop() {
    lock.withLock {
      stopping = true
      lock.broadcast()
    }
  }

  private func loadBundle() throws -> CLIPBundle {
    var ctx = ActionContext(name: "inference", spec: spec, config: config, resultsDir: "", status: try StatusLog(path: nil), hooks: JobHooks())
    ctx.device = try placement(ctx)
    try Torch.resetGlobalSettings()
    if let engine = serve.trtEngine { return try loadDeployed(engine, section: "serve", gpu: config.inference.gpuIds.first ?? 0) }
    return try loadModel(ctx, checkpoint: serve.checkpoint)
  }

  /// The model's preprocessing of one decoded image (callers run it on their own thread).
  public func preprocess(_ image: RGBImage) throws -> ImageInput {
    guard let b = lock.withLock({ bundle }) else { throw ServiceError.notReady(lock.withLock { loadError } ?? "the model is still loading") }
    return b.preprocess(image)
  }

  /// Normalised embeddings of `items`, in order, once a batch has run them.
  public func embed(_ items: [Item]) async throws -> [[Float]] {
    if items.isEmpty { return [] }
    return try await withCheckedThrowingContinuation { (c: CheckedContinuation<[[Float]], Error>) in
      let p = Pending(items) { c.resume(with: $0) }
      lock.withLock {
        if bundle == nil {
          p.done = true
          c.resume(throwing: ServiceError.notReady(loadError.map { "the model failed to load: \($0)" } ?? "the model is still loading"))
        } else if stopping {
          p.done = true
          c.resume(throwing: ServiceError.notReady("the server is shutting down"))
        } else if queue.count + items.count > serve.maxQueue {
          p.done = true
          c.resume(throwing: ServiceError.queueFull(queue.count))
        } else {
          queue += items.indices.map { (p, $0) }
          lock.broadcast()
        }
      }
    }
  }

  private func run() {
    let maxWait = Double(serve.maxWaitMs) / 1000
    while true {
      lock.lock()
      while queue.isEmpty && !stopping { lock.wait() }
      if queue.isEmpty && stopping { lock.unlock(); return }
      // The first item waits up to max_wait_ms for others to join its batch.
      let deadline = Date().addingTimeInterval(maxWait)
      while queue.count < serve.maxBatch && !stopping && lock.wait(until: deadline) {}
      let n = min(serve.maxBatch, queue.count)
      let batch = Array(queue.prefix(n))
      queue.removeFirst(n)
      let model = bundle!
      lock.unlock()
      batchSizes.observe(Double(n))
      let result = Result { try runBatch(batch, model) }
      lock.withLock {
        var finished: [(Pending, Result<[[Float]], Error>)] = []
        for (i, (p, index)) in batch.enumerated() where !p.done {
          switch result {
          case .success(let rows):
            p.rows[index] = rows[i]
            p.remaining -= 1
            if p.remaining == 0 { p.done = true; finished.append((p, .success(p.rows.map { $0! }))) }
          case .failure(let e):
            p.done = true
            finished.append((p, .failure(ServiceError.failed("the model failed on this batch: \(oneLine(e))"))))
          }
        }
        for (p, r) in finished { p.finish(r) }
      }
    }
  }

  /// One batch: texts through the text tower, images through the vision tower; rows in batch order.
  private func runBatch(_ batch: [(request: Pending, index: Int)], _ model: CLIPBundle) throws -> [[Float]] {
    var rows = [[Float]](repeating: [], count: batch.count)
    var texts: [(Int, String)] = [], images: [(Int, ImageInput)] = []
    for (i, (p, index)) in batch.enumerated() {
      switch p.items[index] {
      case .text(let t): texts.append((i, t))
      case .image(let x): images.append((i, x))
      }
    }
    if !texts.isEmpty {
      // (Its progress lines would be noise in a server's log.)
      let r = try Console.$current.withValue(Console(out: { _ in }, err: { _ in })) {
        try Embedder(bundle: model, batchSize: texts.count, workers: 1).texts(texts.map(\.1))
      }
      for (j, (i, _)) in texts.enumerated() { rows[i] = Array(r.embeddings[(j * r.dim)..<((j + 1) * r.dim)]) }
    }
    if !images.isEmpty {
      let e = try noGrad { try model.encoder.encodeImages(images.map(\.1)) }.to(device: .cpu).floats()
      let d = e.count / images.count
      for (j, (i, _)) in images.enumerated() { rows[i] = Array(e[(j * d)..<((j + 1) * d)]) }
    }
    return rows
  }
}

/// A Prometheus histogram: cumulative counts per upper bound, sum and count.
public final class Histogram: @unchecked Sendable {
  public let bounds: [Double]
  private var counts: [Int]
  private var sum = 0.0, count = 0
  private let lock = NSLock()
  public init(bounds: [Double]) {
    self.bounds = bounds
    counts = Array(repeating: 0, count: bounds.count)
  }
  public func observe(_ v: Double) {
    lock.withLock {
      for (i, b) in bounds.enumerated() where v <= b { counts[i] += 1 }
      sum += v
      count += 1
    }
  }
  /// The metric's lines in Prometheus' text format (`labels` like `route="/v1/embeddings"`).
  public func render(_ name: String, labels: String = "") -> String {
    lock.withLock {
      let sep = labels.isEmpty ? "" : ","
      var s = bounds.indices.map { "\(name)_bucket{\(labels)\(sep)le=\"\(Histogram.format(bounds[$0]))\"} \(counts[$0])\n" }.joined()
      s += "\(name)_bucket{\(labels)\(sep)le=\"+Inf\"} \(count)\n"
      let l = labels.isEmpty ? "" : "{\(labels)}"
      return s + "\(name)_sum\(l) \(sum)\n\(name)_count\(l) \(count)\n"
    }
  }
  static func format(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(v) }
}
