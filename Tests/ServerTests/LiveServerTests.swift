import Foundation
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
}
