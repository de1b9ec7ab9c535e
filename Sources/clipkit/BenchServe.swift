import ArgumentParser
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A minimal S3-style object server for the remote-shard benchmark: `GET /BUCKET/KEY` (path-style,
/// any bucket, signatures ignored) answers FOLDER/KEY with `Range` support through sendfile. It
/// shows what ClipKit's S3 client does when the server is not the bottleneck (moto, the test
/// server, is Python).
struct BenchServeFiles: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "serve-files",
    abstract: "Serve a folder as path-style S3 objects on 127.0.0.1 (GET with Range) for `bench shards`; prints the port.")

  @Argument(help: "Folder whose files are the objects (GET /ANY-BUCKET/NAME).") var folder: String
  @Option(help: "Port (0 picks a free one).") var port = 0

  func run() throws {
    let root = folder
    let group = MultiThreadedEventLoopGroup.singleton
    let channel = try ServerBootstrap(group: group)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { ch in
        ch.pipeline.configureHTTPServerPipeline().flatMap { ch.pipeline.addHandler(ObjectHandler(root: root)) }
      }
      .bind(host: "127.0.0.1", port: port).wait()
    print("serving \(root) on http://127.0.0.1:\(channel.localAddress?.port ?? 0)")
    fflush(nil)
    try channel.closeFuture.wait()
  }
}

final class ObjectHandler: ChannelInboundHandler, @unchecked Sendable {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart
  let root: String
  private var head: HTTPRequestHead?
  init(root: String) { self.root = root }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let h): head = h
    case .body: break
    case .end:
      guard let h = head else { return }
      head = nil
      respond(h, context: context)
    }
  }

  private func respond(_ h: HTTPRequestHead, context: ChannelHandlerContext) {
    let path = h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
    let parts = path.split(separator: "/", maxSplits: 1)
    let name = parts.count == 2 ? String(parts[1]).removingPercentEncoding ?? "" : ""
    let file = root + "/" + name
    guard !name.contains(".."), let attrs = try? FileManager.default.attributesOfItem(atPath: file),
          let size = (attrs[.size] as? NSNumber)?.intValue, let handle = try? NIOFileHandle(_deprecatedPath: file) else {
      var headers = HTTPHeaders([("content-length", "0")])
      headers.add(name: "connection", value: "keep-alive")
      context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: .notFound, headers: headers))), promise: nil)
      context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
      return
    }
    var start = 0, end = size
    var status = HTTPResponseStatus.ok
    if let r = h.headers["range"].first, r.hasPrefix("bytes=") {
      let spec = r.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false)
      if let a = Int(spec[0]) { start = min(a, size) }
      if spec.count > 1, let b = Int(spec[1]) { end = min(b + 1, size) }
      status = .partialContent
    }
    var headers = HTTPHeaders([("content-length", String(end - start))])
    if status == .partialContent { headers.add(name: "content-range", value: "bytes \(start)-\(end - 1)/\(size)") }
    context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
    let region = FileRegion(fileHandle: handle, readerIndex: start, endIndex: end)
    context.write(wrapOutboundOut(.body(.fileRegion(region))), promise: nil)
    context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in try? handle.close() }
  }
}
