import Data
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

struct Transient: Error, CustomStringConvertible { let description: String }

/// One GET's response, handed from the connection's event loop to a plain reading thread. Body
/// parts queue up to `limit` bytes; past that the connection stops reading the socket until the
/// reader has taken them, so the socket is read only as fast as the loader threads consume. No
/// Swift task is involved: the reader may be any thread, a Swift concurrency one included.
final class ResponseQueue: @unchecked Sendable {
  private let cond = NSCondition()
  private var head: HTTPResponseHead?
  private var parts: [ByteBuffer] = []
  private var queued = 0
  private var full = false
  private var finished = false
  private var failure: Error?
  /// The reader sleeps on `cond`: only then is a part worth a wake-up (a futex call each).
  private var waiting = false
  /// Tells the paused connection to read again (set by its handler).
  var onDrain: (@Sendable () -> Void)?
  let limit = 8 << 20

  func received(_ head: HTTPResponseHead) {
    cond.withLock { self.head = head; cond.broadcast() }
  }

  /// Queues a part; true when the queue is full (the connection pauses until `onDrain`).
  func received(_ part: ByteBuffer) -> Bool {
    cond.lock()
    defer { cond.unlock() }
    parts.append(part)
    queued += part.readableBytes
    if waiting { cond.signal() }
    if queued > limit { full = true }
    return full
  }

  /// The body ended (`error` nil) or the transfer broke.
  func finish(_ error: Error?) {
    cond.withLock {
      guard !finished else { return }
      failure = error
      finished = true
      cond.broadcast()
    }
  }

  /// The response head (throws the transfer's error if it failed before one came).
  func waitHead() throws -> HTTPResponseHead {
    cond.lock()
    defer { cond.unlock() }
    while head == nil && !finished { cond.wait() }
    if let head { return head }
    throw failure ?? Transient(description: "the connection closed before a response")
  }

  /// The connection is gone: its handler is let go (the drain hook held it; parts not yet taken stay).
  func detach() { cond.withLock { onDrain = nil } }

  /// Every body part received so far (waiting for one); nil at the end of the body; throws if the
  /// transfer broke. Taking them all at once keeps the lock and the wake-ups to one per batch.
  func take() throws -> [ByteBuffer]? {
    cond.lock()
    while parts.isEmpty && !finished {
      waiting = true
      cond.wait()
      waiting = false
    }
    defer { cond.unlock() }
    if !parts.isEmpty {
      let out = parts
      parts = []
      queued = 0
      if full {
        full = false
        onDrain?()
      }
      return out
    }
    if let failure { throw failure }
    return nil
  }
}

/// The connection's end of a ResponseQueue: queues the response, and holds back the channel's
/// reads while the queue is full (a read timeout then does not count: the reader is busy).
final class ResponseHandler: ChannelDuplexHandler {
  typealias InboundIn = HTTPClientResponsePart
  typealias OutboundIn = HTTPClientRequestPart
  let queue: ResponseQueue
  private var paused = false
  private var readHeld = false
  private var context: ChannelHandlerContext?
  init(_ queue: ResponseQueue) { self.queue = queue }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
    queue.onDrain = { bound.eventLoop.execute { bound.value.resume() } }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.context = nil
    queue.detach()
  }

  private func resume() {
    paused = false
    if readHeld, let context {
      readHeld = false
      context.read()
    }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let h): queue.received(h)
    case .body(let b): if queue.received(b) { paused = true }
    case .end:
      queue.finish(nil)
      context.close(promise: nil)
    }
  }

  func read(context: ChannelHandlerContext) {
    if paused { readHeld = true } else { context.read() }
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if case .read? = event as? IdleStateHandler.IdleStateEvent, !paused {
      queue.finish(Transient(description: "no data for \(HTTPRangeStream.readTimeout) s"))
      context.close(promise: nil)
    }
    context.fireUserInboundEventTriggered(event)
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) {
    queue.finish(error)
    context.close(promise: nil)
  }

  func channelInactive(context: ChannelHandlerContext) {
    queue.finish(Transient(description: "the connection closed before the end of the body"))
    context.fireChannelInactive()
  }
}

/// Where a URL's GET goes: the connection's host and port, TLS or not, and the request line's target.
struct HTTPTarget {
  let tls: Bool
  let host: String
  let port: Int
  /// The Host header (port and IPv6 brackets as needed).
  let hostHeader: String
  let uri: String

  init(_ url: String) throws {
    guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(), scheme == "http" || scheme == "https",
          let host = c.host, !host.isEmpty else {
      throw RemoteError.refused(shard: ShardLocation.display(url), status: 0, detail: "not a valid http(s) URL")
    }
    tls = scheme == "https"
    self.host = host
    port = c.port ?? (tls ? 443 : 80)
    let bracketed = host.contains(":") ? "[\(host)]" : host
    hostHeader = c.port.map { "\(bracketed):\($0)" } ?? bracketed
    let path = c.percentEncodedPath.isEmpty ? "/" : c.percentEncodedPath
    uri = path + (c.percentEncodedQuery.map { "?" + $0 } ?? "")
  }

  /// The headers a redirected GET sends: all of them to the same host and scheme; to another host,
  /// or from https to http, only `range` (credentials and signatures are for the first host, and
  /// never sent in clear).
  static func headers(_ h: [(String, String)], redirectedFrom a: HTTPTarget, to b: HTTPTarget) -> [(String, String)] {
    a.hostHeader == b.hostHeader && a.tls == b.tls ? h : h.filter { name, _ in name.lowercased() == "range" }
  }

  /// A redirect's Location, absolute or relative to `url`.
  static func resolve(_ location: String, against url: String) -> String? {
    URL(string: location, relativeTo: URL(string: url))?.absoluteString
  }
}

/// An HTTP(S) GET streamed as its body arrives, on its own connection (SwiftNIO, TLS by NIOSSL):
/// reads of up to 1 MB at a time, handed to the reading thread in batches, copied once into the
/// caller's memory. A broken transfer is retried with exponential backoff, each attempt a `Range`
/// request from the last byte received; a server that answers 200 to a Range request has the
/// bytes already read skipped. Redirects are followed (5 at most; signing headers are not sent to
/// another host). 403/404 and other final answers are thrown as RemoteError.refused; 408/429/5xx
/// are retried like broken connections.
final class HTTPRangeStream: ShardByteStream, @unchecked Sendable {
  typealias Request = @Sendable (UInt64) -> (url: String, headers: [(String, String)])
  let display: String
  let request: Request
  private(set) var position: UInt64
  private var body: (channel: Channel, queue: ResponseQueue)?
  /// Body parts taken from the queue, read front to back (`part` is the current one).
  private var parts: [ByteBuffer] = []
  private var part = 0
  private var finished = false
  /// Attempts used by this transfer so far (reported when they run out).
  private(set) var retries = 0

  /// A stalled transfer is one with no bytes for a minute; connection set-up gets 20 s.
  static let readTimeout: Int64 = 60
  static let connectTimeout: Int64 = 20
  static let maxRedirects = 5

  /// TLS with the system's trust roots, plus AWS_CA_BUNDLE's certificates (AWS's variable for a
  /// private CA, as an on-premises S3 often has).
  static let tls: Result<NIOSSLContext, Error> = Result {
    var c = TLSConfiguration.makeClientConfiguration()
    if let bundle = ProcessInfo.processInfo.environment["AWS_CA_BUNDLE"], !bundle.isEmpty {
      guard FileManager.default.fileExists(atPath: bundle) else {
        throw DataError.input("AWS_CA_BUNDLE=\(bundle) does not exist")
      }
      c.additionalTrustRoots = [.file(bundle)]
    }
    return try NIOSSLContext(configuration: c)
  }

  init(display: String, offset: UInt64, request: @escaping Request) {
    self.display = display
    self.request = request
    position = offset
  }

  /// Connects and sends the GET; the queue gets the response.
  private func open(_ target: HTTPTarget, headers: [(String, String)]) throws -> (Channel, ResponseQueue) {
    let queue = ResponseQueue()
    if target.tls {
      // A missing or broken CA bundle is a setting to fix, not a transfer to retry.
      if case .failure(let e) = Self.tls {
        throw RemoteError.refused(shard: display, status: 0, detail: "TLS: \((e as? LocalizedError)?.errorDescription ?? "\(e)")")
      }
    }
    let channel = try ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .connectTimeout(.seconds(Self.connectTimeout))
      // Large reads when the data is there: per-read costs (syscall, pipeline, hand-over) are paid
      // per megabyte rather than per 64 KB.
      .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 4096, initial: 65536, maximum: 1 << 20))
      .channelInitializer { ch in
        do {
          if target.tls {
            // (an IP address is not a server name: no SNI for it)
            let name = (try? SocketAddress(ipAddress: target.host, port: 0)) != nil ? nil : target.host
            try ch.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: Self.tls.get(), serverHostname: name))
          }
          try ch.pipeline.syncOperations.addHTTPClientHandlers()
          try ch.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(Self.readTimeout)))
          try ch.pipeline.syncOperations.addHandler(ResponseHandler(queue))
          return ch.eventLoop.makeSucceededVoidFuture()
        } catch { return ch.eventLoop.makeFailedFuture(error) }
      }
      .connect(host: target.host, port: target.port).wait()
    var h = HTTPHeaders(headers)
    if !h.contains(name: "host") { h.add(name: "host", value: target.hostHeader) }
    h.add(name: "user-agent", value: "clipkit")
    channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: target.uri, headers: h)), promise: nil)
    channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    return (channel, queue)
  }

  /// Opens the body from `position`.
  private func connect() throws {
    var (url, headers) = request(position)
    var target = try HTTPTarget(url)
    for _ in 0...Self.maxRedirects {
      let (channel, queue) = try open(target, headers: headers)
      let head: HTTPResponseHead
      do { head = try queue.waitHead() } catch {
        channel.close(promise: nil)
        // A refused certificate stays refused: not retried (a handshake cut short is retried).
        let text = "\(error)"
        if (error as? NIOSSLExtraError) == .failedToValidateHostname || (text.contains("handshakeFailed") && text.contains("CERTIFICATE")) {
          // BoringSSL's reason (CERTIFICATE_VERIFY_FAILED, …) without its source location.
          let reason = text.range(of: "OPENSSL_internal:").map { String(text[$0.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" }) }
            ?? "the certificate is not for \(target.host)"
          throw RemoteError.refused(shard: display, status: 0,
                                    detail: "TLS handshake failed (\(reason); a private CA's certificate goes in AWS_CA_BUNDLE)")
        }
        throw error
      }
      let code = Int(head.status.code)
      if code == 206, let range = head.headers["content-range"].first, let start = Self.rangeStart(range), start != position {
        // Bytes from elsewhere than asked would be read as the wrong members: not taken.
        channel.close(promise: nil)
        throw RemoteError.refused(shard: display, status: 206, detail: "the server sent bytes from \(start), not from \(position) as asked")
      }
      if code == 206 || code == 200 {
        body = (channel, queue)
        (parts, part) = ([], 0)
        if code == 200 && position > 0 {
          // 200 to a Range request: the whole object comes back; drop what was read already.
          let keep = position
          position = 0
          guard try skip(keep) else {
            throw RemoteError.refused(shard: display, status: 200, detail: "the object changed: it ends before byte \(keep), read before")
          }
        }
        return
      }
      if [301, 302, 303, 307, 308].contains(code), let location = head.headers["location"].first,
         let next = HTTPTarget.resolve(location, against: url), let nextTarget = try? HTTPTarget(next) {
        channel.close(promise: nil)
        headers = HTTPTarget.headers(headers, redirectedFrom: target, to: nextTarget)
        (url, target) = (next, nextTarget)
        continue
      }
      // Error bodies are short XML (S3's <Code>): keep the code for the message.
      var detail = ""
      while detail.utf8.count < 4000, let batch = try? queue.take() { detail += batch.map { String(buffer: $0) }.joined() }
      channel.close(promise: nil)
      let codeName = detail.range(of: "<Code>").flatMap { r in detail[r.upperBound...].range(of: "</Code>").map { String(detail[r.upperBound..<$0.lowerBound]) } }
      if code == 408 || code == 429 || code >= 500 { throw Transient(description: "HTTP \(code)\(codeName.map { " \($0)" } ?? "")") }
      throw RemoteError.refused(shard: display, status: code, detail: codeName ?? "")
    }
    throw RemoteError.refused(shard: display, status: 0, detail: "more than \(Self.maxRedirects) redirects")
  }

  /// The first byte of a `Content-Range: bytes FIRST-LAST/SIZE` answer.
  static func rangeStart(_ header: String) -> UInt64? {
    guard header.lowercased().hasPrefix("bytes ") else { return nil }
    return UInt64(header.dropFirst(6).prefix { $0 != "-" }.trimmingCharacters(in: .whitespaces))
  }

  func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    guard buffer.count > 0, try fill() else { return 0 }
    let n = min(buffer.count, parts[part].readableBytes)
    parts[part].withUnsafeReadableBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0.prefix(n))) }
    parts[part].moveReaderIndex(forwardBy: n)
    position += UInt64(n)
    return n
  }

  func discard(max: Int) throws -> Int {
    guard max > 0, try fill() else { return 0 }
    let n = min(max, parts[part].readableBytes)
    parts[part].moveReaderIndex(forwardBy: n)
    position += UInt64(n)
    return n
  }

  /// Makes sure a body part with unread bytes is at hand, connecting and retrying as needed;
  /// false at the end of the object.
  private func fill() throws -> Bool {
    while true {
      while part < parts.count {
        if parts[part].readableBytes > 0 { return true }
        part += 1
      }
      if finished { return false }
      do {
        if body == nil { try connect() }
        if part < parts.count { continue }  // (connect skipped into a batch already)
        guard let batch = try body!.queue.take() else { finished = true; body = nil; return false }
        (parts, part) = (batch, 0)
      } catch let e as RemoteError {
        // Range past the end: the object ended exactly where the last attempt stopped.
        if case .refused(_, 416, _) = e, position > 0 { finished = true; return false }
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
    body?.channel.close(promise: nil)
    body = nil
    (parts, part) = ([], 0)
  }

  func close() {
    drop()
    finished = true
  }
}
