import Foundation
import Hummingbird
import Imaging
import Jobs
import Logging
import NIOCore
import ServeAPI

/// `clipkit serve`: NV-CLIP NIM's HTTP API over an `EmbeddingService` —
/// `POST /v1/embeddings`, `GET /v1/models`, `/v1/health/{live,ready}`, Prometheus `/v1/metrics` —
/// with problem-details errors (application/problem+json) and an optional bearer token.
public enum EmbeddingServer {
  /// The routes; with serve.index also the search page (its embeddings are read here, so a bad
  /// index fails before the server listens).
  public static func router(_ service: EmbeddingService, metrics: ServerMetrics = ServerMetrics()) throws -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: MetricsMiddleware(metrics: metrics))
    router.add(middleware: ProblemMiddleware())
    router.add(middleware: AuthMiddleware(apiKey: service.serve.apiKey))
    router.get("/v1/health/live") { _, _ in json(#"{"object": "health.response", "message": "live"}"#) }
    router.get("/v1/health/ready") { _, _ -> Response in
      guard service.isReady else { throw Problem(.serviceUnavailable, "the model is still loading") }
      return json(#"{"object": "health.response", "message": "ready"}"#)
    }
    router.get("/v1/models") { _, _ in
      json(OrderedJSON.object([("object", "list"), ("data", [[("id", service.modelID), ("object", "model"), ("created", service.createdAt),
                                                        ("owned_by", "system"), ("root", service.modelID), ("parent", NSNull())] as [(String, Any)]])]))
    }
    router.get("/v1/metrics") { _, _ in
      var r = Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                       body: .init(byteBuffer: ByteBuffer(string: metrics.render(service))))
      r.headers[.cacheControl] = "no-store"
      return r
    }
    router.post("/v1/embeddings") { request, _ in try await embeddings(request, service) }
    if let dir = service.serve.index { SearchRoutes.add(to: router, service, try LoadedIndex(dir)) }
    return router
  }

  /// The server on serve.host:serve.port until SIGTERM/SIGINT; requests in flight finish first.
  public static func run(_ service: EmbeddingService) async throws {
    let routes = try router(service)
    service.start()
    let s = service.serve
    var logger = Logger(label: "clipkit.serve")
    logger.logLevel = .warning
    let app = Application(router: routes, configuration: .init(address: .hostname(s.host, port: s.port), serverName: "clipkit"),
                          onServerRunning: { channel in
                            let port = channel.localAddress?.port ?? s.port
                            FileHandle.standardOutput.write(Data("Listening on http://\(s.host):\(port) (model \(service.modelID) loading)\n".utf8))
                          }, logger: logger)
    try await app.runService()
    service.stop()
    FileHandle.standardOutput.write(Data("Stopped: requests in flight finished\n".utf8))
  }

  // MARK: POST /v1/embeddings

  static func embeddings(_ request: Request, _ service: EmbeddingService) async throws -> Response {
    let body = try await collectBody(request, service)
    let parsed: EmbeddingsRequest
    do { parsed = try EmbeddingsRequest.parse(Data(buffer: body), servedModel: service.modelID) } catch let e as RequestError {
      throw Problem(HTTPResponse.Status(code: e.status), e.detail)
    }
    guard service.isReady else { throw Problem(.serviceUnavailable, "the model is still loading") }

    var items: [EmbeddingService.Item] = []
    let decoder = ImageDecoder(maxPixels: service.serve.maxImagePixels)
    for (i, input) in parsed.inputs.enumerated() {
      switch input {
      case .text(let t): items.append(.text(t))
      case .image(let bytes):
        let image: RGBImage
        do { image = try decoder.decode(bytes: bytes, name: "input[\(i)]") } catch {
          throw Problem(.unprocessableContent, (error as? LocalizedError)?.errorDescription ?? "input[\(i)]: \(error)")
        }
        do { items.append(.image(try service.preprocess(image))) } catch { throw Problem(.serviceUnavailable, oneLine(error)) }
      }
    }
    let rows: [[Float]]
    do { rows = try await service.embed(items) } catch let e as ServiceError {
      switch e {
      case .notReady, .queueFull: throw Problem(.serviceUnavailable, e.localizedDescription)
      case .input: throw Problem(.unprocessableContent, e.localizedDescription)
      case .failed: throw Problem(.internalServerError, e.localizedDescription)
      }
    }
    let images = items.filter { if case .image = $0 { return true } else { return false } }.count
    let tokens = (items.count - images) * service.contextLength
    var out = #"{"object": "list", "data": ["#
    for (i, row) in rows.enumerated() {
      if i > 0 { out += ", " }
      let value: String
      if parsed.base64 {
        value = "\"" + row.withUnsafeBytes { Data($0) }.base64EncodedString() + "\""  // little-endian float32, as OpenAI's client reads
      } else {
        value = "[" + row.map { $0.isFinite ? "\($0)" : "null" }.joined(separator: ", ") + "]"
      }
      out += #"{"object": "embedding", "index": \#(i), "embedding": \#(value)}"#
    }
    out += #"], "model": \#(OrderedJSON.string(service.modelID)), "usage": {"num_images": \#(images), "prompt_tokens": \#(tokens), "total_tokens": \#(tokens)}}"#
    return json(out)
  }
}

/// The request body, up to serve.max_body_bytes (413 beyond).
func collectBody(_ request: Request, _ service: EmbeddingService) async throws -> ByteBuffer {
  do { return try await request.body.collect(upTo: service.serve.maxBodyBytes) } catch is NIOTooManyBytesError {
    throw Problem(.contentTooLarge, "the request body is larger than serve.max_body_bytes (\(service.serve.maxBodyBytes) bytes)")
  }
}

// MARK: JSON and problem details

func json(_ body: String, status: HTTPResponse.Status = .ok) -> Response {
  Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
}

/// An error answered as RFC 9457 problem details, as NIM does.
struct Problem: HTTPResponseError {
  let status: HTTPResponse.Status
  let detail: String
  init(_ status: HTTPResponse.Status, _ detail: String) {
    self.status = status
    self.detail = detail
  }

  func response(from request: Request, context: some RequestContext) throws -> Response {
    let slug = status.reasonPhrase.lowercased().replacingOccurrences(of: " ", with: "-")
    let body = OrderedJSON.object([("type", "urn:clipkit:problem-details:\(slug)"), ("title", status.reasonPhrase), ("status", status.code),
                           ("detail", detail), ("instance", request.uri.path), ("requestId", UUID().uuidString.lowercased())])
    var r = Response(status: status, headers: [.contentType: "application/problem+json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    if status == .unauthorized { r.headers[.wwwAuthenticate] = "Bearer" }
    return r
  }
}

/// serve.api_key: `Authorization: Bearer <key>` on every route but health.
struct AuthMiddleware<Context: RequestContext>: RouterMiddleware {
  let apiKey: String?
  func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
    // Health checks and the page's static HTML are open; the page sends the key for its requests.
    guard let key = apiKey, !request.uri.path.hasPrefix("/v1/health/"), request.uri.path != "/" else { return try await next(request, context) }
    let given = request.headers[.authorization] ?? ""
    // Compared in constant time: the token is a secret.
    let expected = Array("Bearer \(key)".utf8), got = Array(given.utf8)
    var diff = expected.count ^ got.count
    for i in 0..<expected.count { diff |= Int(expected[i] ^ (i < got.count ? got[i] : 0)) }
    guard diff == 0 else { throw Problem(.unauthorized, given.isEmpty ? "this server needs 'Authorization: Bearer <serve.api_key>'" : "the bearer token is not this server's serve.api_key") }
    return try await next(request, context)
  }
}

/// The framework's own errors (no such route, wrong method) as problem details too.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
  func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
    do { return try await next(request, context) } catch let e as HTTPError {
      throw Problem(e.status, e.body ?? (e.status == .notFound ? "no route \(request.method) \(request.uri.path)" : e.status.reasonPhrase))
    }
  }
}
