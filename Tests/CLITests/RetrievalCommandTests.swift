import Foundation
@testable import Jobs
import Retrieval
import Testing
import Torch

/// NumPy's answer (tools/numpy_retrieval.py, h5py + numpy from the test venv) as parsed JSON.
func numpyRetrieval(_ args: [String]) throws -> Any {
  guard let python = ortPython else { throw FileIOError.read(path: "python", reason: "no Python with numpy and h5py (run scripts/test.sh)") }
  let r = try runProcess(URL(fileURLWithPath: python), [repoRoot + "/tools/numpy_retrieval.py"] + args)
  guard r.code == 0 else { throw FileIOError.read(path: "numpy_retrieval.py", reason: r.err) }
  return try JSONSerialization.jsonObject(with: Data(r.out.utf8))
}

func jsonLines(_ text: String) throws -> [[String: Any]] {
  try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
}

/// search / classify / dedup on an `inference` folder, against NumPy on the same HDF5 files.
@Suite(.serialized) struct RetrievalCommands {
  static let model = repoRoot + "/Tests/ModelTests/Fixtures/tiny_siglip"
  static let images = repoRoot + "/Tests/ModelTests/Fixtures/images"
  // Images in folders named after classes (the labels classify scores against).
  static let layout = ["cat": ["photo_420.jpg", "gray.jpg"], "car": ["rgba.png", "cmyk.jpg"], "dog": ["lossy.webp", "palette8.bmp"]]

  /// An inference run over the class folders; `prompts` are embedded as its texts.
  static func inference(_ prompts: [String]) throws -> (dir: String, out: String) {
    let dir = NSTemporaryDirectory() + "clipkit-retrieval-\(UUID().uuidString)"
    for (label, files) in layout {
      try FileManager.default.createDirectory(atPath: "\(dir)/data/\(label)", withIntermediateDirectories: true)
      for f in files { try FileManager.default.copyItem(atPath: "\(images)/\(f)", toPath: "\(dir)/data/\(label)/\(f)") }
    }
    try (prompts.joined(separator: "\n") + "\n").write(toFile: dir + "/prompts.txt", atomically: true, encoding: .utf8)
    try """
      results_dir: \(dir)/results
      model:
        type: siglip2-so400m-patch16-256
        pretrained_dir: \(model)
      inference:
        datasets:
          - image_dir: \(dir)/data
        text_file: \(dir)/prompts.txt
        batch_size: 4
      """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    let r = try clipkit(["inference", "-e", dir + "/spec.yaml"])
    #expect(r.code == 0, "\(r.err)")
    return (dir, dir + "/results/inference")
  }

  @Test func searchByTextAndImageMatchesNumPy() throws {
    guard ortPython != nil || ortRequired else { return }
    let queries = ["a photo of a cat", "A Red Car on the highway."]
    let (dir, out) = try Self.inference(queries)
    // NumPy: the queries' stored text embeddings against the stored image embeddings.
    let texts = try EmbeddingFile.read(out + "/text_embeddings.h5", kind: .text).file
    let vectors = (0..<texts.labels.count).map { Array(texts.embeddings[($0 * texts.dimension)..<(($0 + 1) * texts.dimension)]) }
    try JSONSerialization.data(withJSONObject: vectors).write(to: URL(fileURLWithPath: dir + "/q.json"))
    let want = try numpyRetrieval(["search", out + "/image_embeddings.h5", dir + "/q.json", "4"]) as! [[[String: Any]]]

    let r = try clipkit(["search", "--embeddings", out, "--text", queries[0], "--text", queries[1], "--top-k", "4", "--json"])
    #expect(r.code == 0, "\(r.err)")
    let lines = try jsonLines(r.out)
    #expect(lines.count == 8, "\(r.out)")
    for (qi, expected) in want.enumerated() {
      let got = lines.filter { $0["query"] as? Int == qi + 1 }
      #expect(got.map { $0["rank"] as! Int } == [1, 2, 3, 4])
      #expect(Set(got.map { $0["name"] as! String }) == Set(expected.map { $0["name"] as! String }), "query \(qi + 1): \(got) vs \(expected)")
      for (g, e) in zip(got, expected) {
        #expect(abs((g["score"] as! Double) - (e["score"] as! Double)) < 1e-5, "\(g) vs \(e)")
      }
    }

    // An image query: it is one of the stored images, so it finds itself first (cosine 1).
    let probe = "\(dir)/data/car/rgba.png"
    let byImage = try clipkit(["search", "--embeddings", out, "--image", probe, "--top-k", "2", "--json"])
    #expect(byImage.code == 0, "\(byImage.err)")
    let first = try jsonLines(byImage.out).first
    #expect(first?["name"] as? String == probe && abs((first?["score"] as? Double ?? 0) - 1) < 1e-4, "\(byImage.out)")
    #expect(!byImage.out.contains("Using pretrained"), "model messages belong on stderr: \(byImage.out)")

    // Searching the texts by image, and the human-readable form.
    let text = try clipkit(["search", "--embeddings", out, "--image", probe, "--modality", "text", "--top-k", "5"])
    #expect(text.code == 0 && text.out.contains("top 2 of the text embeddings") && text.out.contains("A Red Car on the highway."), "\(text.out)\(text.err)")

    // Small blocks (a file streamed in many pieces) give the same hits as one block.
    let q = try Tensor(vectors.flatMap { $0 }, shape: [vectors.count, texts.dimension])
    let reader = try EmbeddingReader(path: out + "/image_embeddings.h5", kind: .image)
    // (Scores to 1e-6: a one-row product may take another BLAS kernel than a whole block.)
    let (small, whole) = (try ExactSearch.topK(queries: q, in: reader, k: 4, blockRows: 1), try ExactSearch.topK(queries: q, in: reader, k: 4))
    #expect(small.map { $0.map(\.row) } == whole.map { $0.map(\.row) })
    #expect(zip(small.joined(), whole.joined()).allSatisfy { abs($0.score - $1.score) < 1e-6 })

    // The page: every hit's image and score.
    let page = dir + "/hits.html"
    let html = try clipkit(["search", "--embeddings", out, "--text", queries[1], "--top-k", "3", "--html", page])
    #expect(html.code == 0, "\(html.err)")
    let body = try String(contentsOfFile: page, encoding: .utf8)
    #expect(body.components(separatedBy: "<img ").count == 4 && body.contains("A Red Car on the highway."))
  }

  @Test func classifyMatchesNumPyWithAccuracyFromFolders() throws {
    guard ortPython != nil || ortRequired else { return }
    let classes = ["cat", "car", "dog", "golden retriever"]
    let templates = ["a photo of a {}.", "a blurry picture of the {}"]
    // The prompts in class-major order, as classify ensembles them.
    let prompts = classes.flatMap { c in templates.map { $0.replacingOccurrences(of: "{}", with: c) } }
    let (dir, out) = try Self.inference(prompts)
    try (classes.joined(separator: "\n") + "\n").write(toFile: dir + "/classes.txt", atomically: true, encoding: .utf8)
    try (templates.joined(separator: "\n") + "\n").write(toFile: dir + "/templates.txt", atomically: true, encoding: .utf8)
    let weights = try Safetensors.read(Self.model + "/model.safetensors").dictionary
    let scale = try weights["logit_scale"]!.exp().item(), bias = try weights["logit_bias"]!.item()
    let want = try numpyRetrieval(["classify", out + "/image_embeddings.h5", out + "/text_embeddings.h5", "2", "\(scale)", "\(bias)", "sigmoid", "3"]) as! [String: Any]
    let (names, top, scores) = (want["names"] as! [String], want["top"] as! [[Int]], want["scores"] as! [[Double]])

    let r = try clipkit(["classify", "--embeddings", out, "--classes", dir + "/classes.txt", "--templates", dir + "/templates.txt", "--json"])
    #expect(r.code == 0, "\(r.err)")
    let lines = try jsonLines(r.out)
    #expect(lines.map { $0["name"] as! String } == names)
    var correct = 0
    for (i, line) in lines.enumerated() {
      let got = line["top"] as! [[String: Any]]
      #expect(got.map { $0["label"] as! String } == top[i].map { classes[$0] }, "\(names[i])")
      for (g, s) in zip(got, scores[i]) { #expect(abs((g["score"] as! Double) - s) < 1e-5) }
      let folder = ((names[i] as NSString).deletingLastPathComponent as NSString).lastPathComponent
      #expect(line["label"] as? String == folder)
      if classes[top[i][0]] == folder { correct += 1 }
    }
    #expect(r.err.contains(String(format: "6 labelled by folder: top-1 accuracy %.2f%%", Double(correct) / 6 * 100)), "\(r.err)")
    #expect(r.err.contains("sigmoid scores") && r.err.contains("confusion"), "\(r.err)")

    // Human-readable, with the default template; bad inputs name what is wrong.
    let plain = try clipkit(["classify", "--embeddings", out, "--classes", dir + "/classes.txt"])
    #expect(plain.code == 0 && plain.out.contains("top-1 accuracy") && plain.out.contains("#1"), "\(plain.out)\(plain.err)")
    try "a photo\n".write(toFile: dir + "/bad.txt", atomically: true, encoding: .utf8)
    let bad = try clipkit(["classify", "--embeddings", out, "--classes", dir + "/classes.txt", "--templates", dir + "/bad.txt"])
    #expect(bad.code != 0 && bad.err.contains("template 1 'a photo' has no {}"), "\(bad.err)")
    let missing = try clipkit(["classify", "--embeddings", out, "--classes", dir + "/nope.txt"])
    #expect(missing.code != 0 && missing.err.contains("--classes \(dir)/nope.txt cannot be read"), "\(missing.err)")
  }

  @Test func dedupAndFloat16SearchMatchNumPy() throws {
    guard ortPython != nil || ortRequired else { return }
    let dir = NSTemporaryDirectory() + "clipkit-dedup-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    // 300 float16 rows with planted near-duplicates (pairs and chains of three), written by h5py.
    let made = try numpyRetrieval(["planted", dir + "/image_embeddings.h5", "300", "32", "7"]) as! [String: Any]
    let want = try numpyRetrieval(["dedup", dir + "/image_embeddings.h5", "0.9"]) as! [[String]]
    #expect(want.count == 30 && want.contains { $0.count == 3 })
    let r = try clipkit(["dedup", "--embeddings", dir, "--threshold", "0.9", "--json"])
    #expect(r.code == 0, "\(r.err)")
    let groups = try jsonLines(r.out).map { [$0["keep"] as! String] + ($0["duplicates"] as! [String]) }
    #expect(groups == want)
    #expect(r.err.contains("300 images: 30 groups of near-duplicates") && r.err.contains("; 35 would be removed"), "\(r.err)")
    // Blockwise (blocks smaller than a group's span, no cache) finds the same groups.
    let reader = try EmbeddingReader(path: dir + "/image_embeddings.h5", kind: .image)
    let names = try reader.allLabels()
    #expect(try ExactSearch.duplicateGroups(reader, threshold: 0.9, blockRows: 7, cacheBytes: 0).map { $0.map { names[$0] } } == want)

    // Exact search over the float16 file against NumPy's brute force.
    let queries = made["queries"] as! [[Double]]
    try JSONSerialization.data(withJSONObject: queries).write(to: URL(fileURLWithPath: dir + "/q.json"))
    let expected = try numpyRetrieval(["search", dir + "/image_embeddings.h5", dir + "/q.json", "5"]) as! [[[String: Any]]]
    let q = try Tensor(queries.flatMap { $0.map(Float.init) }, shape: [3, 32])
    let hits = try ExactSearch.topK(queries: q, in: reader, k: 5, blockRows: 64)
    for (h, e) in zip(hits, expected) {
      #expect(Set(try reader.labels(h.map(\.row))) == Set(e.map { $0["name"] as! String }))
      for (a, b) in zip(h, e) { #expect(abs(Double(a.score) - (b["score"] as! Double)) < 1e-5) }
    }
  }

  @Test func badEmbeddingFoldersGetClearErrors() throws {
    let dir = NSTemporaryDirectory() + "clipkit-badidx-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let none = try clipkit(["search", "--embeddings", dir + "/missing", "--text", "x"])
    #expect(none.code == 1 && none.err.contains("\(dir)/missing is not a directory"), "\(none.err)")
    let noSpec = try clipkit(["search", "--embeddings", dir, "--text", "x"])
    #expect(noSpec.code == 1 && noSpec.err.contains("has no experiment.yaml"), "\(noSpec.err)")
    let noFile = try clipkit(["dedup", "--embeddings", dir])
    #expect(noFile.code == 1 && noFile.err.contains("\(dir)/image_embeddings.h5 does not exist"), "\(noFile.err)")
    try Data("not an HDF5 file at all".utf8).write(to: URL(fileURLWithPath: dir + "/image_embeddings.h5"))
    let corrupt = try clipkit(["dedup", "--embeddings", dir])
    #expect(corrupt.code == 1 && corrupt.err.contains("cannot read \(dir)/image_embeddings.h5: cannot open HDF5 file"), "\(corrupt.err)")
    let threshold = try clipkit(["dedup", "--embeddings", dir, "--threshold", "1.5"])
    #expect(threshold.code == 1 && threshold.err.contains("--threshold must be in (-1, 1]"), "\(threshold.err)")
    // A text file where image embeddings should be: the wrong labels dataset is named.
    try EmbeddingFile(kind: .text, embeddings: [1, 0], dimension: 2, labels: ["a"]).write(to: dir + "/image_embeddings.h5")
    let wrongKind = try clipkit(["dedup", "--embeddings", dir])
    #expect(wrongKind.code == 1 && wrongKind.err.contains("no dataset 'image_paths'"), "\(wrongKind.err)")
  }
}
