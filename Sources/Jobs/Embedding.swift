import Data
import Foundation
import Imaging
import Models
import Torch

/// Runs a CLIP bundle over images and texts in batches; image decoding and preprocessing run on
/// worker threads while libtorch computes.
public struct Embedder {
  let bundle: CLIPBundle
  let batchSize: Int
  let workers: Int
  let decoder = ImageDecoder()

  public init(bundle: CLIPBundle, batchSize: Int, workers: Int) {
    self.bundle = bundle
    self.batchSize = batchSize
    self.workers = workers
  }

  /// Embeddings of the images that decode, in order; unreadable ones are skipped with a warning.
  public func images(_ paths: [String], progressLabel: String = "images") throws -> (embeddings: [Float], kept: [Int], dim: Int) {
    try images(paths.map { ImageSource.file($0) }, progressLabel: progressLabel)
  }

  public func images(_ paths: [ImageSource], progressLabel: String = "images") throws -> (embeddings: [Float], kept: [Int], dim: Int) {
    var out: [Float] = []
    var kept: [Int] = []
    var dim = 0
    let progress = Progress(progressLabel, total: paths.count, unit: "img")
    let (decoder, transform) = (self.decoder, bundle.preprocess)
    let batches = stride(from: 0, to: paths.count, by: batchSize).map { Array($0..<min($0 + batchSize, paths.count)) }
    // Decoding runs on the spec's num_workers threads, up to two batches ahead of the model.
    let loader = BatchPrefetcher<Result<ImageInput, Error>>(batches: batches, workers: workers, depth: 2) { i in
      Result {
        if case .file(let p) = paths[i] { return transform(try decoder.decode(file: p)) }
        return transform(try decoder.decode(bytes: try paths[i].bytes(), name: paths[i].name))
      }
    }
    defer { loader.stop() }
    // On a GPU the host assembles batch k+1 in pinned memory and queues its copy while batch k
    // computes; then it reads back batch k's embeddings and launches k+1 at once. (Reading k back
    // after launching k+1 would wait for k+1 too: one stream runs in order.)
    let device = bundle.encoder.logitScale.device
    var pending: (emb: Tensor, kept: [Int], count: Int)?
    func collect() throws {
      guard let p = pending else { return }
      dim = p.emb.size(1)
      out += try p.emb.floats()
      kept += p.kept
      progress.advance(p.count)
      pending = nil
    }
    for idx in batches {
      guard let results = loader.next() else { break }
      var pixels = [ImageInput?](repeating: nil, count: idx.count)
      for i in idx.indices {
        switch results[i]! {
        case .success(let px): pixels[i] = px
        case .failure(let e): warn("skipping unreadable image: \(e.localizedDescription)")
        }
      }
      let good = pixels.indices.filter { pixels[$0] != nil }
      let inputs = good.map { pixels[$0]! }
      var staged: Tensor? = nil
      if case .pixels? = inputs.first { staged = try ImageInput.pixelBatch(inputs, for: device).upload(to: device) }
      try collect()
      if good.isEmpty {
        progress.advance(idx.count)
        continue
      }
      let emb = try noGrad { try staged.map { try bundle.encoder.encodeImages($0) } ?? bundle.encoder.encodeImages(inputs) }
      pending = (emb, good.map { idx[$0] }, idx.count)
    }
    try collect()
    return (out, kept, dim)
  }

  public func texts(_ texts: [String]) throws -> (embeddings: [Float], dim: Int) {
    var out: [Float] = []
    var dim = 0
    let progress = Progress("texts", total: texts.count, unit: "txt")
    for start in stride(from: 0, to: texts.count, by: batchSize) {
      let chunk = Array(texts[start..<min(start + batchSize, texts.count)])
      let enc = try bundle.tokenize(chunk)
      let ids = try Tensor(enc.ids.flatMap { $0.map(Int64.init) }, shape: [chunk.count, enc.ids[0].count])
      // SigLIP was trained without a text attention mask (pads are attended), as transformers'
      // get_text_features is called in its docs; the mask goes only to towers TAO gives it to.
      let mask = bundle.encoder.usesTextAttentionMask
        ? try Tensor(enc.attentionMask.flatMap { $0.map(Int64.init) }, shape: [chunk.count, enc.ids[0].count]) : nil
      let emb = try noGrad { try bundle.encoder.encodeTexts(ids, attentionMask: mask) }
      dim = emb.size(1)
      out += try emb.floats()
      progress.advance(chunk.count)
    }
    return (out, dim)
  }
}

/// Image files under a directory, recursively, as `os.path.join(root, file)` would name them,
/// sorted by code point (Python's sort).
public func walkImages(_ dir: String, extensions: Set<String> = ["jpg", "jpeg", "png", "bmp", "gif", "webp"]) throws -> [String] {
  var isDir: ObjCBool = false
  guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
    throw ActionError.input("image_dir \(dir) does not exist or is not a directory")
  }
  var out: [String] = []
  let e = FileManager.default.enumerator(atPath: dir)
  while let rel = e?.nextObject() as? String {
    if extensions.contains((rel as NSString).pathExtension.lowercased()) {
      out.append(dir.hasSuffix("/") ? dir + rel : dir + "/" + rel)
    }
  }
  return out.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
}

