import Foundation
import Imaging
import Jobs
import Testing

/// The built `clipkit` binary (it sits beside the test bundle in the build directory).
let clipkitBinary: URL = {
  var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
  while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("clipkit").path), dir.path != "/" {
    dir = dir.deletingLastPathComponent()
  }
  return dir.appendingPathComponent("clipkit")
}()

/// `clipkit serve` as a process on 127.0.0.1 (serve.port=0: a free port, read from its first line).
final class ServerProcess {
  let process = Process()
  let out = Pipe(), err = Pipe()
  private(set) var port = 0
  private(set) var printed = ""

  init(spec: String, overrides: [String] = []) throws {
    process.executableURL = clipkitBinary
    process.arguments = ["serve", "-e", spec] + overrides
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let deadline = Date().addingTimeInterval(60)
    while port == 0 && Date() < deadline {
      let chunk = out.fileHandleForReading.availableData
      if chunk.isEmpty { break }  // exited
      printed += String(decoding: chunk, as: UTF8.self)
      if let r = printed.range(of: #"Listening on http://127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
        port = Int(printed[r].split(separator: ":").last!) ?? 0
      }
    }
  }

  var url: String { "http://127.0.0.1:\(port)" }

  /// Reads what it prints until `text` appears (false: it exited or 60 s passed first).
  func waitFor(_ text: String) -> Bool {
    let deadline = Date().addingTimeInterval(60)
    while !printed.contains(text) && Date() < deadline {
      let chunk = out.fileHandleForReading.availableData
      if chunk.isEmpty { return false }
      printed += String(decoding: chunk, as: UTF8.self)
    }
    return printed.contains(text)
  }

  /// SIGTERM, then everything it printed and its exit status.
  func terminate() -> (code: Int32, out: String, err: String) {
    if process.isRunning { kill(process.processIdentifier, SIGTERM) }
    let rest = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, printed + String(decoding: rest, as: UTF8.self), String(decoding: e, as: UTF8.self))
  }
}

func runPython(_ args: [String]) throws -> (code: Int32, out: String, err: String) {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: python!)
  p.arguments = args
  let out = Pipe(), err = Pipe()
  p.standardOutput = out
  p.standardError = err
  try p.run()
  let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

@Suite struct LiveServer {
  /// The OpenAI Python client (what most users will point at the server) gets `clipkit inference`'s
  /// embeddings, by its default base64 encoding and as floats; SIGTERM then stops the server cleanly.
  @Test func openAIClientGetsInferenceEmbeddings() throws {
    guard python != nil else { #expect(!pythonRequired, "no Python with the openai package (run scripts/test.sh)"); return }
    let (dir, spec) = try serveSpec()
    let want = try inferenceRows(spec, dir)
    let server = try ServerProcess(spec: spec)
    #expect(server.port > 0, "\(server.printed)")
    let names = ["a photo of a cat", "rgba.png", "lossy.webp", "A Red Car on the highway.", "photo_420.jpg"]
    let inputs = try names.map { $0.contains(".") && !$0.hasSuffix(".") ? try dataURL("\(dir)/images/\($0)") : $0 }
    try JSONSerialization.data(withJSONObject: inputs).write(to: URL(fileURLWithPath: dir + "/inputs.json"))
    let r = try runPython([repoRoot + "/tools/serve_client.py", "openai", server.url, "siglip2-so400m-patch16-256", dir + "/inputs.json"])
    let stopped = server.terminate()
    #expect(r.code == 0, "\(r.err)\n\(stopped.err)")
    let got = (try? JSONSerialization.jsonObject(with: Data(r.out.utf8))) as? [String: [[Double]]] ?? [:]
    for format in ["base64", "float"] {
      let rows = got[format] ?? []
      #expect(rows.count == names.count, "\(format): \(r.out.prefix(300))")
      for (row, name) in zip(rows, names) {
        let ref = want[name]!
        #expect(row.count == ref.count && zip(row, ref).allSatisfy { abs(Float($0) - $1) < 1e-5 }, "\(format) \(name)")
      }
    }
    #expect(stopped.code == 0 && stopped.out.contains("Stopped: requests in flight finished"), "\(stopped)")
  }

  /// SIGTERM while a request waits in the batcher (serve.max_wait_ms=1500): it is still answered,
  /// then the server exits 0.
  @Test func sigtermFinishesTheRequestInFlight() throws {
    guard python != nil else { #expect(!pythonRequired); return }
    let (_, spec) = try serveSpec()
    let server = try ServerProcess(spec: spec, overrides: ["serve.max_wait_ms=1500"])
    #expect(server.waitFor("ready ("), "\(server.printed)")
    let client = Process()
    client.executableURL = URL(fileURLWithPath: python!)
    client.arguments = ["-c", """
      import json, socket, sys
      body = json.dumps({"model": "siglip2-so400m-patch16-256", "input": ["in flight"]}).encode()
      s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
      s.sendall(b"POST /v1/embeddings HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\nConnection: close\\r\\n"
                + b"Content-Length: %d\\r\\n\\r\\n" % len(body) + body)
      print("sent", flush=True)
      reply = b""
      while chunk := s.recv(65536):
          reply += chunk
      print(reply.split(b"\\r\\n")[0].decode(), b'"embedding"' in reply)
      """, String(server.port)]
    let out = Pipe()
    client.standardOutput = out
    try client.run()
    var printed = ""
    while !printed.contains("sent") {
      let chunk = out.fileHandleForReading.availableData
      if chunk.isEmpty { break }
      printed += String(decoding: chunk, as: UTF8.self)
    }
    usleep(300_000)  // the request is read and waiting for its batch
    let stopped = server.terminate()
    printed += String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    client.waitUntilExit()
    #expect(printed.contains("HTTP/1.1 200 OK True"), "\(printed)")
    #expect(stopped.code == 0 && stopped.out.contains("Stopped: requests in flight finished"), "\(stopped)")
  }

  /// A short version of the README's load benchmark: 16 clients for 8 s, mixed texts and images.
  /// No request fails; memory does not climb.
  @Test func concurrentMixedLoadHasNoErrors() throws {
    guard python != nil else { #expect(!pythonRequired); return }
    let (dir, spec) = try serveSpec()
    let server = try ServerProcess(spec: spec, overrides: ["serve.max_batch=16", "serve.max_wait_ms=5"])
    #expect(server.port > 0, "\(server.printed)")
    let images = ["photo_420.jpg", "rgba.png", "lossy.webp"].map { "\(dir)/images/\($0)" }
    let r = try runPython([repoRoot + "/tools/serve_client.py", "load", server.url, "siglip2-so400m-patch16-256", "8", "16",
                           String(server.process.processIdentifier)] + images)
    let stopped = server.terminate()
    let o = (try? JSONSerialization.jsonObject(with: Data(r.out.utf8))) as? [String: Any] ?? [:]
    #expect(r.code == 0 && o["errors"] as? Int == 0 && (o["requests"] as? Int ?? 0) > 50, "\(r.out)\(r.err)")
    let (first, last) = (o["rss_mb_first_third_max"] as? Double ?? 0, o["rss_mb_last_third_max"] as? Double ?? .infinity)
    #expect(last <= first * 1.25 + 50, "RSS grew from \(first) MB to \(last) MB")
    #expect(stopped.code == 0, "\(stopped.err)")
  }
}

/// serve.index's page in a real headless Chromium (Debian's package, which scripts/test.sh
/// installs): the DOM it builds holds `clipkit search`'s results in order, and the screenshot shows
/// each result's image in its card.
@Suite struct SearchPageInChromium {
  static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }

  func chromium(_ args: [String]) throws -> (code: Int32, out: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: Self.chromium!)
    p.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,700",
                   "--virtual-time-budget=8000", "--user-data-dir=\(NSTemporaryDirectory())clipkit-chromium-\(UUID().uuidString)"] + args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self))
  }

  /// Mean RGB of a box of an image.
  func mean(_ img: RGBImage, x: Int, y: Int, w: Int, h: Int) -> [Double] {
    var sum = [0.0, 0.0, 0.0]
    for yy in y..<(y + h) { for xx in x..<(x + w) { for c in 0..<3 { sum[c] += Double(img.pixels[(yy * img.width + xx) * 3 + c]) } } }
    return sum.map { $0 / Double(w * h) }
  }

  @Test func pageShowsTheResultsOfSearch() throws {
    guard Self.chromium != nil else { #expect(!pythonRequired, "no chromium (scripts/test.sh installs Debian's)"); return }
    let files = ["photo_420.jpg", "rgba.png", "gray.jpg"]  // a cat, a red cup, a grey street: far apart in colour
    let (dir, spec) = try serveSpec(images: files)
    try Job.inference.run(specFile: spec, hooks: JobHooks(launchEnvironment: [:]))
    let index = dir + "/results/inference"
    let query = "a photo of a cat"
    let want = try searchEmbeddings(dir: index, queries: [.text(query)], modality: .image, topK: 12)[0]
    let server = try ServerProcess(spec: spec, overrides: ["serve.index=\(index)"])
    defer { _ = server.terminate() }
    #expect(server.port > 0, "\(server.printed)")
    // Wait for the model, then let the page search as a user would (?q= fills the box and runs it).
    #expect(server.waitFor("ready ("), "\(server.printed)")
    let page = server.url + "/?q=" + query.replacingOccurrences(of: " ", with: "+")
    let dom = try chromium(["--dump-dom", page])
    #expect(dom.code == 0)
    let rows = dom.out.components(separatedBy: "<figure").dropFirst().map { fig -> (String, String) in
      let score = fig.range(of: #"data-score="[^"]*""#, options: .regularExpression).map { String(fig[$0].dropFirst(12).dropLast()) } ?? ""
      let name = fig.range(of: #"</b>[^<]*<"#, options: .regularExpression).map { String(fig[$0].dropFirst(4).dropLast()) } ?? ""
      return (name, score)
    }
    #expect(rows.map(\.0) == want.map(\.name), "\(dom.out.suffix(2000))")
    #expect(rows.map(\.1) == want.map { String(format: "%.4f", $0.score) })

    let shot = NSTemporaryDirectory() + "clipkit-page-\(UUID().uuidString).png"
    let r = try chromium(["--screenshot=\(shot)", page])
    #expect(r.code == 0 && FileManager.default.fileExists(atPath: shot))
    let png = try ImageDecoder().decode(file: shot)
    #expect(png.width == 1000 && png.height == 700)
    // Each card's picture (cards 232 px wide from x = 18, every 244 px; pictures from y ≈ 165 to
    // 335): its colours are nearest to the image of that rank.
    let refs = try files.map { f -> (String, [Double]) in
      let img = try ImageDecoder().decode(file: "\(dir)/images/\(f)")
      return ("\(dir)/images/\(f)", mean(img, x: img.width / 4, y: img.height / 4, w: img.width / 2, h: img.height / 2))
    }
    for (i, hit) in want.enumerated() {
      let m = mean(png, x: 18 + 244 * i + 86, y: 220, w: 60, h: 60)
      let nearest = refs.min { a, b in zip(a.1, m).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) < zip(b.1, m).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) }!
      #expect(nearest.0 == hit.name, "card \(i + 1) looks like \(nearest.0), expected \(hit.name) (mean \(m))")
    }
  }
}
