import CH5
import Foundation
import Paths

public enum EmbeddingFileError: Error, LocalizedError {
  case write(path: String, reason: String)
  case read(path: String, reason: String)
  public var errorDescription: String? {
    switch self {
    case .write(let p, let r): return "cannot write \(p): \(r)"
    case .read(let p, let r): return "cannot read \(p): \(r)"
    }
  }
}

/// TAO's embedding HDF5 files: `embeddings` (N x D float32, gzip 4), `image_paths` or `texts`
/// (variable-length UTF-8), attributes `num_images`/`num_texts`, `embedding_dim`, `embedding_type`.
public struct EmbeddingFile: Sendable, Equatable {
  public enum Kind: String, Sendable { case image, text
    var labelsName: String { self == .image ? "image_paths" : "texts" }
    var countName: String { self == .image ? "num_images" : "num_texts" }
  }
  public var kind: Kind
  public var embeddings: [Float]   // row-major N x D
  public var dimension: Int
  public var labels: [String]

  public init(kind: Kind, embeddings: [Float], dimension: Int, labels: [String]) {
    self.kind = kind
    self.embeddings = embeddings
    self.dimension = dimension
    self.labels = labels
  }

  /// Writes to a temporary file beside `path` and renames it into place, so a crash never leaves
  /// a half-written file under the final name.
  public func write(to path: String) throws {
    guard embeddings.count == labels.count * dimension else {
      throw EmbeddingFileError.write(path: path, reason: "\(labels.count) labels for \(embeddings.count / max(dimension, 1)) embeddings")
    }
    let dir = path.parentPath
    try? FileManager.default.createDirectory(atPath: dir.isEmpty ? "." : dir, withIntermediateDirectories: true)
    let tmp = "\(dir.isEmpty ? "." : dir)/.\((path as NSString).lastPathComponent).tmp-\(getpid())"
    var err = [CChar](repeating: 0, count: 256)
    var cstrings = labels.map { strdup($0) }
    defer { cstrings.forEach { free($0) } }
    let rc = embeddings.withUnsafeBufferPointer { e in
      cstrings.withUnsafeMutableBufferPointer { l in
        l.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: max(l.count, 1)) { lp in
          ck_h5_write_embeddings(tmp, e.baseAddress, UInt64(labels.count), UInt64(dimension), kind.labelsName, lp,
                                 kind.countName, kind.rawValue, &err, err.count)
        }
      }
    }
    guard rc == 0 else {
      unlink(tmp)
      throw EmbeddingFileError.write(path: path, reason: String(cString: err))
    }
    guard rename(tmp, path) == 0 else {
      unlink(tmp)
      throw EmbeddingFileError.write(path: path, reason: String(cString: strerror(errno)))
    }
  }

  /// HDF5 objects still open in any file (0 unless a call leaked one).
  public static var openHDF5Objects: Int { ck_h5_open_objects() }

  public static func read(_ path: String, kind: Kind) throws -> (file: EmbeddingFile, countAttribute: Int, typeAttribute: String) {
    var n: UInt64 = 0, d: UInt64 = 0, count: Int64 = 0
    var emb: UnsafeMutablePointer<Float>? = nil
    var labels: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
    var type = [CChar](repeating: 0, count: 64), err = [CChar](repeating: 0, count: 256)
    let rc = ck_h5_read_embeddings(path, kind.labelsName, kind.countName, &n, &d, &emb, &labels, &count, &type, type.count, &err, err.count)
    defer { ck_h5_free_read(emb, labels, n) }
    guard rc == 0 else { throw EmbeddingFileError.read(path: path, reason: String(cString: err)) }
    let values = Array(UnsafeBufferPointer(start: emb, count: Int(n * d)))
    let strings = (0..<Int(n)).map { labels![$0].map { String(cString: $0) } ?? "" }
    return (EmbeddingFile(kind: kind, embeddings: values, dimension: Int(d), labels: strings), Int(count), String(cString: type))
  }
}
