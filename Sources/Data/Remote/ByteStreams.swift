import Foundation

/// A sequential reader of a shard's bytes from some offset on. Reads copy straight into the
/// caller's memory (a member's final array), and `discard` passes bytes without copying them where
/// the stream can: a streamed byte is copied once after the kernel's copy, as a local read is. It
/// blocks the calling (loader) thread, never a Swift task.
public protocol ShardByteStream: AnyObject {
  var position: UInt64 { get }
  /// Copies up to `buffer.count` bytes into `buffer`; 0 at the end.
  func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
  /// Passes up to `max` bytes; 0 at the end.
  func discard(max: Int) throws -> Int
  func close()
}

public enum RemoteError: Error, CustomStringConvertible {
  /// 403/404 and the like: retrying cannot help (status 0: no HTTP answer, e.g. a refused certificate).
  case refused(shard: String, status: Int, detail: String)
  /// Every attempt failed.
  case failed(shard: String, attempts: Int, last: String)
  public var description: String {
    switch self {
    case .refused(let s, 0, let d): return "shard \(s): \(d)"  // (refused before any HTTP answer)
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
      let got = try discard(max: Int(min(left, 1 << 30)))
      if got == 0 { return false }
      left -= UInt64(got)
    }
    return true
  }

  /// Exactly `n` bytes, or fewer if the stream ends.
  public func readFully(_ n: Int) throws -> [UInt8] {
    var failure: Error?
    let out = [UInt8](unsafeUninitializedCapacity: n) { buffer, count in
      let raw = UnsafeMutableRawBufferPointer(buffer)
      do {
        while count < n {
          let got = try read(into: UnsafeMutableRawBufferPointer(rebasing: raw[count...]))
          if got == 0 { break }
          count += got
        }
      } catch { failure = error }
    }
    if let failure { throw failure }
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
  let size: UInt64
  init(path: String, offset: UInt64) throws {
    guard let h = FileHandle(forReadingAtPath: path) else { throw DataError.input("shard \(path) cannot be opened") }
    handle = h
    position = offset
    size = try h.seekToEnd()
    try h.seek(toOffset: offset)
  }
  func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    let n = try readRetrying(handle.fileDescriptor, buffer, what: "shard")
    position += UInt64(n)
    return n
  }
  func discard(max: Int) throws -> Int {
    let n = Int(min(UInt64(max), size > position ? size - position : 0))
    position += UInt64(n)
    try handle.seek(toOffset: position)
    return n
  }
  func close() { try? handle.close() }
}

/// read(2) into `buffer`, retried when a signal interrupts it.
func readRetrying(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, what: String) throws -> Int {
  guard buffer.count > 0 else { return 0 }
  while true {
    let n = Foundation.read(fd, buffer.baseAddress, buffer.count)
    if n >= 0 { return n }
    if errno != EINTR { throw DataError.input("\(what): read failed: \(String(cString: strerror(errno)))") }
  }
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

  /// A pipe can only be read: passed bytes go through this reused buffer.
  private var scratch = [UInt8](repeating: 0, count: 1 << 20)
  func discard(max: Int) throws -> Int {
    try scratch.withUnsafeMutableBytes { try read(into: UnsafeMutableRawBufferPointer(rebasing: $0.prefix(max))) }
  }

  func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    guard !ended, buffer.count > 0 else { return 0 }
    let n = try readRetrying(pipe.fileHandleForReading.fileDescriptor, buffer, what: "shard \(display)")
    if n == 0 {
      ended = true
      process.waitUntilExit()
      let status = process.terminationStatus
      if process.terminationReason == .exit && status != 0 && status != 141 {
        let err = String(decoding: errors.fileHandleForReading.availableData.prefix(300), as: UTF8.self)
        throw DataError.input("shard \(display): the pipe command exited with status \(status)\(err.isEmpty ? "" : ": " + ShardLocation.display(err))")
      }
      return 0
    }
    position += UInt64(n)
    return n
  }

  func close() {
    if process.isRunning { process.terminate() }
    try? pipe.fileHandleForReading.close()
  }
}
