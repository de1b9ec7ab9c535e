import Foundation

/// A sequential reader of a shard's bytes from some offset on. `read` returns at most `max` bytes,
/// an empty array at the end; it blocks the calling (loader) thread, never a Swift task.
public protocol ShardByteStream: AnyObject {
  var position: UInt64 { get }
  func read(max: Int) throws -> [UInt8]
  func close()
}

public enum RemoteError: Error, CustomStringConvertible {
  /// 403/404 and the like: retrying cannot help.
  case refused(shard: String, status: Int, detail: String)
  /// Every attempt failed.
  case failed(shard: String, attempts: Int, last: String)
  public var description: String {
    switch self {
    case .refused(let s, let status, let d): return "shard \(s): HTTP \(status)\(d.isEmpty ? "" : " (\(d))")"
    case .failed(let s, let n, let last): return "shard \(s): still failing after \(n) attempts (\(last))"
    }
  }
}

extension ShardByteStream {
  /// Reads and drops `n` bytes; false if the stream ended first.
  public func skip(_ n: UInt64) throws -> Bool {
    var left = n
    while left > 0 {
      let got = try read(max: Int(min(left, 1 << 20)))
      if got.isEmpty { return false }
      left -= UInt64(got.count)
    }
    return true
  }

  /// Exactly `n` bytes, or fewer if the stream ends.
  public func readFully(_ n: Int) throws -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(n)
    while out.count < n {
      let got = try read(max: n - out.count)
      if got.isEmpty { break }
      out += got
    }
    return out
  }
}

/// Opens a stream on a shard from `offset`.
public enum ShardStreams {
  /// Opens http(s):// and s3:// shards: set by the Remote module (`RemoteShards.install()`), which
  /// carries the HTTP client and the signer, so that this module stays free of them.
  nonisolated(unsafe) public static var network: (@Sendable (ShardLocation, _ display: String, _ offset: UInt64) throws -> ShardByteStream)?

  public static func open(_ name: String, offset: UInt64 = 0) throws -> ShardByteStream {
    let location = try ShardLocation.parse(name)
    switch location {
    case .file(let p): return try FileStream(path: p, offset: offset)
    case .pipe(let cmd): return try PipeStream(command: cmd, display: ShardLocation.display(name), offset: offset)
    case .http, .s3:
      guard let network else { throw DataError.input("shard \(ShardLocation.display(name)): this program cannot read remote shards") }
      return try network(location, ShardLocation.display(name), offset)
    }
  }
}

final class FileStream: ShardByteStream {
  let handle: FileHandle
  private(set) var position: UInt64
  init(path: String, offset: UInt64) throws {
    guard let h = FileHandle(forReadingAtPath: path) else { throw DataError.input("shard \(path) cannot be opened") }
    handle = h
    position = offset
    if offset > 0 { try h.seek(toOffset: offset) }
  }
  func read(max: Int) throws -> [UInt8] {
    let d = try handle.read(upToCount: max) ?? Data()
    position += UInt64(d.count)
    return [UInt8](d)
  }
  func close() { try? handle.close() }
}

/// webdataset's `pipe:`: the command's standard output through `/bin/sh -c`; exit status 141
/// (SIGPIPE, the reader stopped early) is not an error. A later offset skips the bytes before it.
final class PipeStream: ShardByteStream {
  let process = Process()
  let pipe = Pipe()
  let display: String
  let errors = Pipe()
  private(set) var position: UInt64 = 0
  private var ended = false

  init(command: String, display: String, offset: UInt64) throws {
    self.display = display
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    process.standardOutput = pipe
    process.standardError = errors
    do { try process.run() } catch { throw DataError.input("shard \(display): cannot run the pipe command: \(error)") }
    if offset > 0, try !skip(offset) { throw DataError.input("shard \(display): the command's output ends before byte \(offset)") }
  }

  func read(max: Int) throws -> [UInt8] {
    guard !ended else { return [] }
    let d = try pipe.fileHandleForReading.read(upToCount: max) ?? Data()
    if d.isEmpty {
      ended = true
      process.waitUntilExit()
      let status = process.terminationStatus
      if process.terminationReason == .exit && status != 0 && status != 141 {
        let err = String(decoding: errors.fileHandleForReading.availableData.prefix(300), as: UTF8.self)
        throw DataError.input("shard \(display): the pipe command exited with status \(status)\(err.isEmpty ? "" : ": " + ShardLocation.display(err))")
      }
      return []
    }
    position += UInt64(d.count)
    return [UInt8](d)
  }

  func close() {
    if process.isRunning { process.terminate() }
    try? pipe.fileHandleForReading.close()
  }
}
