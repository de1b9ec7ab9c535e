import Foundation

public enum MetricsError: Error, LocalizedError, Equatable {
  case noQueries
  case shape(scores: Int, queries: Int, gallery: Int)
  public var errorDescription: String? {
    switch self {
    case .noQueries: return "no image-caption pairs to score (every sample was unreadable or skipped)"
    case .shape(let s, let q, let g): return "\(s) similarity scores for \(q) queries x \(g) gallery items"
    }
  }
}

/// Retrieval metrics for paired data (item i of the queries matches item i of the gallery), with
/// TAO's definitions: R@k, AP/mAP, 1-based rank of the first positive, MedR (np.median), MeanR,
/// and the true ranking AUC (Mann-Whitney, ties counted half) instead of TAO's mixed-up one.
///
/// Ties with the positive are broken at random and each metric is its expected value, so a
/// collapsed model (every score equal) scores chance, not 100 %: with g scores above the
/// positive and t others equal to it, its rank is uniform over g+1 ... g+t+1.
public struct RetrievalMetrics: Sendable, Equatable {
  public var recallAt1, recallAt5, recallAt10: Double
  public var mAP: Double
  public var medianRank: Double
  public var meanRank: Double
  public var auc: Double

  /// `similarity`: row-major Q x G scores; query q's only positive is gallery item q.
  public static func compute(similarity s: [Float], queries: Int, gallery: Int) throws -> RetrievalMetrics {
    guard queries > 0 else { throw MetricsError.noQueries }
    guard queries <= gallery, s.count == queries * gallery else {
      throw MetricsError.shape(scores: s.count, queries: queries, gallery: gallery)
    }
    var expectedRanks: [Double] = []
    var r1 = 0.0, r5 = 0.0, r10 = 0.0, ap = 0.0, auc = 0.0
    for q in 0..<queries {
      let row = s[(q * gallery)..<((q + 1) * gallery)]
      let pos = row[row.startIndex + q]
      var greater = 0, ties = 0
      // A NaN score is never above the positive; a NaN positive ties with nothing and ranks last.
      for v in row { if v > pos || (pos.isNaN && !v.isNaN) { greater += 1 } else if v == pos { ties += 1 } }
      if !pos.isNaN { ties -= 1 }  // the positive itself
      let lo = greater + 1, hi = greater + ties + 1  // the equally likely ranks
      let outcomes = Double(ties + 1)
      func recall(_ k: Int) -> Double { Double(max(0, min(k, hi) - lo + 1)) / outcomes }
      r1 += recall(1); r5 += recall(5); r10 += recall(10)
      ap += (lo...hi).reduce(0.0) { $0 + 1 / Double($1) } / outcomes
      expectedRanks.append(Double(greater) + 1 + Double(ties) / 2)
      let negatives = Double(gallery - 1)
      auc += negatives > 0 ? (negatives - Double(greater) - 0.5 * Double(ties)) / negatives : 1
    }
    let n = Double(queries)
    let sorted = expectedRanks.sorted()
    let mid = sorted.count / 2
    let median = sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    return RetrievalMetrics(recallAt1: r1 / n, recallAt5: r5 / n, recallAt10: r10 / n, mAP: ap / n,
                            medianRank: median, meanRank: expectedRanks.reduce(0, +) / n, auc: auc / n)
  }

  /// The line TAO's docs show: `R@1=72.4 R@5=91.2 R@10=95.8 mAP=78.3 MedR=1 AUC=0.94`.
  public var line: String {
    func pct(_ v: Double) -> String { String(format: "%.1f", v * 100) }
    let medr = medianRank == medianRank.rounded() ? String(Int(medianRank)) : String(format: "%.1f", medianRank)
    return "R@1=\(pct(recallAt1)) R@5=\(pct(recallAt5)) R@10=\(pct(recallAt10)) mAP=\(pct(mAP)) MedR=\(medr) AUC=\(String(format: "%.4f", auc))"
  }
}
