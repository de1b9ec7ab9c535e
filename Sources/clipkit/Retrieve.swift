import ArgumentParser
import Foundation
import Jobs
import Retrieval

// Retrieval over an `inference` output folder: search, zero-shot classification, dedup.

struct EmbeddingsOptions: ParsableArguments {
  @Option(help: "An `inference` output folder: its *_embeddings.h5 files and the experiment.yaml recording the model.")
  var embeddings: String

  @Flag(help: "One JSON object per line on stdout (messages go to stderr).")
  var json = false
}

enum Modality: String, ExpressibleByArgument, CaseIterable {
  case image, text
  var kind: EmbeddingFile.Kind { self == .image ? .image : .text }
}

struct Search: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Exact top-k search of stored embeddings by text or image (cosine similarity).",
    discussion: "Queries are embedded by the model that made the embeddings (the folder's experiment.yaml). Files larger than memory stream through in blocks.")
  @OptionGroup var options: EmbeddingsOptions
  @Option(name: .customLong("text"), help: "A text query (repeatable).") var texts: [String] = []
  @Option(name: .customLong("image"), help: "An image file as the query (repeatable).") var images: [String] = []
  @Option(help: "Which stored embeddings to search: image or text.") var modality: Modality = .image
  @Option(name: .customLong("top-k"), help: "Results per query.") var topK = 10
  @Option(help: "Also write the results as an HTML page (thumbnails for images).") var html: String?

  func run() throws {
    let queries = texts.map(SearchQuery.text) + images.map(SearchQuery.image)
    let results = try searchEmbeddings(dir: options.embeddings, queries: queries, modality: modality.kind, topK: topK)
    for (qi, (q, hits)) in zip(queries, results).enumerated() {
      if options.json {
        for h in hits {
          var line: [(String, Any)] = [("rank", h.rank), ("name", h.name), ("score", h.score)]
          if queries.count > 1 { line.insert(("query", qi + 1), at: 0) }
          print(OrderedJSON.object(line))
        }
      } else {
        print("\(describe(q)) — top \(hits.count) of the \(modality.rawValue) embeddings:")
        for h in hits { print(String(format: "%4d  %.4f  ", h.rank, h.score) + h.name) }
      }
    }
    if let html {
      try SearchPage.write(queries: queries.map(describe), results: results, modality: modality, to: html)
      FileHandle.standardError.write(Data("Wrote \(html)\n".utf8))
    }
  }

  func describe(_ q: SearchQuery) -> String {
    switch q {
    case .text(let t): return "text \"\(t)\""
    case .image(let p): return "image \(p)"
    }
  }
}

struct Classify: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Zero-shot classification of stored image embeddings against class names.",
    discussion: "Scores as the family trains: SigLIP-style models sigmoid(scale·cos + bias) per class, CLIP-style ones a softmax over classes. When images sit in folders named after classes, prints accuracy and a confusion table.")
  @OptionGroup var options: EmbeddingsOptions
  @Option(help: "Class names, one per line.") var classes: String
  @Option(help: "Prompt templates, one per line, {} where the class goes (default: a photo of a {}.).") var templates: String?
  @Option(help: "Classes listed per image.") var top = 3

  func run() throws {
    let names = try readLines(classes, what: "--classes")
    let temps = try templates.map { try readLines($0, what: "--templates") } ?? ["a photo of a {}."]
    let r = try classifyEmbeddings(dir: options.embeddings, classes: names, templates: temps, top: max(1, top))
    for (i, name) in r.names.enumerated() {
      let truth: Any = r.truth[i].map { r.classes[$0] } ?? NSNull()
      if options.json {
        print(OrderedJSON.object([("name", name), ("top", r.top[i].map { [("label", $0.label), ("score", $0.score)] as [(String, Any)] }), ("label", truth)]))
      } else {
        print(name + "  " + r.top[i].map { "\($0.label) " + String(format: "%.4f", $0.score) }.joined(separator: ", "))
      }
    }
    var summary = "\(r.names.count) images, \(r.classes.count) classes, \(r.scoring) scores"
    if let acc = r.accuracy {
      summary += String(format: "; %d labelled by folder: top-1 accuracy %.2f%%", r.labelled, acc * 100)
      if let a5 = r.top5Accuracy { summary += String(format: ", top-5 %.2f%%", a5 * 100) }
    } else {
      summary += "; no image's folder names a class, so no accuracy"
    }
    let out: (String) -> Void = options.json ? { FileHandle.standardError.write(Data(($0 + "\n").utf8)) } : { print($0) }
    out(summary)
    if r.accuracy != nil { out(confusionTable(r)) }
  }

  /// Rows: true class; columns: predicted (numbered as the rows).
  func confusionTable(_ r: ClassificationReport) -> String {
    let m = r.confusion
    let used = r.classes.indices.filter { i in m[i].contains { $0 > 0 } || m.contains { $0[i] > 0 } }
    let w = max(4, String(m.flatMap { $0 }.max() ?? 0).count + 1)
    var lines = ["confusion (rows: folder class, columns: predicted):",
                 String(repeating: " ", count: 6) + used.map { String(repeating: " ", count: w - String($0 + 1).count - 1) + "#\($0 + 1)" }.joined()]
    for i in used {
      let cells = used.map { j -> String in let s = String(m[i][j]); return String(repeating: " ", count: w - s.count) + s }.joined()
      let label = "#\(i + 1)"
      lines.append(String(repeating: " ", count: max(0, 5 - label.count)) + label + " " + cells + "  " + r.classes[i])
    }
    return lines.joined(separator: "\n")
  }
}

struct Dedup: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Near-duplicate groups among stored embeddings (cosine ≥ threshold, joined transitively).",
    discussion: "Exact and blockwise: memory holds two blocks (or the file, up to 4 GiB), never the N×N matrix. Each group keeps its first member.")
  @OptionGroup var options: EmbeddingsOptions
  @Option(help: "Which stored embeddings: image or text.") var modality: Modality = .image
  @Option(help: "Cosine similarity at or above which two items are duplicates (clip-retrieval uses 0.94).") var threshold: Float = 0.94

  func run() throws {
    let (total, groups) = try dedupEmbeddings(dir: options.embeddings, modality: modality.kind, threshold: threshold)
    for (i, g) in groups.enumerated() {
      if options.json {
        print(OrderedJSON.object([("group", i + 1), ("keep", g[0]), ("duplicates", Array(g.dropFirst()) as [Any])]))
      } else {
        print("group \(i + 1): keep \(g[0])")
        for d in g.dropFirst() { print("  duplicate \(d)") }
      }
    }
    let removed = groups.reduce(0) { $0 + $1.count - 1 }
    let summary = "\(total) \(modality.rawValue)s: \(groups.count) group\(groups.count == 1 ? "" : "s") of near-duplicates at cosine ≥ \(threshold); \(removed) would be removed"
    if options.json { FileHandle.standardError.write(Data((summary + "\n").utf8)) } else { print(summary) }
  }
}

func readLines(_ path: String, what: String) throws -> [String] {
  guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
    throw InputError("\(what) \(path) cannot be read as UTF-8 text")
  }
  return text.components(separatedBy: .newlines).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}

/// A command-line input problem: one line after "error: " and exit status 1.
struct InputError: LocalizedError {
  let message: String
  init(_ message: String) { self.message = message }
  var errorDescription: String? { message }
}

/// `clipkit search --html`: the results as a page (thumbnails for image results, linked to the file).
enum SearchPage {
  static func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
  }

  static func write(queries: [String], results: [[SearchHit]], modality: Modality, to path: String) throws {
    var body = ""
    for (q, hits) in zip(queries, results) {
      body += "<section><h2>\(escape(q))</h2><ol class=\"hits\">\n"
      for h in hits {
        let score = String(format: "%.4f", h.score)
        if modality == .image {
          let url = URL(fileURLWithPath: h.name).absoluteString
          body += "<li><a href=\"\(escape(url))\"><img src=\"\(escape(url))\" alt=\"\(escape(h.name))\"></a><span class=\"score\">\(score)</span><span class=\"name\">\(escape(h.name))</span></li>\n"
        } else {
          body += "<li><span class=\"score\">\(score)</span><span class=\"name\">\(escape(h.name))</span></li>\n"
        }
      }
      body += "</ol></section>\n"
    }
    let page = """
    <!doctype html><html><head><meta charset="utf-8"><title>clipkit search</title><style>
    body{font-family:sans-serif;margin:1.5em;background:#fafafa}
    ol.hits{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:12px}
    ol.hits li{width:180px;background:#fff;border:1px solid #ddd;padding:6px;display:flex;flex-direction:column}
    ol.hits img{width:180px;height:180px;object-fit:cover;background:#eee}
    .score{font-weight:bold}.name{font-size:11px;color:#555;word-break:break-all}
    </style></head><body><h1>clipkit search</h1>
    \(body)</body></html>

    """
    do { try page.write(toFile: path, atomically: true, encoding: .utf8) } catch {
      throw InputError("cannot write \(path): \(error.localizedDescription)")
    }
  }
}
