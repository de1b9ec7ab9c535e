import Foundation

/// A request refused by its content: the HTTP status and the message the client gets.
public struct RequestError: Error, Equatable, LocalizedError {
  public let status: Int
  public let detail: String
  public init(_ status: Int, _ detail: String) {
    self.status = status
    self.detail = detail
  }
  public var errorDescription: String? { detail }
}

/// NV-CLIP NIM's `POST /v1/embeddings` body, parsed and checked before anything is decoded or run
/// (kept free of the server framework so that the fuzzer can drive it).
public struct EmbeddingsRequest: Equatable, Sendable {
  public enum Input: Equatable, Sendable {
    case text(String)
    /// The bytes of a `data:image/{png,jpeg,jpg,webp};base64,` URL (not yet known to be an image).
    case image([UInt8])
  }

  /// NIM's limit on items per request.
  public static let maxItems = 64
  public let inputs: [Input]
  public let model: String
  /// `encoding_format: base64`: little-endian float32 bytes, base64 (as the OpenAI client reads them).
  public let base64: Bool

  /// The body of a request for `servedModel`: 422 for what the schema refuses (NIM's
  /// additionalProperties: false included), 404 for another model.
  public static func parse(_ body: Data, servedModel: String) throws -> EmbeddingsRequest {
    guard let fields = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else {
      throw RequestError(422, "the body is not a JSON object")
    }
    let unknown = fields.keys.filter { !["input", "model", "encoding_format"].contains($0) }.sorted()
    guard unknown.isEmpty else {
      throw RequestError(422, "unknown field\(unknown.count > 1 ? "s" : "") \(unknown.map { "'\($0)'" }.joined(separator: ", ")): expected input, model, encoding_format")
    }
    guard let model = fields["model"] as? String else { throw RequestError(422, "'model' is required (a string: \(servedModel))") }
    guard model == servedModel else { throw RequestError(404, "model '\(model)' is not served here; GET /v1/models lists '\(servedModel)'") }
    let format = fields["encoding_format"] == nil ? "float" : fields["encoding_format"] as? String
    guard let format, ["float", "base64"].contains(format) else { throw RequestError(422, "'encoding_format' must be float or base64") }
    let strings: [String]
    switch fields["input"] {
    case let s as String: strings = [s]
    case let a as [Any]:
      guard let all = a as? [String] else { throw RequestError(422, "'input' must be a string or an array of strings") }
      strings = all
    case nil: throw RequestError(422, "'input' is required")
    default: throw RequestError(422, "'input' must be a string or an array of strings")
    }
    guard !strings.isEmpty else { throw RequestError(422, "'input' is empty") }
    guard strings.count <= maxItems else { throw RequestError(422, "'input' has \(strings.count) items; at most \(maxItems)") }
    let inputs = try strings.enumerated().map { i, s -> Input in
      if s.hasPrefix("data:") { return .image(try dataURLImage(s, index: i)) }
      // Prepared as `inference` prepares prompt lines: stripped.
      let text = s.trimmingCharacters(in: .whitespacesAndNewlines)
      guard !text.isEmpty else { throw RequestError(422, "input[\(i)] is an empty text") }
      return .text(text)
    }
    return EmbeddingsRequest(inputs: inputs, model: model, base64: format == "base64")
  }

  /// The bytes of `data:image/{png,jpeg,jpg,webp};base64,…` (input number `index`, for messages).
  public static func dataURLImage(_ s: String, index i: Int) throws -> [UInt8] {
    guard s.hasPrefix("data:"), let comma = s.firstIndex(of: ",") else { throw RequestError(422, "input[\(i)]: a data URL without ','") }
    let header = s[s.index(s.startIndex, offsetBy: 5)..<comma].lowercased()
    let formats = ["image/png;base64", "image/jpeg;base64", "image/jpg;base64", "image/webp;base64"]
    guard formats.contains(header) else {
      throw RequestError(422, "input[\(i)]: unsupported data URL 'data:\(header.prefix(40))': expected data:image/{png,jpeg,jpg,webp};base64,…")
    }
    guard let data = Data(base64Encoded: String(s[s.index(after: comma)...]), options: .ignoreUnknownCharacters), !data.isEmpty else {
      throw RequestError(422, "input[\(i)]: the base64 image data does not decode")
    }
    return [UInt8](data)
  }
}
