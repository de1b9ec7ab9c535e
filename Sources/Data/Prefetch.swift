import Foundation

/// Produces batches of samples on `workers` background threads, at most `depth` batches ahead of
/// the consumer, and hands them out in order. Each sample is made by `make(sampleID)` alone, so the
/// result does not depend on which thread made it or when (deterministic for a given seed).
/// With 0 workers, `next()` makes the batch itself (PyTorch's num_workers=0: no overlap).
public final class BatchPrefetcher<Sample: Sendable>: @unchecked Sendable {
  public typealias Make = @Sendable (Int) -> Sample?

  private let batches: [[Int]]
  private let depth: Int
  private let make: Make
  private let inline: Bool
  private let lock = NSCondition()
  // Guarded by `lock`.
  private var slots: [[Sample?]]
  private var pending: [Int]
  private var nextBatch = 0, nextSample = 0  // the next sample a worker takes
  private var consumed = 0
  private var stopped = false
  private var running = 0

  /// `batches[b]` lists the sample ids of batch b; batches before `start` are skipped (resuming
  /// mid-epoch).
  public init(batches: [[Int]], start: Int = 0, workers: Int, depth: Int = 2, make: @escaping Make) {
    self.batches = batches
    self.depth = max(depth, 1)
    self.make = make
    inline = workers <= 0
    slots = batches.map { [Sample?](repeating: nil, count: $0.count) }
    pending = batches.map(\.count)
    consumed = min(max(start, 0), batches.count)
    nextBatch = consumed
    guard !inline else { return }
    running = workers
    for w in 0..<workers {
      let t = Thread { [self] in work() }
      t.name = "clipkit-loader-\(w)"
      t.start()
    }
  }

  deinit { stop() }

  /// Ends the workers early (the consumer stopped, e.g. on an error); waits for them to leave.
  public func stop() {
    lock.lock()
    stopped = true
    lock.broadcast()
    while running > 0 { lock.wait() }
    lock.unlock()
  }

  /// The next batch in order (nil entries for samples `make` rejected); nil after the last one.
  public func next() -> [Sample?]? {
    lock.lock()
    defer { lock.unlock() }
    let b = consumed
    guard b < batches.count else { return nil }
    if inline {
      consumed += 1
      return batches[b].map { make($0) }
    }
    while pending[b] > 0 { lock.wait() }
    let out = slots[b]
    slots[b] = []
    consumed += 1
    lock.broadcast()
    return out
  }

  private func work() {
    lock.lock()
    defer {
      running -= 1
      lock.broadcast()
      lock.unlock()
    }
    while true {
      while !stopped && nextBatch < batches.count && nextBatch >= consumed + depth { lock.wait() }
      if stopped || nextBatch >= batches.count { return }
      let (b, i) = (nextBatch, nextSample)
      nextSample += 1
      if nextSample == batches[b].count { nextBatch += 1; nextSample = 0 }
      lock.unlock()
      let s = make(batches[b][i])
      lock.lock()
      if b >= consumed {
        slots[b][i] = s
        pending[b] -= 1
        if pending[b] == 0 { lock.broadcast() }
      }
    }
  }
}
