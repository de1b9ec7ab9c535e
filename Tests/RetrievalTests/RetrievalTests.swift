import Foundation
import Testing
@testable import Retrieval

@Suite struct MetricsMatchNumPy {
  @Test func tao_definitions_and_true_auc() throws {
    let url = Bundle.module.url(forResource: "Fixtures/metrics.json", withExtension: nil)!
    let cases = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [[String: Any]]
    for c in cases {
      let n = c["n"] as! Int
      let sim = (c["similarity"] as! [NSNumber]).map(\.floatValue)
      var transposed = [Float](repeating: 0, count: n * n)
      for i in 0..<n { for j in 0..<n { transposed[j * n + i] = sim[i * n + j] } }
      let expected = c["metrics"] as! [String: [String: Double]]
      for (dir, s) in [("i2t", sim), ("t2i", transposed)] {
        let m = RetrievalMetrics.compute(similarity: s, queries: n, gallery: n)
        let e = expected[dir]!
        for (k, v) in [("R@1", m.recallAt1), ("R@5", m.recallAt5), ("R@10", m.recallAt10), ("mAP", m.mAP),
                       ("MedR", m.medianRank), ("MeanR", m.meanRank), ("AUC", m.auc)] {
          #expect(abs(v - e[k]!) < 1e-6, "n=\(n) \(dir) \(k): \(v) vs \(e[k]!)")
        }
      }
    }
  }

  @Test func perfectAndTiedRankings() {
    let identity: [Float] = [1, 0, 0, 0, 1, 0, 0, 0, 1]
    let m = RetrievalMetrics.compute(similarity: identity, queries: 3, gallery: 3)
    #expect(m.recallAt1 == 1 && m.mAP == 1 && m.medianRank == 1 && m.auc == 1)
    let ties = [Float](repeating: 0.5, count: 9)
    let t = RetrievalMetrics.compute(similarity: ties, queries: 3, gallery: 3)
    #expect(t.auc == 0.5)
    #expect(m.line == "R@1=100.0 R@5=100.0 R@10=100.0 mAP=100.0 MedR=1 AUC=1.0000")
  }
}

@Suite struct EmbeddingFiles {
  @Test func roundTripInTAOsLayout() throws {
    let path = NSTemporaryDirectory() + "emb-\(UUID().uuidString).h5"
    let f = EmbeddingFile(kind: .image, embeddings: (0..<12).map { Float($0) / 7 }, dimension: 4,
                          labels: ["a.jpg", "dir/ü.png", "東京.webp"])
    try f.write(to: path)
    let (back, count, type) = try EmbeddingFile.read(path, kind: .image)
    #expect(back == f && count == 3 && type == "image")
    let empty = EmbeddingFile(kind: .text, embeddings: [], dimension: 8, labels: [])
    try empty.write(to: path)
    let (e, n, t) = try EmbeddingFile.read(path, kind: .text)
    #expect(e.labels.isEmpty && n == 0 && t == "text" && e.dimension == 8)
    #expect(throws: EmbeddingFileError.self) { try EmbeddingFile.read(path + ".missing", kind: .text) }
  }
}
