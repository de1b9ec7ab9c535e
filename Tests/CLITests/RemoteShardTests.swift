import Foundation
import Torch
import Testing

/// Training from WebDataset shards on a real S3 server on loopback (moto's server mode, with a
/// proxy that breaks transfers: tools/s3_test_server.py), compared with the same shards read locally.
@Suite(.serialized) struct TrainingFromS3 {
  /// The S3 server helper: its ports, and a way to stop it and read its connection counts.
  final class Server {
    let process = Process()
    let input = Pipe(), output = Pipe()
    var s3 = 0, proxy = 0, tls = 0, redirect = 0
    var ca = ""
    var presigned: [String: String] = [:]
    init(_ args: [String]) throws {
      guard let python = ortPython else { throw FileIOError.read(path: "python", reason: "no Python with moto (run scripts/test.sh)") }
      process.executableURL = URL(fileURLWithPath: python)
      process.arguments = [repoRoot + "/tools/s3_test_server.py"] + args
      process.standardInput = input
      process.standardOutput = output
      process.standardError = FileHandle.nullDevice
      try process.run()
      var line = Data()
      while true {
        let b = output.fileHandleForReading.readData(ofLength: 1)
        if b.isEmpty || b == Data("\n".utf8) { break }
        line += b
      }
      let ready = try JSONSerialization.jsonObject(with: line) as? [String: Any]
      presigned = ready?["presigned"] as? [String: String] ?? [:]
      guard let s = ready?["s3"] as? Int, let p = ready?["proxy"] as? Int else {
        throw FileIOError.read(path: "s3_test_server.py", reason: "did not start: \(String(decoding: line, as: UTF8.self))")
      }
      (s3, proxy, tls, ca, redirect) = (s, p, ready?["tls"] as? Int ?? 0, ready?["ca"] as? String ?? "", ready?["redirect"] as? Int ?? 0)
    }
    /// Stops the server; returns its counts ({"connections", "cut"}).
    func stop() -> [String: Int] {
      try? input.fileHandleForWriting.close()
      let rest = output.fileHandleForReading.readDataToEndOfFile()
      process.waitUntilExit()
      return (try? JSONSerialization.jsonObject(with: rest) as? [String: Int]) ?? [:]
    }
  }

  /// Four shards of six samples each (the fixture images under new keys, one caption each).
  func makeShards(_ dir: String) throws -> [String] {
    let images = repoRoot + "/Tests/ModelTests/Fixtures/images"
    let names = ["photo_420.jpg", "gray.jpg", "rgba.png", "lossy.webp", "cmyk.jpg", "photo_420.jpg"]
    var shards: [String] = []
    for s in 0..<4 {
      let src = dir + "/src\(s)"
      try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
      var members: [String] = []
      for (i, n) in names.enumerated() {
        let key = String(format: "%06d", s * 100 + i), ext = (n as NSString).pathExtension
        try FileManager.default.copyItem(atPath: images + "/" + n, toPath: "\(src)/\(key).\(ext)")
        try "picture \(i) of shard \(s), a \((n as NSString).deletingPathExtension)".write(toFile: "\(src)/\(key).txt", atomically: true, encoding: .utf8)
        members += ["\(key).\(ext)", "\(key).txt"]
      }
      let tar = String(format: "%@/local/shard-%06d.tar", dir, s)
      try FileManager.default.createDirectory(atPath: dir + "/local", withIntermediateDirectories: true)
      let r = try runProcess(URL(fileURLWithPath: "/bin/tar"), ["--format=ustar", "-cf", tar, "-C", src] + members)
      #expect(r.code == 0, "\(r.err)")
      shards.append(tar)
    }
    return shards
  }

  func spec(_ dir: String, data: String, epochs: Int = 2) throws -> String {
    let fixtures = repoRoot + "/Tests/ModelTests/Fixtures"
    let path = dir + "/spec-\(UUID().uuidString).yaml"
    try """
      model:
        type: siglip2-so400m-patch16-256
        pretrained_dir: \(fixtures)/tiny_siglip
      train:
        num_epochs: \(epochs)
        precision: fp32
        checkpoint_interval_unit: step
        checkpoint_interval: 1
      dataset:
        train:
          type: wds
          wds:
            \(data)
            samples_per_shard: 6
          batch_size: 4
          num_workers: 2
      """.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  func listFile(_ dir: String, _ lines: [String]) throws -> String {
    let path = dir + "/list-\(UUID().uuidString).txt"
    try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  func losses(_ out: String) -> [String] {
    out.split(separator: "\n").filter { $0.hasPrefix("step ") }.map { $0.split(separator: " ").prefix(4).joined(separator: " ") }
  }

  @Test func s3ShardsTrainExactlyAsLocalOnesThroughBrokenTransfersAndResume() throws {
    guard ortPython != nil || ortRequired else { return }
    let dir = NSTemporaryDirectory() + "clipkit-s3-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }  // (about 350 MB of checkpoints per run)
    let local = try makeShards(dir)
    let server = try Server(["--bucket", "shards"] + local.enumerated().flatMap { ["--upload", "\($0.1)=shards/train/shard-\(String(format: "%06d", $0.0)).tar"] }
                            + ["--cut-after", "30000", "--cuts", "3"])
    var stopped = false
    defer { if !stopped { _ = server.stop() } }

    func train(_ name: String, _ list: [String]? = nil, env: [String: String] = [:], extra: [String] = []) throws -> (Int32, String, String) {
      let data = list.map { "shard_list_file: \(try! listFile(dir, $0))" } ?? "root_dir: \(dir)/local"
      let r = try clipkit(["train", "-e", try spec(dir, data: data), "results_dir=\(dir)/\(name)"] + extra,
                          env: env.merging(["CLIPKIT_LOG_LOSS": "1"]) { a, _ in a })
      return (r.code, r.out, r.err)
    }
    let (c0, outLocal, errLocal) = try train("local")
    #expect(c0 == 0, "\(errLocal)")
    let expected = losses(outLocal)
    #expect(expected.count == 12)

    // TAO's URL form: keys in the user-info (the secret's "/" percent-encoded), endpoint and region in the query.
    let secret = "se%2Fcr%2Bt", url = { (port: Int) in
      "s3://AKIDCLIPKIT:\(secret)@shards/train/shard-{000000..000003}.tar?endpoint=http://127.0.0.1:\(port)&region=us-east-1"
    }
    let (c1, outS3, errS3) = try train("s3", [url(server.s3)])
    #expect(c1 == 0, "\(errS3)")
    #expect(outS3.contains("Indexed 4 shards: 24 samples"), "\(outS3)")
    #expect(losses(outS3) == expected)
    // No credential in any output or file of the run.
    var written = outS3 + errS3
    for f in FileManager.default.enumerator(atPath: dir + "/s3")?.allObjects as? [String] ?? [] where !f.hasSuffix(".pth") {
      written += (try? String(contentsOfFile: dir + "/s3/" + f, encoding: .isoLatin1)) ?? ""
    }
    for s in ["AKIDCLIPKIT", "se/cr+t", secret] { #expect(!written.contains(s), "\(s) leaked") }

    // Through a proxy that drops three transfers after 30 000 bytes: ranged retries continue them.
    let (c2, outCut, errCut) = try train("cut", [url(server.proxy)], env: ["CLIPKIT_S3_BACKOFF_MS": "20"])
    #expect(c2 == 0, "\(errCut)")
    #expect(losses(outCut) == expected)
    #expect(errCut.components(separatedBy: "transfer broke at byte ").count - 1 == 3, "\(errCut)")
    #expect(!errCut.contains("AKIDCLIPKIT") && !errCut.contains("se/cr"))

    // Killed mid-epoch and rerun: the resumed run reads the remaining samples from S3.
    let (k, first, _) = try train("killed", [url(server.s3)], env: ["CLIPKIT_CRASH_AFTER_STEP": "4"])
    #expect(k == 137 && losses(first) == Array(expected.prefix(3)))  // it ends right after step 4's checkpoint
    let (c3, rest, errRest) = try train("killed", [url(server.s3)])
    #expect(c3 == 0 && losses(rest) == Array(expected.suffix(8)), "\(errRest)")

    // Presigned http:// URLs (the signature in the query is never printed) give the same samples.
    let urls = (0..<4).compactMap { server.presigned[String(format: "shards/train/shard-%06d.tar", $0)] }
    #expect(urls.count == 4 && urls.allSatisfy { $0.contains("X-Amz-Signature=") })
    let (c6, outHTTP, errHTTP) = try train("http", urls)
    #expect(c6 == 0 && losses(outHTTP) == expected, "\(errHTTP)")
    for u in urls {
      let sig = String(u[u.range(of: "X-Amz-Signature=")!.upperBound...].prefix { $0 != "&" })
      #expect(!(outHTTP + errHTTP).contains(sig))
    }

    // HTTPS (S3 behind TLS with a private CA, trusted through AWS_CA_BUNDLE) gives the same samples;
    // without the CA the certificate is refused at once (not retried), named and counted.
    let tlsURL = "s3://AKIDCLIPKIT:\(secret)@shards/train/shard-{000000..000003}.tar?endpoint=https://localhost:\(server.tls)&region=us-east-1"
    let (c7, outTLS, errTLS) = try train("tls", [tlsURL], env: ["AWS_CA_BUNDLE": server.ca])
    #expect(c7 == 0 && losses(outTLS) == expected, "\(errTLS)")
    let (c8, _, errUntrusted) = try train("untrusted", [tlsURL])
    #expect(c8 != 0 && errUntrusted.contains("is skipped: TLS handshake failed (CERTIFICATE_VERIFY_FAILED; a private CA's certificate goes in AWS_CA_BUNDLE)"), "\(errUntrusted)")
    #expect(!errUntrusted.contains("retry") && !errUntrusted.contains("AKIDCLIPKIT") && !errUntrusted.contains("se/cr"), "\(errUntrusted)")

    // Behind a redirect (a 302 to the store, as CDN links are) the same presigned URLs still read.
    let redirected = urls.map { $0.replacingOccurrences(of: "127.0.0.1:\(server.s3)/", with: "127.0.0.1:\(server.redirect)/") }
    #expect(redirected != urls)
    let (c9, outRedirect, errRedirect) = try train("redirect", redirected)
    #expect(c9 == 0 && losses(outRedirect) == expected, "\(errRedirect)")

    // pipe: commands (webdataset's convention) give the same samples.
    let (c4, outPipe, errPipe) = try train("pipe", local.map { "pipe:cat \($0)" })
    #expect(c4 == 0 && losses(outPipe) == expected, "\(errPipe)")

    // A missing key and a wrong bucket: each named once (redacted), counted; here too many to train.
    let missing = [url(server.s3), "s3://AKIDCLIPKIT:\(secret)@shards/train/nothere.tar?endpoint=http://127.0.0.1:\(server.s3)",
                   "s3://AKIDCLIPKIT:\(secret)@nobucket/train/x.tar?endpoint=http://127.0.0.1:\(server.s3)"]
    let (c5, _, errMissing) = try train("missing", missing)
    #expect(c5 != 0)
    #expect(errMissing.contains("shard s3://shards/train/nothere.tar?endpoint=http://127.0.0.1:\(server.s3) is skipped: HTTP 404 (NoSuchKey)"), "\(errMissing)")
    #expect(errMissing.contains("HTTP 404 (NoSuchBucket)") && errMissing.contains("2 of the 6 shards could not be read"), "\(errMissing)")
    #expect(!errMissing.contains("AKIDCLIPKIT") && !errMissing.contains("se/cr"))

    stopped = true
    let counts = server.stop()
    #expect(counts["cut"] == 3, "\(counts)")
  }
}
