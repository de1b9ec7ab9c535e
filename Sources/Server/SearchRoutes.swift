import Foundation
import Hummingbird
import Imaging
import Jobs
import Models
import NIOCore
import Retrieval
import ServeAPI

/// serve.index: the search page at `/`, `POST /v1/search` and the index's images at
/// `/v1/index/image/{row}` (only files the index names: never an arbitrary path).
enum SearchRoutes {
  static func add(to router: Router<BasicRequestContext>, _ service: EmbeddingService, _ index: LoadedIndex) {
    router.get("/") { _, _ in
      Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: searchPageHTML)))
    }
    router.post("/v1/search") { request, _ in try await search(request, service, index) }
    router.get("/v1/index/image/:row") { _, context -> Response in
      guard let row = context.parameters.get("row", as: Int.self), let path = index.name(.image, row: row) else {
        throw Problem(.notFound, "no image row '\(context.parameters.get("row") ?? "")' in the index")
      }
      guard let data = FileManager.default.contents(atPath: path) else { throw Problem(.notFound, "\(path) is no longer readable") }
      let type: String
      switch ImageDecoder.format(of: [UInt8](data.prefix(16))) {
      case .jpeg?: type = "image/jpeg"
      case .png?: type = "image/png"
      case .webp?: type = "image/webp"
      case .gif?: type = "image/gif"
      case .bmp?: type = "image/bmp"
      case nil: type = "application/octet-stream"
      }
      return Response(status: .ok, headers: [.contentType: type, .cacheControl: "max-age=3600"], body: .init(byteBuffer: ByteBuffer(data: data)))
    }
  }

  /// `{"text": …} | {"image": "data:image/…"} | {"row": N}` (a stored image row), with optional
  /// `modality` (image|text, default image) and `top_k` (default 12, at most 1000).
  static func search(_ request: Request, _ service: EmbeddingService, _ index: LoadedIndex) async throws -> Response {
    let body = try await collectBody(request, service)
    guard let fields = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] else {
      throw Problem(.unprocessableContent, "the body is not a JSON object")
    }
    let unknown = fields.keys.filter { !["text", "image", "row", "modality", "top_k"].contains($0) }.sorted()
    guard unknown.isEmpty else { throw Problem(.unprocessableContent, "unknown field(s) \(unknown.joined(separator: ", ")): expected text, image or row, modality, top_k") }
    let modality = fields["modality"] as? String ?? "image"
    guard let kind = EmbeddingFile.Kind(rawValue: modality), index.kinds.contains(kind) else {
      throw Problem(.unprocessableContent, "'modality' must be one of \(index.kinds.map(\.rawValue).joined(separator: ", ")) (what the index holds)")
    }
    let k = fields["top_k"] as? Int ?? 12
    guard (1...1000).contains(k) else { throw Problem(.unprocessableContent, "'top_k' must be 1…1000") }
    let given = ["text", "image", "row"].filter { fields[$0] != nil }
    guard given.count == 1 else { throw Problem(.unprocessableContent, "give exactly one of text, image, row") }
    let query: [Float]
    switch given[0] {
    case "row":
      guard let row = fields["row"] as? Int, index.name(.image, row: row) != nil else { throw Problem(.unprocessableContent, "'row' is not an image row of the index") }
      query = try index.vector(.image, row: row)
    case "text":
      guard let t = fields["text"] as? String, !t.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw Problem(.unprocessableContent, "'text' is empty") }
      query = try await embedOne(service, .text(t.trimmingCharacters(in: .whitespacesAndNewlines)))
    default:
      guard let uri = fields["image"] as? String else { throw Problem(.unprocessableContent, "'image' must be a data:image/…;base64 URL") }
      let bytes: [UInt8]
      do { bytes = try EmbeddingsRequest.dataURLImage(uri, index: 0) } catch let e as RequestError { throw Problem(.unprocessableContent, e.detail) }
      let image: RGBImage
      do { image = try ImageDecoder(maxPixels: service.serve.maxImagePixels).decode(bytes: bytes, name: "image") } catch {
        throw Problem(.unprocessableContent, (error as? LocalizedError)?.errorDescription ?? "\(error)")
      }
      let input: ImageInput
      do { input = try service.preprocess(image) } catch { throw Problem(.serviceUnavailable, oneLine(error)) }
      query = try await embedOne(service, .image(input))
    }
    // The product runs off Swift's pool (it can take a while on a large index).
    let hits = try await withCheckedThrowingContinuation { c in
      DispatchQueue.global().async { c.resume(with: Result { try index.search(query, in: kind, k: k) }) }
    }
    let results = hits.enumerated().map { [("rank", $0.offset + 1), ("row", $0.element.row), ("name", $0.element.name), ("score", $0.element.score)] as [(String, Any)] }
    return json(OrderedJSON.object([("modality", kind.rawValue), ("results", results)]))
  }

  static func embedOne(_ service: EmbeddingService, _ item: EmbeddingService.Item) async throws -> [Float] {
    do { return try await service.embed([item])[0] } catch let e as ServiceError {
      throw Problem(.serviceUnavailable, e.localizedDescription)
    }
  }
}
