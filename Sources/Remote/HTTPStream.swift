import AsyncHTTPClient
import Data
import Foundation
import NIOCore
import NIOHTTP1

struct Transient: Error, CustomStringConvertible { let description: String }

/// One GET's response, handed from AsyncHTTPClient's event loop to a plain reading thread. Body
/// parts queue up to `limit` bytes; past that the event loop is told to wait (its future stays
/// open), so the socket is read only as fast as the loader threads consume. No Swift task is
/// involved: the reading thread may be any thread, a Swift concurrency one included.
final class ResponseQueue: HTTPClientResponseDelegate, @unchecked Sendable {
  typealias Response = Void
  private let cond = NSCondition()
  private var head: HTTPResponseHead?
  private var parts: [ByteBuffer] = []
  private var queued = 0
  private var finished = false
  private var failure: Error?
  private var resume: EventLoopPromise<Void>?
  let limit = 4 << 20

  func didReceiveHead(task: HTTPClient.Task<Void>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
    cond.withLock { self.head = head; cond.broadcast() }
    return task.eventLoop.makeSucceededVoidFuture()
  }

  func didReceiveBodyPart(task: HTTPClient.Task<Void>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
    cond.lock()
    defer { cond.unlock() }
    parts.append(buffer)
    queued += buffer.readableBytes
    cond.broadcast()
    guard queued > limit else { return task.eventLoop.makeSucceededVoidFuture() }
    let p = task.eventLoop.makePromise(of: Void.self)
    resume = p
    return p.futureResult
  }

  func didFinishRequest(task: HTTPClient.Task<Void>) throws {
    cond.withLock { finished = true; cond.broadcast() }
  }

  func didReceiveError(task: HTTPClient.Task<Void>, _ error: Error) {
    cond.withLock { failure = error; finished = true; cond.broadcast() }
  }

  /// The response head (throws the transfer's error if it failed before one came).
  func waitHead() throws -> HTTPResponseHead {
    cond.lock()
    defer { cond.unlock() }
    while head == nil && !finished { cond.wait() }
    if let head { return head }
    throw failure ?? Transient(description: "the connection closed before a response")
  }

  /// The next body part; nil at the end of the body; throws if the transfer broke.
  func next() throws -> ByteBuffer? {
    cond.lock()
    defer { cond.unlock() }
    while parts.isEmpty && !finished { cond.wait() }
    if !parts.isEmpty {
      let b = parts.removeFirst()
      queued -= b.readableBytes
      if queued <= limit / 2, let r = resume {
        resume = nil
        r.succeed(())
      }
      return b
    }
    if let failure { throw failure }
    return nil
  }

  /// Lets a paused event loop go on (the transfer is being abandoned).
  func release() {
    cond.withLock {
      resume?.succeed(())
      resume = nil
    }
  }
}

/// An HTTP(S) GET streamed as its body arrives. A broken transfer is retried with exponential
/// backoff, each attempt a `Range` request from the last byte received; a server that answers 200
/// to a Range request has the bytes already read skipped. 403/404 and other final answers are
/// thrown as RemoteError.refused; 408/429/5xx are retried like broken connections.
final class HTTPRangeStream: ShardByteStream, @unchecked Sendable {
  typealias Request = @Sendable (UInt64) -> (url: String, headers: [(String, String)])
  let display: String
  let request: Request
  private(set) var position: UInt64
  private var body: (task: HTTPClient.Task<Void>, queue: ResponseQueue)?
  private var pending: ArraySlice<UInt8> = []
  private var finished = false
  /// Attempts used by this transfer so far (reported when they run out).
  private(set) var retries = 0

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

  /// Opens the body from `position`.
  private func connect() throws {
    let (url, headers) = request(position)
    let req: HTTPClient.Request
    do { req = try HTTPClient.Request(url: url, method: .GET, headers: HTTPHeaders(headers)) } catch {
      throw RemoteError.refused(shard: display, status: 0, detail: "not a valid URL")
    }
    let queue = ResponseQueue()
    let task = Self.client.execute(request: req, delegate: queue)
    let head = try queue.waitHead()
    let code = Int(head.status.code)
    if code == 206 || code == 200 {
      body = (task, queue)
      pending = []
      if code == 200 && position > 0 {
        // 200 to a Range request: the whole object comes back; drop what was read already.
        let keep = position
        position = 0
        guard try skip(keep) else { throw Transient(description: "the object is shorter than before") }
      }
      return
    }
    // Error bodies are short XML (S3's <Code>): keep the code for the message.
    var detail = ""
    while let part = try? queue.next(), detail.count < 4000 { detail += String(buffer: part) }
    task.cancel()
    queue.release()
    let codeName = detail.range(of: "<Code>").flatMap { r in detail[r.upperBound...].range(of: "</Code>").map { String(detail[r.upperBound..<$0.lowerBound]) } }
    if code == 408 || code == 429 || code >= 500 { throw Transient(description: "HTTP \(code)\(codeName.map { " \($0)" } ?? "")") }
    throw RemoteError.refused(shard: display, status: code, detail: codeName ?? "")
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
        guard let part = try body!.queue.next() else { finished = true; body = nil; return [] }
        pending = ArraySlice(part.readableBytesView)
      } catch let e as RemoteError {
        // Range past the end: the object ended exactly where the last attempt stopped.
        if case .refused(_, 416, _) = e, position > 0 { finished = true; return [] }
        throw e
      } catch {
        drop()
        retries += 1
        guard retries < RemoteShards.attempts else {
          throw RemoteError.failed(shard: display, attempts: retries, last: "\(error)")
        }
        let wait = RemoteShards.backoff * pow(2, Double(retries - 1))
        FileHandle.standardError.write(Data("warning: shard \(display): transfer broke at byte \(position) (\(error)); retry \(retries) in \(String(format: "%.1f", wait)) s\n".utf8))
        Thread.sleep(forTimeInterval: wait)
      }
    }
  }

  private func drop() {
    if let b = body {
      b.task.cancel()
      b.queue.release()
    }
    body = nil
    pending = []
  }

  func close() {
    drop()
    finished = true
  }
}
