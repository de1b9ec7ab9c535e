import Data
import Foundation
import Models
import Retrieval
import Spec
import Torch

/// The spec's DataPath entries as the Data library's custom datasets.
func customDatasets(_ d: [DataPathConfig], section: String) throws -> [CustomDataset] {
  try d.enumerated().map { i, e in
    guard let dir = e.imageDir else { throw ActionError.input("\(section).\(i).image_dir is not set") }
    return CustomDataset(imageDir: dir, imageListFile: e.imageListFile, captionDir: e.captionDir, captionSuffix: e.captionFileSuffix)
  }
}

/// `clipkit evaluate`: retrieval metrics on image-caption pairs (evaluate.datasets, else
/// dataset.val.datasets).
/// `model` gives the encoder: the spec's checkpoint by default, an exported model for `deploy`.
/// `rules`: which images a directory contributes (TAO Deploy lists fewer formats than TAO PyTorch).
func runEvaluate(_ ctx: ActionContext, rules: CustomLayoutRules = .training,
                 model: (ActionContext) throws -> CLIPBundle = { try loadModel($0, checkpoint: $0.config.evaluate.checkpoint) }) throws {
  let cfg = ctx.config.evaluate
  let (datasets, section) = cfg.datasets.isEmpty ? (ctx.config.dataset.val.datasets, "dataset.val.datasets") : (cfg.datasets, "evaluate.datasets")
  guard !datasets.isEmpty else { throw ActionError.input("evaluate needs image-caption pairs: set dataset.val.datasets (or evaluate.datasets)") }
  let pairs = try customPairs(try customDatasets(datasets, section: section), section: section, rules: rules)
  if pairs.skippedCaptions > 0 { warn("\(pairs.skippedCaptions) images without a (non-empty) caption were skipped") }
  guard !pairs.pairs.isEmpty else { throw ActionError.input("\(section) holds no image-caption pairs") }
  let bundle = try model(ctx)
  let embedder = Embedder(bundle: bundle, batchSize: max(1, cfg.batchSize), workers: max(1, cfg.numWorkers))
  let img = try embedder.images(pairs.pairs.map(\.image))
  guard !img.kept.isEmpty else {
    throw ActionError.input("none of the \(pairs.pairs.count) images of \(section) could be read: nothing to evaluate")
  }
  if img.kept.count < pairs.pairs.count { warn("\(pairs.pairs.count - img.kept.count) unreadable images were dropped with their captions") }
  let captions = img.kept.map { pairs.pairs[$0].caption }
  let txt = try embedder.texts(captions)
  let result = try retrievalMetrics(images: img.embeddings, texts: txt.embeddings, count: captions.count, dim: img.dim)
  print("Image-to-Text: \(result.i2t.line)")
  print("Text-to-Image: \(result.t2i.line)")
  var json: [String: Any] = ["num_images": captions.count, "num_texts": captions.count]
  for (prefix, m) in [("i2t", result.i2t), ("t2i", result.t2i)] {
    json["\(prefix)_R@1"] = m.recallAt1; json["\(prefix)_R@5"] = m.recallAt5; json["\(prefix)_R@10"] = m.recallAt10
    json["\(prefix)_mAP"] = m.mAP; json["\(prefix)_MedR"] = m.medianRank; json["\(prefix)_MeanR"] = m.meanRank
    json["\(prefix)_AUC"] = m.auc
  }
  let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
  try AtomicFile.write(ctx.resultsDir + "/results.json", data: data)
  print("Wrote \(ctx.resultsDir)/results.json")
  try ctx.status.write(.success, message: "Evaluation finished successfully.",
                       kpi: ["i2t_R@1": result.i2t.recallAt1, "t2i_R@1": result.t2i.recallAt1, "i2t_mAP": result.i2t.mAP,
                             "t2i_mAP": result.t2i.mAP, "i2t_AUC": result.i2t.auc, "t2i_AUC": result.t2i.auc])
}

/// Cosine similarities (embeddings are L2-normalised) in both directions, then the metrics.
func retrievalMetrics(images: [Float], texts: [Float], count n: Int, dim: Int) throws -> (i2t: RetrievalMetrics, t2i: RetrievalMetrics) {
  let i = try Tensor(images, shape: [n, dim]).l2Normalized()
  let t = try Tensor(texts, shape: [n, dim]).l2Normalized()
  let sim = try i.matmul(try t.transpose(0, 1))
  let i2t = try RetrievalMetrics.compute(similarity: try sim.contiguous().floats(), queries: n, gallery: n)
  let t2i = try RetrievalMetrics.compute(similarity: try sim.transpose(0, 1).contiguous().floats(), queries: n, gallery: n)
  return (i2t, t2i)
}
