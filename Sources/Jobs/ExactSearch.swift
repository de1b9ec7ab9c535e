import Foundation
import Retrieval
import Torch

/// One search result: a row of the embedding file and its cosine similarity to the query.
public struct Hit: Sendable, Equatable {
  public let row: Int
  public let score: Float
}

/// Blocks of an embedding file as L2-normalised [rows, D] tensors, the next block read (and
/// decompressed by HDF5) on another thread while the caller computes on this one.
struct BlockStream {
  let reader: EmbeddingReader
  let blockRows: Int
  private var position: Int
  private var pending: (range: Range<Int>, group: DispatchGroup, box: Box)?
  final class Box: @unchecked Sendable { var result: Result<(bytes: [UInt8], half: Bool), Error> = .success(([], false)) }

  init(_ reader: EmbeddingReader, blockRows: Int, from start: Int = 0) {
    self.reader = reader
    self.blockRows = max(1, blockRows)
    self.position = start
  }

  private mutating func prefetch() {
    guard position < reader.count else { pending = nil; return }
    let range = position..<min(position + blockRows, reader.count)
    position = range.upperBound
    let (group, box, reader) = (DispatchGroup(), Box(), reader)
    DispatchQueue.global().async(group: group) { box.result = Result { try reader.rawRows(range) } }
    pending = (range, group, box)
  }

  /// (first row, normalised block), or nil at the end.
  mutating func next() throws -> (start: Int, block: Tensor)? {
    if pending == nil { prefetch() }
    guard let (range, group, box) = pending else { return nil }
    group.wait()
    prefetch()
    let (bytes, half) = try box.result.get()
    let x = try bytes.withUnsafeBytes { try Tensor(bytes: $0, shape: [range.count, reader.dimension], dtype: half ? .float16 : .float32) }
    return (range.lowerBound, try (half ? x.to(.float32) : x).l2Normalized(dim: 1))
  }

  /// Calls `body` with every block from row `start` on.
  static func forEach(_ reader: EmbeddingReader, blockRows: Int, from start: Int = 0,
                      _ body: (_ start: Int, _ block: Tensor) throws -> Void) throws {
    var s = BlockStream(reader, blockRows: blockRows, from: start)
    while let (i, x) = try s.next() { try body(i, x) }
  }
}

public enum ExactSearch {
  /// Exact top-k rows by cosine similarity for each query ([Q, D], any norm): one matrix product
  /// per block of rows, each block's top-k merged into the running best, so memory stays at one
  /// block plus Q x k whatever the file's size.
  public static func topK(queries: Tensor, in reader: EmbeddingReader, k: Int, blockRows: Int = 32_768) throws -> [[Hit]] {
    guard queries.size(1) == reader.dimension else {
      throw ActionError.input("the query embeddings have dimension \(queries.size(1)) but \(reader.path) holds dimension \(reader.dimension): it was made by another model")
    }
    let q = try queries.to(.float32).l2Normalized(dim: 1)
    let nq = q.size(0)
    var best = [[Hit]](repeating: [], count: nq)
    try BlockStream.forEach(reader, blockRows: blockRows) { start, x in
      let kk = min(k, x.size(0))
      let (v, i) = try q.matmul(try x.transpose(0, 1)).topk(kk, dim: 1)
      let (vs, ix) = (try v.floats(), try i.toArray(Int64.self))
      for r in 0..<nq {
        var merged = best[r]
        for c in 0..<kk { merged.append(Hit(row: start + Int(ix[r * kk + c]), score: vs[r * kk + c])) }
        // Highest score first; equal scores by row, so results do not depend on the block size.
        merged.sort { $0.score != $1.score ? $0.score > $1.score : $0.row < $1.row }
        best[r] = Array(merged.prefix(k))
      }
    }
    return best
  }

  /// Groups of rows whose cosine similarity reaches `threshold`, joined transitively (connected
  /// components), each sorted by row, groups by their first row. Blockwise: memory holds two
  /// blocks (or, up to `cacheBytes`, the whole normalised file), never the N x N matrix.
  static func duplicateGroups(_ reader: EmbeddingReader, threshold: Float, blockRows: Int = 4096,
                              cacheBytes: Int = 4 << 30, progress: Progress? = nil) throws -> [[Int]] {
    let n = reader.count
    var parent = Array(0..<n)
    func find(_ x: Int) -> Int {
      var r = x
      while parent[r] != r { r = parent[r] }
      var y = x
      while parent[y] != r { (parent[y], y) = (r, parent[y]) }
      return r
    }
    func union(_ a: Int, _ b: Int) {
      let (ra, rb) = (find(a), find(b))
      if ra != rb { parent[max(ra, rb)] = min(ra, rb) }
    }
    let cache = n * reader.dimension * 4 <= cacheBytes
    var cached: [Tensor] = []
    if cache { try BlockStream.forEach(reader, blockRows: blockRows) { _, x in cached.append(x) } }
    func blocks(from start: Int, _ body: (Int, Tensor) throws -> Void) throws {
      guard cache else { return try BlockStream.forEach(reader, blockRows: blockRows, from: start, body) }
      for b in (start / blockRows)..<cached.count { try body(b * blockRows, cached[b]) }
    }
    try blocks(from: 0) { i0, xi in
      try blocks(from: i0) { j0, xj in
        var s = try xi.matmul(try xj.transpose(0, 1))
        // On the diagonal only pairs above it count (a row with itself would always match).
        if i0 == j0 { s = try s.maskedFill(try Tensor.ones([s.size(0), s.size(1)]).tril(0).ne(0), -2) }
        // Only rows with some partner at or over the threshold are read back.
        let rowMax = try s.amax(dims: [1]).floats()
        for r in rowMax.indices where rowMax[r] >= threshold {
          let hits = try s.select(dim: 0, index: r).ge(Double(threshold)).toArray(Bool.self)
          for c in hits.indices where hits[c] && j0 + c > i0 + r { union(i0 + r, j0 + c) }
        }
      }
      progress?.advance(xi.size(0))
    }
    var groups: [Int: [Int]] = [:]
    for r in 0..<n { groups[find(r), default: []].append(r) }
    return groups.values.filter { $0.count > 1 }.sorted { $0[0] < $1[0] }
  }
}

