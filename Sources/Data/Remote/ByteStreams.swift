import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

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
  func skip(_ n: UInt64) throws -> Bool {
    var left = n
    while left > 0 {
      let got = try read(max: Int(min(left, 1 << 20)))
      if got.isEmpty { return false }
      left -= UInt64(got.count)
    }
    return true
  }

  /// Exactly `n` bytes, or fewer if the stream ends.
  func readFully(_ n: Int) throws -> [UInt8] {
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
  /// Attempts per transfer (the first and four retries), and the first backoff; CLIPKIT_S3_ATTEMPTS
  /// and CLIPKIT_S3_BACKOFF_MS change them (tests shorten the waits).
  static var attempts: Int { max(5, Int(ProcessInfo.processInfo.environment["CLIPKIT_S3_ATTEMPTS"] ?? "") ?? 5) }
  static var backoff: Double { (Double(ProcessInfo.processInfo.environment["CLIPKIT_S3_BACKOFF_MS"] ?? "") ?? 500) / 1000 }

  public static func open(_ name: String, offset: UInt64 = 0) throws -> ShardByteStream {
    switch try ShardLocation.parse(name) {
    case .file(let p): return try FileStream(path: p, offset: offset)
    case .pipe(let cmd): return try PipeStream(command: cmd, display: ShardLocation.display(name), offset: offset)
    case .http(let url, let basic):
      return HTTPRangeStream(display: ShardLocation.display(name), offset: offset) { off in
        var h: [(String, String)] = off > 0 ? [("range", "bytes=\(off)-")] : []
        if let basic { h.append(("authorization", "Basic \(basic)")) }
        return (url, h)
      }
    case .s3(let o):
      let req = S3Request(o, aws: AWSEnvironment())
      return HTTPRangeStream(display: ShardLocation.display(name), offset: offset) { off in (req.url, req.headers(offset: off)) }
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

/// Runs async work to completion from a plain thread (a loader thread or GCD worker, never the
/// Swift concurrency pool), blocking it meanwhile.
final class Blocking<T: Sendable>: @unchecked Sendable {
  private var result: Result<T, Error>?
  private let done = DispatchSemaphore(value: 0)
  static func run(_ op: @escaping @Sendable () async throws -> T) throws -> T {
    let b = Blocking<T>()
    Task {
      do { b.result = .success(try await op()) } catch { b.result = .failure(error) }
      b.done.signal()
    }
    b.done.wait()
    return try b.result!.get()
  }
}

/// An HTTP(S) GET streamed as its body arrives, with backpressure (AsyncHTTPClient reads the
/// socket only as fast as the body is consumed). A broken transfer is retried with exponential
/// backoff, each attempt a `Range` request from the last byte received; a server that answers 200
/// to a Range request has the bytes already read skipped. 403/404/416-before-the-end are final.
struct Transient: Error, CustomStringConvertible { let description: String }

final class HTTPRangeStream: ShardByteStream, @unchecked Sendable {
  typealias Request = @Sendable (UInt64) -> (url: String, headers: [(String, String)])
  let display: String
  let request: Request
  private(set) var position: UInt64
  private var body: BodyIterator?
  private var pending: ArraySlice<UInt8> = []
  private var finished = false
  /// Attempts used by this transfer so far (reported when they run out).
  private(set) var retries = 0

  final class BodyIterator: @unchecked Sendable {
    var it: HTTPClientResponse.Body.AsyncIterator
    init(_ it: HTTPClientResponse.Body.AsyncIterator) { self.it = it }
  }

  static let client: HTTPClient = {
    var c = HTTPClient.Configuration()
    // A stalled transfer is one with no bytes for a minute; connection set-up gets 20 s.
    c.timeout = .init(connect: .seconds(20), read: .seconds(60))
    c.decompression = .disabled
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
  }()

  init(display: String, offset: UInt64, request: @escaping Request) {
    self.display = display
    self.request = request
    position = offset
  }

  /// Opens the body from `position`; throws RemoteError.refused for final answers.
  private func connect() throws {
    let (url, headers) = request(position)
    let at = position
    let display = display
    let (status, it, skipBytes) = try Blocking<(Int, BodyIterator?, UInt64)>.run {
      var req = HTTPClientRequest(url: url)
      req.method = .GET
      for (n, v) in headers { req.headers.add(name: n, value: v) }
      let resp = try await Self.client.execute(req, timeout: .hours(24))
      let code = Int(resp.status.code)
      if code == 206 || code == 200 {
        // 200 to a Range request: the whole object comes back; drop what was read already.
        return (code, BodyIterator(resp.body.makeAsyncIterator()), code == 200 ? at : 0)
      }
      // Error bodies are short XML (S3's <Code>): keep the code for the message.
      var detail = ""
      for try await chunk in resp.body {
        detail += String(buffer: chunk)
        if detail.count > 2000 { break }
      }
      let codeName = detail.range(of: "<Code>").flatMap { r in detail[r.upperBound...].range(of: "</Code>").map { String(detail[r.upperBound..<$0.lowerBound]) } }
      // Throttling and server errors are worth another attempt; the rest (403, 404, …) is final.
      if code == 408 || code == 429 || code >= 500 { throw Transient(description: "HTTP \(code)\(codeName.map { " \($0)" } ?? "")") }
      throw RemoteError.refused(shard: display, status: code, detail: codeName ?? "")
    }
    _ = status
    body = it
    pending = []
    if skipBytes > 0 {
      position = 0
      guard try skip(skipBytes) else { throw RemoteError.failed(shard: display, attempts: retries + 1, last: "the object is shorter than before") }
    }
  }

  func read(max: Int) throws -> [UInt8] {
    while true {
      if !pending.isEmpty {
        let n = min(max, pending.count)
        let out = Array(pending.prefix(n))
        pending = pending.dropFirst(n)
        position += UInt64(n)
        return out
      }
      if finished { return [] }
      do {
        if body == nil { try connect() }
        let b = body!
        let chunk = try Blocking<ByteBuffer?>.run { try await b.it.next() }
        guard let chunk else { finished = true; return [] }
        pending = ArraySlice(chunk.readableBytesView)
      } catch let e as RemoteError {
        // Range past the end: the object ended exactly where the last attempt stopped.
        if case .refused(_, 416, _) = e, position > 0 { finished = true; return [] }
        throw e
      } catch {
        body = nil
        retries += 1
        guard retries < ShardStreams.attempts else {
          throw RemoteError.failed(shard: display, attempts: retries, last: "\(error)")
        }
        let wait = ShardStreams.backoff * pow(2, Double(retries - 1))
        FileHandle.standardError.write(Data("warning: shard \(display): transfer broke at byte \(position) (\(error)); retry \(retries) in \(String(format: "%.1f", wait)) s\n".utf8))
        Thread.sleep(forTimeInterval: wait)
      }
    }
  }

  func close() {
    body = nil
    finished = true
  }
}
