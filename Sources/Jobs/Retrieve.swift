import Foundation
import Imaging
import Models
import Retrieval
import Spec
import Torch

/// An `inference` (or `deploy inference`) output folder: its HDF5 files and the experiment.yaml
/// that records the model that made them, which embeds queries for `search` and `classify`.
public final class EmbeddingsFolder {
  public let dir: String
  let spec: Spec
  let config: CLIPExperimentConfig
  let deployed: Bool
  private var loaded: CLIPBundle?

  public init(_ dir: String) throws {
    let d = try Self.checkedDirectory(dir)
    let specFile = d + "/experiment.yaml"
    guard FileManager.default.fileExists(atPath: specFile) else {
      throw ActionError.input("\(d) has no experiment.yaml: give the folder `clipkit inference` wrote (results_dir/inference), which records the model")
    }
    self.dir = d
    spec = try Spec.load(file: specFile)
    config = try spec.config()
    // status.json's first line names the action: "Starting CLIP deploy inference." for an exported model.
    let status = (try? String(contentsOfFile: d + "/status.json", encoding: .utf8)) ?? ""
    deployed = status.contains("Starting CLIP deploy inference")
  }

  static func checkedDirectory(_ dir: String) throws -> String {
    let d = dir.hasSuffix("/") && dir.count > 1 ? String(dir.dropLast()) : dir
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: d, isDirectory: &isDir), isDir.boolValue else {
      throw ActionError.input("--embeddings \(d) is not a directory: give the folder `clipkit inference` wrote (results_dir/inference)")
    }
    return d
  }

  public func reader(_ kind: EmbeddingFile.Kind) throws -> EmbeddingReader { try Self.reader(dir, kind) }

  /// The embedding file of one kind, with a message saying how to make it when it is missing
  /// (no model needed: dedup reads only this).
  static func reader(_ dir: String, _ kind: EmbeddingFile.Kind) throws -> EmbeddingReader {
    let path = "\(try checkedDirectory(dir))/\(kind.rawValue)_embeddings.h5"
    guard FileManager.default.fileExists(atPath: path) else {
      let how = kind == .image ? "inference.datasets[].image_dir" : "inference.text_file"
      throw ActionError.input("\(path) does not exist: that inference run embedded no \(kind.rawValue)s (set \(how))")
    }
    return try EmbeddingReader(path: path, kind: kind)
  }

  /// The recorded model, loaded once; its messages go to stderr so results own stdout.
  func model() throws -> CLIPBundle {
    if let loaded { return loaded }
    let outer = Console.current
    let bundle = try Console.$current.withValue(Console(out: outer.err, err: outer.err, isTerminal: outer.isTerminal)) { () throws -> CLIPBundle in
      var ctx = ActionContext(name: "inference", spec: spec, config: config, resultsDir: dir, status: try StatusLog(path: nil), hooks: JobHooks())
      ctx.device = try placement(ctx)
      try Torch.resetGlobalSettings()
      if deployed {
        return try loadDeployed(config.inference.trtEngine, section: "inference", gpu: config.inference.gpuIds.first ?? 0)
      }
      return try loadModel(ctx, checkpoint: config.inference.checkpoint)
    }
    loaded = bundle
    return bundle
  }

  /// Normalised embeddings [N, D] of texts, prepared as `inference` prepares prompt lines.
  func embedTexts(_ texts: [String]) throws -> Tensor {
    let clean = texts.map { $0.trimmingCharacters(in: .whitespaces) }
    if let i = clean.firstIndex(where: \.isEmpty) { throw ActionError.input("query \(i + 1) is empty") }
    let bundle = try model()
    let r = try Embedder(bundle: bundle, batchSize: max(1, config.inference.batchSize), workers: 1).texts(clean)
    return try Tensor(r.embeddings, shape: [clean.count, r.dim])
  }

  /// Normalised embeddings [N, D] of image files; an unreadable one is an error naming it.
  func embedImages(_ paths: [String]) throws -> Tensor {
    let bundle = try model()
    let decoder = ImageDecoder()
    let inputs = try paths.map { p -> ImageInput in
      guard FileManager.default.fileExists(atPath: p) else { throw ActionError.input("image \(p) does not exist") }
      do { return bundle.preprocess(try decoder.decode(file: p)) } catch {
        throw ActionError.input("cannot read image \(p): \(oneLine(error))")
      }
    }
    return try noGrad { try bundle.encoder.encodeImages(inputs) }
  }

  /// Zero-shot scoring as the family trains: SigLIP-style models (a sigmoid loss: SigLIP, RADIO
  /// with a SigLIP adaptor) give each label sigmoid(scale·cos + bias); CLIP-style ones a softmax
  /// over labels of scale·cos.
  var scoresWithSigmoid: Bool {
    let type = config.model.type.lowercased()
    if type.contains("siglip") { return true }
    if type.contains("radio") { return (config.model.adaptorName ?? "").lowercased().contains("siglip") }
    return false
  }
}

public enum SearchQuery: Sendable, Equatable {
  case text(String)
  case image(String)
}

/// One result of `clipkit search`: rank (from 1), the stored name (image path or text) and score.
public struct SearchHit: Sendable, Equatable {
  public let rank: Int
  public let name: String
  public let score: Float
}

/// `clipkit search`: exact top-k of each query over the folder's `modality` embeddings.
public func searchEmbeddings(dir: String, queries: [SearchQuery], modality: EmbeddingFile.Kind, topK: Int,
                             blockRows: Int = 32_768) throws -> [[SearchHit]] {
  guard topK >= 1 else { throw ActionError.input("--top-k must be at least 1 (got \(topK))") }
  guard !queries.isEmpty else { throw ActionError.input("give a query: --text or --image") }
  let folder = try EmbeddingsFolder(dir)
  let reader = try folder.reader(modality)
  var texts: [(Int, String)] = [], images: [(Int, String)] = []
  for (i, q) in queries.enumerated() {
    switch q {
    case .text(let t): texts.append((i, t))
    case .image(let p): images.append((i, p))
    }
  }
  var rows = [Tensor?](repeating: nil, count: queries.count)
  if !texts.isEmpty {
    let e = try folder.embedTexts(texts.map(\.1))
    for (j, (i, _)) in texts.enumerated() { rows[i] = try e.narrow(dim: 0, start: j, length: 1) }
  }
  if !images.isEmpty {
    let e = try folder.embedImages(images.map(\.1))
    for (j, (i, _)) in images.enumerated() { rows[i] = try e.narrow(dim: 0, start: j, length: 1) }
  }
  let q = try Tensor.cat(rows.map { try $0!.to(device: .cpu) }, dim: 0)
  let hits = try ExactSearch.topK(queries: q, in: reader, k: topK, blockRows: blockRows)
  // Labels only for the rows returned.
  let wanted = Array(Set(hits.flatMap { $0.map(\.row) })).sorted()
  let names = Dictionary(uniqueKeysWithValues: zip(wanted, try reader.labels(wanted)))
  return hits.map { list in list.enumerated().map { SearchHit(rank: $0.offset + 1, name: names[$0.element.row] ?? "", score: $0.element.score) } }
}

/// `clipkit dedup`: groups of near-duplicate rows (cosine ≥ threshold, transitively), as names.
public func dedupEmbeddings(dir: String, modality: EmbeddingFile.Kind, threshold: Float, blockRows: Int = 4096) throws -> (total: Int, groups: [[String]]) {
  guard threshold > -1, threshold <= 1 else { throw ActionError.input("--threshold must be in (-1, 1] (got \(threshold))") }
  let reader = try EmbeddingsFolder.reader(dir, modality)
  let progress = Progress("dedup", total: reader.count, unit: "rows")
  let groups = try ExactSearch.duplicateGroups(reader, threshold: threshold, blockRows: blockRows, progress: progress)
  let rows = groups.flatMap { $0 }
  let names = Dictionary(uniqueKeysWithValues: zip(rows, try reader.labels(rows)))
  return (reader.count, groups.map { $0.map { names[$0] ?? "" } })
}

/// A class and its score for one image.
public struct ClassScore: Sendable, Equatable {
  public let label: String
  public let score: Float
}

/// `clipkit classify`: every image's best classes; with labels (parent folders naming classes),
/// accuracy and a confusion matrix (rows: true class, columns: predicted).
public struct ClassificationReport: Sendable {
  public let classes: [String]
  public let scoring: String  // "sigmoid" or "softmax"
  public let names: [String]
  public let top: [[ClassScore]]
  /// The class index of each image's parent folder, where that names a class.
  public let truth: [Int?]
  public var labelled: Int { truth.compactMap { $0 }.count }
  public var accuracy: Double? { hitRate(1) }
  public var top5Accuracy: Double? { classes.count > 5 ? hitRate(5) : nil }
  public var confusion: [[Int]] {
    var m = [[Int]](repeating: [Int](repeating: 0, count: classes.count), count: classes.count)
    let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($0.element, $0.offset) })
    for (t, p) in zip(truth, top) { if let t, let first = p.first, let j = index[first.label] { m[t][j] += 1 } }
    return m
  }
  private func hitRate(_ k: Int) -> Double? {
    guard labelled > 0 else { return nil }
    var hits = 0
    for (t, p) in zip(truth, top) { if let t, p.prefix(k).contains(where: { $0.label == classes[t] }) { hits += 1 } }
    return Double(hits) / Double(labelled)
  }
}

/// Names compared loosely for labels: case, `_` and `-` do not matter ("golden_retriever" is the
/// class "Golden retriever").
func labelKey(_ s: String) -> String {
  s.lowercased().replacingOccurrences(of: "_", with: " ").replacingOccurrences(of: "-", with: " ")
    .split(separator: " ").joined(separator: " ")
}

public func classifyEmbeddings(dir: String, classes: [String], templates: [String] = ["a photo of a {}."], top: Int = 5,
                               blockRows: Int = 32_768) throws -> ClassificationReport {
  let classes = classes.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
  guard !classes.isEmpty else { throw ActionError.input("the classes file names no class (one per line)") }
  if let dup = Dictionary(grouping: classes, by: labelKey).first(where: { $0.value.count > 1 }) {
    throw ActionError.input("classes \(dup.value.map { "'\($0)'" }.joined(separator: " and ")) are the same label")
  }
  guard !templates.isEmpty else { throw ActionError.input("the templates file has no template (one per line, with {} for the class)") }
  if let bad = templates.firstIndex(where: { !$0.contains("{}") }) {
    throw ActionError.input("template \(bad + 1) '\(templates[bad])' has no {} where the class name goes")
  }
  let folder = try EmbeddingsFolder(dir)
  let reader = try folder.reader(.image)
  let bundle = try folder.model()
  // Each class: the mean of its templates' normalised embeddings, normalised (CLIP's ensembling).
  let prompts = classes.flatMap { c in templates.map { $0.replacingOccurrences(of: "{}", with: c) } }
  let e = try folder.embedTexts(prompts).to(device: .cpu)
  let weights = try e.reshape([classes.count, templates.count, e.size(1)]).mean(dims: [1]).l2Normalized(dim: 1)
  guard weights.size(1) == reader.dimension else {
    throw ActionError.input("\(reader.path) holds dimension \(reader.dimension) but the recorded model embeds \(weights.size(1))")
  }
  let scale = try bundle.encoder.logitScale.to(device: .cpu).exp().item()
  let bias = try bundle.encoder.logitBias.to(device: .cpu).item()
  let sigmoid = folder.scoresWithSigmoid
  let k = min(top, classes.count)
  var best: [[ClassScore]] = []
  best.reserveCapacity(reader.count)
  let progress = Progress("classify", total: reader.count, unit: "img")
  try BlockStream.forEach(reader, blockRows: blockRows) { _, x in
    let logits = try x.matmul(try weights.transpose(0, 1)) * scale
    let p = sigmoid ? try (logits + bias).sigmoid() : try F.softmax(logits, dim: 1)
    let (v, i) = try p.topk(k, dim: 1)
    let (vs, ix) = (try v.floats(), try i.toArray(Int64.self))
    for r in 0..<x.size(0) { best.append((0..<k).map { ClassScore(label: classes[Int(ix[r * k + $0])], score: vs[r * k + $0]) }) }
    progress.advance(x.size(0))
  }
  let names = try reader.allLabels()
  let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { (labelKey($0.element), $0.offset) })
  let truth = names.map { index[labelKey(($0 as NSString).deletingLastPathComponent.lastPathComponentOfPath)] }
  return ClassificationReport(classes: classes, scoring: sigmoid ? "sigmoid" : "softmax", names: names, top: best, truth: truth)
}

private extension String {
  var lastPathComponentOfPath: String { (self as NSString).lastPathComponent }
}

/// An `inference` folder held in memory for `clipkit serve`'s search page: its normalised image
/// and text embeddings and their names.
public final class LoadedIndex: @unchecked Sendable {
  public let dir: String
  private var matrices: [EmbeddingFile.Kind: Tensor] = [:]
  private var names: [EmbeddingFile.Kind: [String]] = [:]

  public init(_ dir: String) throws {
    self.dir = try EmbeddingsFolder.checkedDirectory(dir)
    for kind in [EmbeddingFile.Kind.image, .text] where FileManager.default.fileExists(atPath: "\(self.dir)/\(kind.rawValue)_embeddings.h5") {
      let r = try EmbeddingsFolder.reader(self.dir, kind)
      // The blocks search streams (halves widened by libtorch), kept.
      var blocks: [Tensor] = []
      try BlockStream.forEach(r, blockRows: 65_536) { _, x in blocks.append(x) }
      matrices[kind] = blocks.isEmpty ? try Tensor.zeros([0, r.dimension]) : try Tensor.cat(blocks, dim: 0)
      names[kind] = try r.allLabels()
    }
    guard !matrices.isEmpty else { throw ActionError.input("serve.index \(self.dir) holds no image_embeddings.h5 or text_embeddings.h5") }
  }

  public var kinds: [EmbeddingFile.Kind] { [.image, .text].filter { matrices[$0] != nil } }
  public func count(_ kind: EmbeddingFile.Kind) -> Int { names[kind]?.count ?? 0 }
  public func dimension(_ kind: EmbeddingFile.Kind) -> Int { matrices[kind]?.size(1) ?? 0 }
  public func name(_ kind: EmbeddingFile.Kind, row: Int) -> String? {
    guard let n = names[kind], row >= 0, row < n.count else { return nil }
    return n[row]
  }
  /// A stored row's embedding (to search by a result).
  public func vector(_ kind: EmbeddingFile.Kind, row: Int) throws -> [Float] {
    guard let m = matrices[kind], row >= 0, row < m.size(0) else { throw ActionError.input("row \(row) is not in the \(kind.rawValue) index") }
    return try m.select(dim: 0, index: row).floats()
  }

  /// Exact top-k of one query over the `kind` embeddings: (row, name, cosine).
  public func search(_ query: [Float], in kind: EmbeddingFile.Kind, k: Int) throws -> [(row: Int, name: String, score: Float)] {
    guard let m = matrices[kind], let n = names[kind] else { throw ActionError.input("the index has no \(kind.rawValue) embeddings") }
    guard query.count == m.size(1) else {
      throw ActionError.input("the query has dimension \(query.count) but the index holds \(m.size(1)): serve.index was made by another model")
    }
    let q = try Tensor(query, shape: [1, query.count]).l2Normalized(dim: 1)
    let (v, i) = try q.matmul(try m.transpose(0, 1)).topk(min(max(k, 1), m.size(0)), dim: 1)
    return zip(try i.toArray(Int64.self), try v.floats()).map { (Int($0), n[Int($0)], $1) }
  }
}
