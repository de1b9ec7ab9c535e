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
        let m = try RetrievalMetrics.compute(similarity: s, queries: n, gallery: n)
        let e = expected[dir]!
        for (k, v) in [("R@1", m.recallAt1), ("R@5", m.recallAt5), ("R@10", m.recallAt10), ("mAP", m.mAP),
                       ("MedR", m.medianRank), ("MeanR", m.meanRank), ("AUC", m.auc)] {
          #expect(abs(v - e[k]!) < 1e-6, "n=\(n) \(dir) \(k): \(v) vs \(e[k]!)")
        }
      }
    }
  }

  @Test func perfectRanking() throws {
    let identity: [Float] = [1, 0, 0, 0, 1, 0, 0, 0, 1]
    let m = try RetrievalMetrics.compute(similarity: identity, queries: 3, gallery: 3)
    #expect(m.recallAt1 == 1 && m.mAP == 1 && m.medianRank == 1 && m.auc == 1)
    #expect(m.line == "R@1=100.0 R@5=100.0 R@10=100.0 mAP=100.0 MedR=1 AUC=1.0000")
  }

  /// A collapsed model (every input mapped to the same vector) scores chance, not 100 %.
  @Test func collapsedModelScoresChance() throws {
    for n in [4, 12] {
      let m = try RetrievalMetrics.compute(similarity: [Float](repeating: 0.5, count: n * n), queries: n, gallery: n)
      let harmonic = (1...n).reduce(0.0) { $0 + 1 / Double($1) }
      #expect(abs(m.recallAt1 - 1 / Double(n)) < 1e-12)
      #expect(abs(m.recallAt5 - min(5, Double(n)) / Double(n)) < 1e-12)
      #expect(abs(m.recallAt10 - min(10, Double(n)) / Double(n)) < 1e-12)
      #expect(abs(m.mAP - harmonic / Double(n)) < 1e-12)
      #expect(m.meanRank == Double(n + 1) / 2 && m.medianRank == Double(n + 1) / 2 && m.auc == 0.5)
    }
    let four = try RetrievalMetrics.compute(similarity: [Float](repeating: 1, count: 16), queries: 4, gallery: 4)
    #expect(four.line == "R@1=25.0 R@5=100.0 R@10=100.0 mAP=52.1 MedR=2.5 AUC=0.5000")
  }

  /// Crafted ties: every metric is its expectation over a random order of the tied items.
  @Test func tiesTakeTheirExpectedValue() throws {
    // 3 queries x 12 gallery items. Query 0: 2 above, 3 tied (ranks 3...6). Query 1: none above,
    // 1 tied (ranks 1, 2). Query 2: 4 above, 7 tied (ranks 5...12).
    var s = [Float](repeating: 0, count: 36)
    func set(_ q: Int, _ pos: Float, above: [Int], tied: [Int]) {
      s[q * 12 + q] = pos
      for j in above { s[q * 12 + j] = pos + 0.25 }
      for j in tied { s[q * 12 + j] = pos }
    }
    set(0, 0.5, above: [3, 4], tied: [5, 6, 7])
    set(1, 0.5, above: [], tied: [0])
    set(2, 0.25, above: [0, 1, 3, 4], tied: [5, 6, 7, 8, 9, 10, 11])
    let m = try RetrievalMetrics.compute(similarity: s, queries: 3, gallery: 12)
    func h(_ a: Int, _ b: Int) -> Double { (a...b).reduce(0.0) { $0 + 1 / Double($1) } / Double(b - a + 1) }
    #expect(abs(m.recallAt1 - (0 + 0.5 + 0) / 3) < 1e-12)
    #expect(abs(m.recallAt5 - (3.0 / 4 + 1 + 1.0 / 8) / 3) < 1e-12)
    #expect(abs(m.recallAt10 - (1 + 1 + 6.0 / 8) / 3) < 1e-12)
    #expect(abs(m.mAP - (h(3, 6) + h(1, 2) + h(5, 12)) / 3) < 1e-12)
    #expect(abs(m.meanRank - (4.5 + 1.5 + 8.5) / 3) < 1e-12)
    #expect(m.medianRank == 4.5)
    #expect(abs(m.auc - ((11 - 2 - 1.5) / 11 + (11 - 0.5) / 11 + (11 - 4 - 3.5) / 11) / 3) < 1e-12)
  }

  @Test func emptyOrMisshapenInputIsAnError() {
    #expect(throws: MetricsError.noQueries) { try RetrievalMetrics.compute(similarity: [], queries: 0, gallery: 0) }
    #expect(throws: MetricsError.self) { try RetrievalMetrics.compute(similarity: [1, 2, 3], queries: 2, gallery: 2) }
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
    // A file of the other kind lacks the labels dataset: the failed read closes what it opened.
    #expect(throws: EmbeddingFileError.self) { try EmbeddingFile.read(path, kind: .image) }
    #expect(EmbeddingFile.openHDF5Objects == 0)
  }

  /// HDF5 is not thread-safe in Debian's build; concurrent writers and readers must not corrupt it
  /// (its symptom: "HDF5: infinite loop closing library" at exit) and must leave nothing open.
  @Test func concurrentUseLeavesNothingOpen() async throws {
    let dir = NSTemporaryDirectory() + "emb-par-\(UUID().uuidString)"
    try await withThrowingTaskGroup(of: Void.self) { group in
      for t in 0..<8 {
        group.addTask {
          let f = EmbeddingFile(kind: .text, embeddings: (0..<64).map { Float($0 * t) }, dimension: 16,
                                labels: ["a", "b", "c", "d"])
          let path = "\(dir)/\(t).h5"
          for _ in 0..<5 {
            try f.write(to: path)
            #expect(try EmbeddingFile.read(path, kind: .text).file == f)
          }
        }
      }
      try await group.waitForAll()
    }
    #expect(EmbeddingFile.openHDF5Objects == 0)
    try? FileManager.default.removeItem(atPath: dir)
  }
}
