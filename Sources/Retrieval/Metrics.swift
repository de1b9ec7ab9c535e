import Foundation

/// Retrieval metrics for paired data (item i of the queries matches item i of the gallery), with
/// TAO's definitions: R@k, AP/mAP, 1-based rank of the first positive, MedR (np.median), MeanR,
/// and the true ranking AUC (Mann-Whitney, ties counted half) instead of TAO's mixed-up one.
public struct RetrievalMetrics: Sendable, Equatable {
  public var recallAt1, recallAt5, recallAt10: Double
  public var mAP: Double
  public var medianRank: Double
  public var meanRank: Double
  public var auc: Double

  /// `similarity`: row-major Q x G scores; query q's only positive is gallery item q.
  public static func compute(similarity s: [Float], queries: Int, gallery: Int) -> RetrievalMetrics {
    precondition(s.count == queries * gallery && queries <= gallery)
    var ranks: [Double] = []
    var r1 = 0.0, r5 = 0.0, r10 = 0.0, ap = 0.0, auc = 0.0
    for q in 0..<queries {
      let row = s[(q * gallery)..<((q + 1) * gallery)]
      let pos = row[row.startIndex + q]
      var greater = 0, ties = 0
      for v in row { if v > pos { greater += 1 } else if v == pos { ties += 1 } }
      ties -= 1  // the positive itself
      // Rank under a descending sort; ties with the positive are resolved in the positive's favour
      // for the rank (as a stable sort that keeps gallery order would for q's own index only when it
      // comes first), and counted half for the AUC.
      let rank = Double(greater + 1)
      ranks.append(rank)
      if rank <= 1 { r1 += 1 }
      if rank <= 5 { r5 += 1 }
      if rank <= 10 { r10 += 1 }
      ap += 1 / rank
      let negatives = Double(gallery - 1)
      auc += negatives > 0 ? (negatives - Double(greater) - 0.5 * Double(ties)) / negatives : 1
    }
    let n = Double(queries)
    let sorted = ranks.sorted()
    let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    return RetrievalMetrics(recallAt1: r1 / n, recallAt5: r5 / n, recallAt10: r10 / n, mAP: ap / n,
                            medianRank: median, meanRank: ranks.reduce(0, +) / n, auc: auc / n)
  }

  /// The line TAO's docs show: `R@1=72.4 R@5=91.2 R@10=95.8 mAP=78.3 MedR=1 AUC=0.94`.
  public var line: String {
    func pct(_ v: Double) -> String { String(format: "%.1f", v * 100) }
    let medr = medianRank == medianRank.rounded() ? String(Int(medianRank)) : String(format: "%.1f", medianRank)
    return "R@1=\(pct(recallAt1)) R@5=\(pct(recallAt5)) R@10=\(pct(recallAt10)) mAP=\(pct(mAP)) MedR=\(medr) AUC=\(String(format: "%.4f", auc))"
  }
}
