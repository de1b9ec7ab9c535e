import Foundation

public enum FileIOError: Error, LocalizedError {
  case write(path: String, reason: String)
  case read(path: String, reason: String)

  public var errorDescription: String? {
    switch self {
    case .write(let p, let r): return "cannot write \(p): \(r)"
    case .read(let p, let r): return "cannot read \(p): \(r)"
    }
  }
}

/// Writes a file so that a crash never leaves a partial file under the final name: the bytes go
/// to a temporary file in the same directory, are fsync'ed, renamed over the target, and the
/// directory is fsync'ed so the rename itself is durable.
public enum AtomicFile {
  public static func write(_ path: String, _ body: (FileHandle) throws -> Void) throws {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent().path
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let tmp = "\(dir)/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    guard FileManager.default.createFile(atPath: tmp, contents: nil) else {
      throw FileIOError.write(path: path, reason: "cannot create \(tmp): \(String(cString: strerror(errno)))")
    }
    do {
      let h = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp))
      do {
        try body(h)
        try h.synchronize()
        try h.close()
      } catch {
        try? h.close()
        throw error
      }
      guard rename(tmp, path) == 0 else {
        throw FileIOError.write(path: path, reason: String(cString: strerror(errno)))
      }
    } catch {
      unlink(tmp)
      if error is FileIOError { throw error }
      throw FileIOError.write(path: path, reason: error.localizedDescription)
    }
    let fd = open(dir, O_RDONLY)
    if fd >= 0 { fsync(fd); close(fd) }
  }

  public static func write(_ path: String, data: Data) throws {
    try write(path) { try $0.write(contentsOf: data) }
  }
}
