import Foundation
import Testing
@testable import Tokenizers

enum Fx {
  static let dir = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.path
  static func path(_ name: String) -> String { dir + "/" + name }
  static let corpus: [String] = {
    let d = FileManager.default.contents(atPath: path("corpus.json"))!
    return try! JSONSerialization.jsonObject(with: d) as! [String]
  }()
  /// One line of space-separated ids per corpus string.
  static func ids(_ name: String) -> [[Int]] {
    let text = try! String(contentsOfFile: path(name), encoding: .utf8)
    var lines = text.components(separatedBy: "\n")
    if lines.last == "" { lines.removeLast() }
    return lines.map { $0.split(separator: " ").compactMap { Int($0) } }
  }
  /// Lines of "ids | mask".
  static func batch(_ name: String) -> (ids: [[Int]], mask: [[Int]]) {
    let text = try! String(contentsOfFile: path(name), encoding: .utf8)
    var ids: [[Int]] = [], mask: [[Int]] = []
    for line in text.split(separator: "\n") {
      let halves = line.components(separatedBy: " | ")
      ids.append(halves[0].split(separator: " ").compactMap { Int($0) })
      mask.append(halves[1].split(separator: " ").compactMap { Int($0) })
    }
    return (ids, mask)
  }
}

/// Compares per-string results; records the first few mismatches with their text.
func compare(_ name: String, got: [[Int]], expected: [[Int]], sourceLocation: SourceLocation = #_sourceLocation) {
  #expect(got.count == expected.count, sourceLocation: sourceLocation)
  var bad = 0
  for i in 0..<min(got.count, expected.count) where got[i] != expected[i] {
    bad += 1
    if bad <= 5 {
      Issue.record("\(name) #\(i) \(Fx.corpus[i].debugDescription)\n  got      \(got[i])\n  expected \(expected[i])", sourceLocation: sourceLocation)
    }
  }
  #expect(bad == 0, "\(name): \(bad) of \(expected.count) strings differ", sourceLocation: sourceLocation)
}

@Suite struct TokenizersLibraryParity {
  @Test(arguments: ["gemma_bpe", "bytelevel_bpe", "bert_wordpiece", "t5_unigram"])
  func fileAsTokenizersRunsIt(kind: String) throws {
    let tok = try Tokenizer(tokenizerJSON: Fx.path("\(kind)/tokenizer.json"))
    let got = try Fx.corpus.map { try tok.encode($0) }
    compare(kind, got: got, expected: Fx.ids("\(kind).ids"))
  }
}

@Suite struct TransformersParity {
  @Test(arguments: [("gemma_bpe", 64), ("siglip2_bpe", 64), ("bytelevel_bpe", 77), ("bert_wordpiece", 77), ("t5_unigram", 64)])
  func autoTokenizerPaddedBatch(kind: String, maxLength: Int) throws {
    let tok = try Tokenizer(directory: Fx.path(kind))
    let enc = try tok(Fx.corpus, maxLength: maxLength, padding: .maxLength, truncation: true)
    let ref = Fx.batch("\(kind).batch")
    compare(kind, got: enc.ids, expected: ref.ids)
    let maskMismatches = zip(enc.attentionMask, ref.mask).filter { $0 != $1 }.count
    #expect(maskMismatches == 0, "\(kind): \(maskMismatches) attention masks differ")
    #expect(tok.modelMaxLength == maxLength)
  }
}

@Suite struct OpenCLIPParity {
  @Test func simpleTokenizerOnTheCorpus() throws {
    let tok = try CLIPBPETokenizer(bpePath: Fx.path("bpe_simple_vocab_16e6.txt.gz"))
    #expect(tok.vocabSize == 49408 && tok.startOfText == 49406 && tok.endOfText == 49407)
    compare("clip_bpe", got: tok(Fx.corpus), expected: Fx.ids("clip_bpe.ids"))
  }

  @Test func canonicalizeTextMatchesOpenCLIP() throws {
    let d = FileManager.default.contents(atPath: Fx.path("canonicalize.json"))!
    let expected = try JSONSerialization.jsonObject(with: d) as! [String]
    var bad = 0
    for (i, text) in Fx.corpus.enumerated() {
      let got = TextCleaning.canonicalize(text)
      if !got.unicodeScalars.elementsEqual(expected[i].unicodeScalars) {
        bad += 1
        if bad <= 3 { Issue.record("#\(i) \(text.debugDescription)\n got \(got.debugDescription)\n exp \(expected[i].debugDescription)") }
      }
    }
    #expect(bad == 0)
  }
}

@Suite struct TokenizerErrorsAndDecoding {
  func write(_ json: String) throws -> String {
    let p = NSTemporaryDirectory() + "tok-\(UUID().uuidString).json"
    try json.write(toFile: p, atomically: true, encoding: .utf8)
    return p
  }

  @Test func malformedFilesNameThePart() throws {
    let unsupported = try write(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "UnicodeScripts"}}"#)
    do { _ = try Tokenizer(tokenizerJSON: unsupported); Issue.record("accepted") } catch {
      #expect(error.localizedDescription.contains("pre_tokenizer") && error.localizedDescription.contains("UnicodeScripts"))
    }
    let badMerge = try write(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"#)
    do { _ = try Tokenizer(tokenizerJSON: badMerge); Issue.record("accepted") } catch {
      #expect(error.localizedDescription.contains("model.merges[0]"))
    }
    let notJSON = try write("{nope")
    do { _ = try Tokenizer(tokenizerJSON: notJSON); Issue.record("accepted") } catch {
      #expect(error.localizedDescription.contains("not valid JSON"))
    }
    do { _ = try Tokenizer(directory: "/nonexistent-dir"); Issue.record("accepted") } catch {
      #expect(error.localizedDescription.contains("no tokenizer.json"))
    }
    let gz = try write("not gzip")
    do { _ = try CLIPBPETokenizer(bpePath: gz); Issue.record("accepted") } catch {
      #expect(error.localizedDescription.contains("gzip"))
    }
  }

  @Test func decodeRoundTrips() throws {
    for kind in ["gemma_bpe", "bytelevel_bpe", "t5_unigram"] {
      let tok = try Tokenizer(directory: Fx.path(kind))
      let text = "a photo of two cats on a red bicycle"
      #expect(tok.decode(try tok.encode(text)) == text, "\(kind)")
    }
    let bert = try Tokenizer(directory: Fx.path("bert_wordpiece"))
    #expect(bert.decode(try bert.encode("A photo of two cats.")) == "a photo of two cats.")
    let clip = try CLIPBPETokenizer(bpePath: Fx.path("bpe_simple_vocab_16e6.txt.gz"))
    #expect(clip.decode(clip.encode("A photo of Two cats!")) == "a photo of two cats !")
  }
}
