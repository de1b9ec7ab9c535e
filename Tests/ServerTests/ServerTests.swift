import Foundation
import Hummingbird
import HummingbirdTesting
import Jobs
import NIOCore
import Retrieval
import Spec
@testable import Server
import Testing

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
let tinyModel = repoRoot + "/Tests/ModelTests/Fixtures/tiny_siglip"
let fixtureImages = repoRoot + "/Tests/ModelTests/Fixtures/images"

let python: String? = {
  let env = ProcessInfo.processInfo.environment
  return [env["CLIPKIT_PYTHON"], NSHomeDirectory() + "/.cache/clipkit/pyenv/bin/python"].compactMap { $0 }
    .first { FileManager.default.isExecutableFile(atPath: $0) }
}()
let pythonRequired = ProcessInfo.processInfo.environment["CLIPKIT_REQUIRE_ORT"] == "1"

/// A spec serving the tiny SigLIP fixture, with inference reading `images` and `prompts`.
func serveSpec(_ extra: String = "", images: [String] = ["photo_420.jpg", "rgba.png", "lossy.webp"]) throws -> (dir: String, spec: String) {
  let dir = NSTemporaryDirectory() + "clipkit-serve-\(UUID().uuidString)"
  try FileManager.default.createDirectory(atPath: dir + "/images", withIntermediateDirectories: true)
  for f in images { try FileManager.default.copyItem(atPath: "\(fixtureImages)/\(f)", toPath: "\(dir)/images/\(f)") }
  try "a photo of a cat\nA Red Car on the highway.\n".write(toFile: dir + "/prompts.txt", atomically: true, encoding: .utf8)
  try """
    results_dir: \(dir)/results
    model:
      type: siglip2-so400m-patch16-256
      pretrained_dir: \(tinyModel)
    inference:
      datasets:
        - image_dir: \(dir)/images
      text_file: \(dir)/prompts.txt
    serve:
      port: 0
    \(extra)
    """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
  return (dir, dir + "/spec.yaml")
}

func dataURL(_ path: String) throws -> String {
  let ext = (path as NSString).pathExtension.lowercased()
  return "data:image/\(ext == "jpg" ? "jpeg" : ext);base64," + (try Data(contentsOf: URL(fileURLWithPath: path))).base64EncodedString()
}

func started(_ spec: String, _ overrides: [String] = []) throws -> EmbeddingService {
  let s = try EmbeddingService(specFile: spec, overrides: overrides)
  s.start()
  let deadline = Date().addingTimeInterval(60)
  while !s.isReady && Date() < deadline { usleep(20_000) }
  #expect(s.isReady)
  return s
}

func body(_ object: Any) throws -> ByteBuffer { ByteBuffer(data: try JSONSerialization.data(withJSONObject: object)) }
func parsed(_ b: ByteBuffer) -> [String: Any] { (try? JSONSerialization.jsonObject(with: Data(buffer: b))) as? [String: Any] ?? [:] }
let jsonHeaders: HTTPFields = [.contentType: "application/json"]

/// The stored embeddings of `clipkit inference` on the same spec: texts and images by name.
func inferenceRows(_ spec: String, _ dir: String, job: Job = .inference, overrides: [String] = []) throws -> [String: [Float]] {
  try job.run(specFile: spec, overrides: overrides, hooks: JobHooks(launchEnvironment: [:]))
  var rows: [String: [Float]] = [:]
  for kind in [EmbeddingFile.Kind.image, .text] {
    let r = try EmbeddingReader(path: "\(dir)/results/inference/\(kind.rawValue)_embeddings.h5", kind: kind)
    let values = try r.rows(0..<r.count)
    for (i, name) in try r.allLabels().enumerated() { rows[(name as NSString).lastPathComponent] = Array(values[(i * r.dimension)..<((i + 1) * r.dimension)]) }
  }
  return rows
}

@Suite(.serialized) struct EmbeddingRoutes {
  @Test func embeddingsEqualInferenceInFloatAndBase64() async throws {
    let (dir, spec) = try serveSpec()
    let want = try inferenceRows(spec, dir)
    let service = try started(spec)
    defer { service.stop() }
    let app = Application(router: try EmbeddingServer.router(service))
    try await app.test(.router) { client in
      let inputs = ["A Red Car on the highway.", try dataURL(dir + "/images/rgba.png"), "  a photo of a cat\n", try dataURL(dir + "/images/photo_420.jpg"),
                    try dataURL(dir + "/images/lossy.webp")]
      let names = ["A Red Car on the highway.", "rgba.png", "a photo of a cat", "photo_420.jpg", "lossy.webp"]
      for format in ["float", "base64"] {
        try await client.execute(uri: "/v1/embeddings", method: .post, headers: jsonHeaders,
                                 body: try body(["input": inputs, "model": "siglip2-so400m-patch16-256", "encoding_format": format])) { r in
          #expect(r.status == .ok)
          let o = parsed(r.body)
          let data = o["data"] as? [[String: Any]] ?? []
          #expect(data.map { $0["index"] as? Int } == [0, 1, 2, 3, 4])
          for (i, item) in data.enumerated() {
            let got: [Float]
            if format == "float" {
              got = (item["embedding"] as? [Double] ?? []).map(Float.init)
            } else {
              let bytes = Data(base64Encoded: item["embedding"] as? String ?? "") ?? Data()
              got = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            }
            let ref = want[names[i]]!
            #expect(got.count == ref.count && zip(got, ref).allSatisfy { abs($0 - $1) < 1e-5 }, "\(format) \(names[i])")
          }
          let usage = o["usage"] as? [String: Any] ?? [:]
          #expect(usage["num_images"] as? Int == 3 && usage["prompt_tokens"] as? Int == 2 * 16 && usage["total_tokens"] as? Int == 32, "\(usage)")
          #expect(o["model"] as? String == "siglip2-so400m-patch16-256" && o["object"] as? String == "list")
        }
      }
      // A single string is one item.
      try await client.execute(uri: "/v1/embeddings", method: .post, headers: jsonHeaders,
                               body: try body(["input": "a photo of a cat", "model": "siglip2-so400m-patch16-256"])) { r in
        let data = parsed(r.body)["data"] as? [[String: Any]] ?? []
        #expect(r.status == .ok && data.count == 1)
      }
      try await client.execute(uri: "/v1/models", method: .get) { r in
        let data = parsed(r.body)["data"] as? [[String: Any]] ?? []
        #expect(r.status == .ok && data.first?["id"] as? String == "siglip2-so400m-patch16-256" && data.first?["object"] as? String == "model")
      }
      try await client.execute(uri: "/v1/health/ready", method: .get) { #expect($0.status == .ok) }
      try await client.execute(uri: "/v1/health/live", method: .get) { #expect($0.status == .ok) }
      try await client.execute(uri: "/v1/nothing", method: .get) { r in
        #expect(r.status == .notFound && r.headers[.contentType] == "application/problem+json" && String(buffer: r.body).contains("no route GET /v1/nothing"))
      }
      try await client.execute(uri: "/v1/metrics", method: .get) { r in
        let text = String(buffer: r.body)
        #expect(text.contains(#"clipkit_requests_total{route="/v1/embeddings",code="200"} 3"#), "\(text)")
        #expect(text.contains("clipkit_batch_size_count") && text.contains(#"clipkit_request_duration_seconds_bucket{route="/v1/models",le="+Inf"} 1"#) && text.contains("clipkit_model_ready 1"))
      }
    }
  }

  @Test func badInputGetsProblemDetailsAndTheServerStaysUp() async throws {
    let (dir, spec) = try serveSpec()
    let service = try started(spec, ["serve.max_body_bytes=200000"])
    defer { service.stop() }
    // A 20000 x 20000 PNG (400 MP) of a few kilobytes: refused from its header.
    let bomb = dir + "/bomb.png"
    if let python {
      let r = Process()
      r.executableURL = URL(fileURLWithPath: python)
      r.arguments = ["-c", """
        import struct, sys, zlib
        w = h = 20000
        def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
        raw = zlib.compress(b"\\0" * ((w // 8 + 1) * h), 9)
        open(sys.argv[1], "wb").write(b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
        """, bomb]
      try r.run()
      r.waitUntilExit()
    }
    let app = Application(router: try EmbeddingServer.router(service))
    let model = "siglip2-so400m-patch16-256"
    try await app.test(.router) { client in
      func expectProblem(_ payload: Any, _ status: HTTPResponse.Status, _ detail: String, raw: ByteBuffer? = nil) async throws {
        try await client.execute(uri: "/v1/embeddings", method: .post, headers: jsonHeaders, body: try raw ?? body(payload)) { r in
          #expect(r.status == status, "\(String(buffer: r.body))")
          #expect(r.headers[.contentType] == "application/problem+json")
          let o = parsed(r.body)
          #expect((o["detail"] as? String ?? "").contains(detail), "\(o)")
          #expect(o["status"] as? Int == Int(status.code) && o["instance"] as? String == "/v1/embeddings" && o["type"] != nil && o["title"] != nil)
        }
      }
      try await expectProblem(["input": ["data:image/png;base64,@@@not base64@@@"], "model": model], .unprocessableContent, "input[0]: the base64 image data does not decode")
      try await expectProblem(["input": ["ok", "data:image/png;base64," + Data("just some text".utf8).base64EncodedString()], "model": model],
                              .unprocessableContent, "input[1]: unsupported image: not a JPEG, PNG, WebP, BMP or GIF file")
      try await expectProblem(["input": ["data:text/plain;base64,aGk="], "model": model], .unprocessableContent, "unsupported data URL")
      if python != nil || pythonRequired {
        try await expectProblem(["input": [try dataURL(bomb)], "model": model], .unprocessableContent, "20000x20000")
      }
      try await expectProblem(["input": Array(repeating: "x", count: 65), "model": model], .unprocessableContent, "65 items; at most 64")
      try await expectProblem(["input": [String](), "model": model], .unprocessableContent, "'input' is empty")
      try await expectProblem(["input": ["   "], "model": model], .unprocessableContent, "input[0] is an empty text")
      try await expectProblem(["input": ["x"], "model": model, "input_type": "query", "user": "u"], .unprocessableContent, "unknown fields 'input_type', 'user'")
      try await expectProblem(["input": [1, 2], "model": model], .unprocessableContent, "'input' must be a string or an array of strings")
      try await expectProblem(["input": ["x"]], .unprocessableContent, "'model' is required")
      try await expectProblem(["input": ["x"], "model": model, "encoding_format": "int8"], .unprocessableContent, "float or base64")
      try await expectProblem(["input": ["x"], "model": "nvidia/nvclip"], .notFound, "model 'nvidia/nvclip' is not served here")
      try await expectProblem([:], .unprocessableContent, "not a JSON object", raw: ByteBuffer(string: "{not json"))
      try await expectProblem([:], .contentTooLarge, "serve.max_body_bytes (200000 bytes)", raw: ByteBuffer(repeating: UInt8(ascii: "a"), count: 300_000))
      // Still serving.
      try await client.execute(uri: "/v1/embeddings", method: .post, headers: jsonHeaders, body: try body(["input": ["still here"], "model": model])) {
        #expect($0.status == .ok)
      }
    }
  }

  @Test func readinessQueueLimitAndBearerToken() async throws {
    let (_, spec) = try serveSpec()
    // Not started: the port would answer, the model is not there yet.
    let cold = try EmbeddingService(specFile: spec)
    try await Application(router: try EmbeddingServer.router(cold)).test(.router) { client in
      try await client.execute(uri: "/v1/health/live", method: .get) { #expect($0.status == .ok) }
      try await client.execute(uri: "/v1/health/ready", method: .get) { #expect($0.status == .serviceUnavailable) }
      try await client.execute(uri: "/v1/embeddings", method: .post, headers: jsonHeaders,
                               body: try body(["input": ["x"], "model": "siglip2-so400m-patch16-256"])) { r in
        #expect(r.status == .serviceUnavailable && String(buffer: r.body).contains("still loading"))
      }
    }
    let service = try started(spec, ["serve.api_key=s3cret", "serve.max_queue=2"])
    defer { service.stop() }
    try await Application(router: try EmbeddingServer.router(service)).test(.router) { client in
      let payload = try body(["input": ["a", "b", "c"], "model": "siglip2-so400m-patch16-256"])
      try await client.execute(uri: "/v1/embeddings", method: .post, headers: jsonHeaders, body: payload) { r in
        #expect(r.status == .unauthorized && r.headers[.wwwAuthenticate] == "Bearer" && String(buffer: r.body).contains("Authorization: Bearer"))
      }
      var wrong = jsonHeaders
      wrong[.authorization] = "Bearer s3cre"
      try await client.execute(uri: "/v1/models", method: .get, headers: wrong) { #expect($0.status == .unauthorized) }
      try await client.execute(uri: "/v1/health/ready", method: .get) { #expect($0.status == .ok) }  // health needs no token
      var good = jsonHeaders
      good[.authorization] = "Bearer s3cret"
      // Three items where two may wait: 503, and the next small request is served.
      try await client.execute(uri: "/v1/embeddings", method: .post, headers: good, body: payload) { r in
        #expect(r.status == .serviceUnavailable && String(buffer: r.body).contains("serve.max_queue"), "\(String(buffer: r.body))")
      }
      try await client.execute(uri: "/v1/embeddings", method: .post, headers: good,
                               body: try body(["input": ["a", "b"], "model": "siglip2-so400m-patch16-256"])) { #expect($0.status == .ok) }
    }
  }

  @Test func searchRoutesOverAnIndex() async throws {
    let (dir, spec) = try serveSpec(images: ["photo_420.jpg", "rgba.png", "gray.jpg"])
    try Job.inference.run(specFile: spec, hooks: JobHooks(launchEnvironment: [:]))
    let index = dir + "/results/inference"
    let service = try started(spec, ["serve.index=\(index)"])
    defer { service.stop() }
    let want = try searchEmbeddings(dir: index, queries: [.text("a photo of a cat")], modality: .image, topK: 3)[0]
    try await Application(router: try EmbeddingServer.router(service)).test(.router) { client in
      try await client.execute(uri: "/", method: .get) { r in
        #expect(r.status == .ok && String(buffer: r.body).contains("/v1/search") && r.headers[.contentType]?.hasPrefix("text/html") == true)
      }
      try await client.execute(uri: "/v1/search", method: .post, headers: jsonHeaders, body: try body(["text": "a photo of a cat", "top_k": 3])) { r in
        let results = parsed(r.body)["results"] as? [[String: Any]] ?? []
        #expect(r.status == .ok && results.map { $0["name"] as? String } == want.map(\.name))
        #expect(zip(results, want).allSatisfy { abs(($0["score"] as? Double ?? 9) - Double($1.score)) < 1e-5 })
      }
      // By a stored row: that image first, cosine 1; by an image upload; over the texts.
      try await client.execute(uri: "/v1/search", method: .post, headers: jsonHeaders, body: try body(["row": 1, "top_k": 1])) { r in
        let first = (parsed(r.body)["results"] as? [[String: Any]])?.first
        #expect(first?["row"] as? Int == 1 && abs((first?["score"] as? Double ?? 0) - 1) < 1e-4, "\(String(buffer: r.body))")
      }
      try await client.execute(uri: "/v1/search", method: .post, headers: jsonHeaders,
                               body: try body(["image": try dataURL(dir + "/images/gray.jpg"), "top_k": 1])) { r in
        let first = (parsed(r.body)["results"] as? [[String: Any]])?.first
        #expect((first?["name"] as? String ?? "").hasSuffix("gray.jpg") && abs((first?["score"] as? Double ?? 0) - 1) < 1e-4)
      }
      try await client.execute(uri: "/v1/search", method: .post, headers: jsonHeaders, body: try body(["text": "a car", "modality": "text"])) { r in
        #expect(r.status == .ok && parsed(r.body)["modality"] as? String == "text")
      }
      try await client.execute(uri: "/v1/index/image/2", method: .get) { r in
        let file = try Data(contentsOf: URL(fileURLWithPath: dir + "/images/rgba.png"))
        #expect(r.status == .ok && r.headers[.contentType] == "image/png" && Data(buffer: r.body) == file)
      }
      try await client.execute(uri: "/v1/index/image/3", method: .get) { #expect($0.status == .notFound) }
      try await client.execute(uri: "/v1/index/image/..%2F..%2Fetc%2Fpasswd", method: .get) { #expect($0.status == .notFound) }
      for (payload, detail) in [(["text": "x", "row": 0] as [String: Any], "exactly one of text, image, row"), (["text": "x", "top_k": 0], "'top_k' must be 1"),
                                (["text": "x", "modality": "audio"], "'modality' must be one of image, text"), (["row": 7], "'row' is not an image row"),
                                (["text": "x", "k": 3], "unknown field(s) k"), (["image": "data:image/png;base64,!!"], "does not decode")] {
        try await client.execute(uri: "/v1/search", method: .post, headers: jsonHeaders, body: try body(payload)) { r in
          #expect(r.status == .unprocessableContent && (parsed(r.body)["detail"] as? String ?? "").contains(detail), "\(String(buffer: r.body))")
        }
      }
    }
  }

  /// serve.trt_engine: an exported ONNX graph (found as deploy finds it) serves what
  /// `deploy inference` gives for it.
  @Test func servesAnExportedGraph() async throws {
    let (dir, spec) = try serveSpec("""
      export:
        onnx_file: \(NSTemporaryDirectory())clipkit-serve-onnx-\(UUID().uuidString)/clip_model.onnx
        input_height: 32
        input_width: 32
      """)
    try Job.export.run(specFile: spec, hooks: JobHooks(launchEnvironment: [:]))
    let onnx = try Spec.load(file: spec).value("export.onnx_file")!.stringValue!
    // The reference: `deploy inference` on the same graph (TAO Deploy's preprocessing).
    let want = try inferenceRows(spec, dir, job: .deployInference, overrides: ["inference.trt_engine=\(onnx)"])
    let service = try started(spec, ["serve.trt_engine=\(onnx)"])
    defer { service.stop() }
    try await Application(router: try EmbeddingServer.router(service)).test(.router) { client in
      let names = ["a photo of a cat", "photo_420.jpg", "lossy.webp"]
      let inputs = [names[0], try dataURL(dir + "/images/photo_420.jpg"), try dataURL(dir + "/images/lossy.webp")]
      try await client.execute(uri: "/v1/embeddings", method: .post, headers: jsonHeaders,
                               body: try body(["input": inputs, "model": "siglip2-so400m-patch16-256"])) { r in
        let data = parsed(r.body)["data"] as? [[String: Any]] ?? []
        #expect(r.status == .ok && data.count == 3, "\(String(buffer: r.body).prefix(300))")
        for (item, name) in zip(data, names) {
          let got = (item["embedding"] as? [Double] ?? []).map(Float.init), ref = want[name]!
          #expect(got.count == ref.count && zip(got, ref).allSatisfy { abs($0 - $1) < 1e-5 }, "\(name)")
        }
      }
    }
  }

  @Test func specErrorsNameTheKey() throws {
    let (dir, spec) = try serveSpec()
    for (override, named) in [("serve.checkpoint=\(dir)/none.pth", "serve.checkpoint \(dir)/none.pth does not exist"),
                              ("serve.max_batch=0", "serve.max_batch"), ("serve.bogus=1", "serve.bogus"),
                              ("serve.trt_engine=\(dir)/spec.yaml", "serve.checkpoint and serve.trt_engine are both set")] {
      let extra = override.hasPrefix("serve.trt_engine") ? ["serve.checkpoint=\(spec)"] : []
      let e = #expect(throws: (any Error).self) { try EmbeddingService(specFile: spec, overrides: [override] + extra) }
      #expect(e.map(oneLine)?.contains(named) == true, "\(e.map(oneLine) ?? "no error")")
    }
  }
}
