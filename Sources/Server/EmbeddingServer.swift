import Foundation
import Hummingbird
import Imaging
import Jobs
import Logging
import NIOCore

/// `clipkit serve`: NV-CLIP NIM's HTTP API over an `EmbeddingService` —
/// `POST /v1/embeddings`, `GET /v1/models`, `/v1/health/{live,ready}`, Prometheus `/v1/metrics` —
/// with problem-details errors (application/problem+json) and an optional bearer token.
public enum EmbeddingServer {
  /// NIM's limit on items per request.
  public static let maxItems = 64

  /// The routes; with serve.index also the search page (its embeddings are read here, so a bad
  /// index fails before the server listens).
  public static func router(_ service: EmbeddingService, metrics: ServerMetrics = ServerMetrics()) throws -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: MetricsMiddleware(metrics: metrics))
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
    let body: ByteBuffer
    do { body = try await request.body.collect(upTo: service.serve.maxBodyBytes) } catch is NIOTooManyBytesError {
      throw Problem(.contentTooLarge, "the request body is larger than serve.max_body_bytes (\(service.serve.maxBodyBytes) bytes)")
    }
    guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)), let fields = object as? [String: Any] else {
      throw Problem(.unprocessableContent, "the body is not a JSON object")
    }
    let unknown = fields.keys.filter { !["input", "model", "encoding_format"].contains($0) }.sorted()
    guard unknown.isEmpty else { throw Problem(.unprocessableContent, "unknown field\(unknown.count > 1 ? "s" : "") \(unknown.map { "'\($0)'" }.joined(separator: ", ")): expected input, model, encoding_format") }
    guard let model = fields["model"] as? String else { throw Problem(.unprocessableContent, "'model' is required (a string: \(service.modelID))") }
    guard model == service.modelID else { throw Problem(.notFound, "model '\(model)' is not served here; GET /v1/models lists '\(service.modelID)'") }
    let format = fields["encoding_format"] as? String ?? "float"
    guard ["float", "base64"].contains(format), fields["encoding_format"] == nil || fields["encoding_format"] is String else {
      throw Problem(.unprocessableContent, "'encoding_format' must be float or base64")
    }
    let inputs: [String]
    switch fields["input"] {
    case let s as String: inputs = [s]
    case let a as [Any]:
      guard let strings = a as? [String] else { throw Problem(.unprocessableContent, "'input' must be a string or an array of strings") }
      inputs = strings
    case nil: throw Problem(.unprocessableContent, "'input' is required")
    default: throw Problem(.unprocessableContent, "'input' must be a string or an array of strings")
    }
    guard !inputs.isEmpty else { throw Problem(.unprocessableContent, "'input' is empty") }
    guard inputs.count <= maxItems else { throw Problem(.unprocessableContent, "'input' has \(inputs.count) items; at most \(maxItems)") }
    guard service.isReady else { throw Problem(.serviceUnavailable, "the model is still loading") }

    var items: [EmbeddingService.Item] = []
    let decoder = ImageDecoder(maxPixels: service.serve.maxImagePixels)
    for (i, s) in inputs.enumerated() {
      if s.hasPrefix("data:") {
        let bytes = try dataURLImage(s, index: i)
        do {
          items.append(.image(try service.preprocess(try decoder.decode(bytes: bytes, name: "input[\(i)]"))))
        } catch let e as ServiceError {
          throw Problem(.serviceUnavailable, e.localizedDescription)
        } catch {
          throw Problem(.unprocessableContent, (error as? LocalizedError)?.errorDescription ?? "input[\(i)]: \(error)")
        }
      } else {
        let text = s.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw Problem(.unprocessableContent, "input[\(i)] is an empty text") }
        items.append(.text(text))
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
      if format == "base64" {
        value = "\"" + row.withUnsafeBytes { Data($0) }.base64EncodedString() + "\""  // little-endian float32, as OpenAI's client reads
      } else {
        value = "[" + row.map { "\($0)" }.joined(separator: ", ") + "]"
      }
      out += #"{"object": "embedding", "index": \#(i), "embedding": \#(value)}"#
    }
    out += #"], "model": \#(OrderedJSON.string(service.modelID)), "usage": {"num_images": \#(images), "prompt_tokens": \#(tokens), "total_tokens": \#(tokens)}}"#
    return json(out)
  }

  /// The bytes of `data:image/{png,jpeg,jpg,webp};base64,…`.
  static func dataURLImage(_ s: String, index i: Int) throws -> [UInt8] {
    guard let comma = s.firstIndex(of: ",") else { throw Problem(.unprocessableContent, "input[\(i)]: a data URL without ','") }
    let header = s[s.index(s.startIndex, offsetBy: 5)..<comma].lowercased()
    let formats = ["image/png;base64", "image/jpeg;base64", "image/jpg;base64", "image/webp;base64"]
    guard formats.contains(header) else {
      throw Problem(.unprocessableContent, "input[\(i)]: unsupported data URL 'data:\(header.prefix(40))': expected data:image/{png,jpeg,jpg,webp};base64,…")
    }
    guard let data = Data(base64Encoded: String(s[s.index(after: comma)...]), options: .ignoreUnknownCharacters), !data.isEmpty else {
      throw Problem(.unprocessableContent, "input[\(i)]: the base64 image data does not decode")
    }
    return [UInt8](data)
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
