import CH5
import Foundation

/// Reads an embedding file (`image_embeddings.h5` / `text_embeddings.h5`, TAO's layout) a block
/// of rows at a time, so that search and dedup stream files larger than memory. Any floating-point
/// `embeddings` dataset (float16 from other tools included) is read as float32.
public final class EmbeddingReader: @unchecked Sendable {
  public let path: String
  public let kind: EmbeddingFile.Kind
  public let count: Int
  public let dimension: Int
  private let handle: OpaquePointer
  private let lock = NSLock()

  public init(path: String, kind: EmbeddingFile.Kind) throws {
    var n: UInt64 = 0, d: UInt64 = 0
    var err = [CChar](repeating: 0, count: 256)
    guard FileManager.default.fileExists(atPath: path) else { throw EmbeddingFileError.read(path: path, reason: "no such file") }
    guard let h = ck_h5_reader_open(path, kind.labelsName, &n, &d, &err, err.count) else {
      throw EmbeddingFileError.read(path: path, reason: String(cString: err))
    }
    guard d > 0 else {
      ck_h5_reader_close(h)
      throw EmbeddingFileError.read(path: path, reason: "embeddings have dimension 0")
    }
    self.path = path
    self.kind = kind
    self.count = Int(n)
    self.dimension = Int(d)
    self.handle = h
  }

  deinit { ck_h5_reader_close(handle) }

  /// Whether the file stores IEEE half floats (`rawRows` then returns them unconverted).
  public var storesHalf: Bool { ck_h5_reader_is_half(handle) != 0 }

  /// Rows `range` as a row-major [range.count x dimension] array.
  public func rows(_ range: Range<Int>) throws -> [Float] {
    var out = [Float](repeating: 0, count: range.count * dimension)
    try out.withUnsafeMutableBytes { try read(range, into: $0, half: false) }
    return out
  }

  /// Rows `range` as stored when the file holds halves (little-endian binary16, 2 bytes a value),
  /// else as float32 (4 bytes a value): HDF5 widens halves in software, far slower than a caller
  /// widening them in bulk.
  public func rawRows(_ range: Range<Int>) throws -> (bytes: [UInt8], half: Bool) {
    let half = storesHalf
    var out = [UInt8](repeating: 0, count: range.count * dimension * (half ? 2 : 4))
    try out.withUnsafeMutableBytes { try read(range, into: $0, half: half) }
    return (out, half)
  }

  private func read(_ range: Range<Int>, into buffer: UnsafeMutableRawBufferPointer, half: Bool) throws {
    guard range.lowerBound >= 0, range.upperBound <= count else {
      throw EmbeddingFileError.read(path: path, reason: "rows \(range) out of 0..<\(count)")
    }
    if range.isEmpty { return }
    var err = [CChar](repeating: 0, count: 256)
    let rc = lock.withLock {
      ck_h5_reader_rows(handle, UInt64(range.lowerBound), UInt64(range.count), UInt64(dimension), buffer.baseAddress, half ? 1 : 0, &err, err.count)
    }
    guard rc == 0 else { throw EmbeddingFileError.read(path: path, reason: String(cString: err)) }
  }

  /// The labels (image paths or texts) of `rows`, in that order.
  public func labels(_ rows: [Int]) throws -> [String] {
    guard let bad = rows.first(where: { $0 < 0 || $0 >= count }) else {
      var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: rows.count)
      var err = [CChar](repeating: 0, count: 256)
      let idx = rows.map { UInt64($0) }
      let rc = lock.withLock { ck_h5_reader_labels(handle, idx, UInt64(rows.count), &ptrs, &err, err.count) }
      defer { ptrs.forEach { free($0) } }
      guard rc == 0 else { throw EmbeddingFileError.read(path: path, reason: String(cString: err)) }
      return ptrs.map { $0.map { String(cString: $0) } ?? "" }
    }
    throw EmbeddingFileError.read(path: path, reason: "label row \(bad) out of 0..<\(count)")
  }

  /// Every label, in row order (read in blocks).
  public func allLabels(block: Int = 65_536) throws -> [String] {
    var out: [String] = []
    out.reserveCapacity(count)
    for start in stride(from: 0, to: count, by: block) { out += try labels(Array(start..<min(start + block, count))) }
    return out
  }
}
