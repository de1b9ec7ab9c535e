import Foundation
import Testing
@testable import Data
import Paths

let dataFixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.path

@Suite struct WebDatasetShards {
  @Test func indexesSamplesByKey() throws {
    let shards = try WebDataset.shards(rootDir: dataFixtures + "/shards", listFile: nil)
    #expect(shards.map { ($0 as NSString).lastPathComponent } == ["shard-000000.tar", "shard-000001.tar"])
    let set = WebDataset.index(shards)
    #expect(set.pairs.map(\.caption) == ["a red image", "a blue image ü", "a long name", "five", "seven"])
    #expect(set.skippedCaptions == 3)  // empty caption, json-only sample, image without caption
    #expect(set.brokenShards.isEmpty)
    // Image bytes come back from the shard by offset.
    let first = try set.pairs[0].image.bytes()
    #expect(first.prefix(4).elementsEqual([0x89, 0x50, 0x4E, 0x47]))
    if case .member(_, _, _, let name) = set.pairs[2].image { #expect(name == String(repeating: "x", count: 120) + ".png") }
  }

  @Test func shardListsAndBraceRanges() throws {
    #expect(try WebDataset.expandBraces("s-{008..011}.tar") == ["s-008.tar", "s-009.tar", "s-010.tar", "s-011.tar"])
    #expect(try WebDataset.expandBraces("{a,b}-{1..2}") == ["a-1", "a-2", "b-1", "b-2"])
    let listed = try WebDataset.shards(rootDir: nil, listFile: dataFixtures + "/list.txt")
    #expect(listed.count == 2 && listed.allSatisfy { FileManager.default.fileExists(atPath: $0) })
    #expect(throws: DataError.self) { try WebDataset.expandBraces("s-{9..1}.tar") }
    // Ends whose span overflows are a bad range, not an overflow.
    let wide = #expect(throws: DataError.self) { try WebDataset.expandBraces("s-{-9223372036854775808..9223372036854775807}.tar") }
    #expect(wide?.localizedDescription.hasPrefix("bad brace range {-9223372036854775808..9223372036854775807}") == true)
    #expect(try WebDataset.expandBraces("s-{4294967296..4294967297}") == ["s-4294967296", "s-4294967297"])
  }

  @Test func truncatedShardKeepsCompleteSamples() throws {
    let set = WebDataset.index([dataFixtures + "/broken/truncated.tar"])
    #expect(set.brokenShards.count == 1)
    #expect(set.pairs.map(\.caption) == ["five"])
    #expect(set.damage[dataFixtures + "/broken/truncated.tar"]?.hasPrefix("truncated") == true)
  }

  /// A ustar member: 512-byte header (name, 12-byte size field as given) and its data padded to 512.
  func member(_ name: String, size field: [UInt8], _ data: [UInt8]) -> [UInt8] {
    var h = [UInt8](repeating: 0, count: 512)
    h.replaceSubrange(0..<name.utf8.count, with: name.utf8)
    h.replaceSubrange(124..<136, with: field + [UInt8](repeating: 0, count: 12 - field.count))
    h[156] = UInt8(ascii: "0")
    h.replaceSubrange(257..<263, with: Array("ustar\0".utf8))
    return h + data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
  }
  func octal(_ n: Int) -> [UInt8] { Array(String(format: "%011o", n).utf8) + [0] }

  /// A caption or long name claiming gigabytes (a streamed shard has no file size to bound it) is
  /// not read into memory: the caption's sample counts as one without a caption, a long name ends
  /// the shard as corrupt; the samples around them are kept.
  @Test func hugeTextMembersAreNotReadWhole() throws {
    let dir = NSTemporaryDirectory() + "clipkit-tar-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]
    let tb = Array("77777777777".utf8) + [0]  // 8 GiB - 1, the largest octal size
    let first = member("a.jpg", size: octal(jpeg.count), jpeg) + member("a.txt", size: octal(5), Array("first".utf8))
    var longName = member("././@LongLink", size: tb, [])
    longName[156] = UInt8(ascii: "L")
    // (read from a file, the file's size already shows both as truncated)
    for (label, bad, streamed) in [("caption", member("b.jpg", size: octal(jpeg.count), jpeg) + member("b.txt", size: tb, []), "truncated"),
                                   ("longname", longName, "corrupt (the long name at byte 2048 claims 8589934591 bytes)")] {
      let path = "\(dir)/\(label).tar"
      try Data(first + bad).write(to: URL(fileURLWithPath: path))
      for (set, want) in [(WebDataset.indexStreamed(path), streamed), (WebDataset.index([path]), "truncated")] {
        #expect(set.pairs.map(\.caption) == ["first"], "\(label)")
        #expect(set.damage[path]?.hasPrefix(want) == true, "\(label): \(set.damage)")
      }
    }
  }

  /// A header whose size field has a sign, a non-octal digit or a negative (or oversized) base-256
  /// value ends the shard there, as truncation does: the samples before it are kept and the shard
  /// is reported with the reason.
  @Test func corruptSizeFieldsEndTheShardWithAReason() throws {
    let dir = NSTemporaryDirectory() + "clipkit-tar-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]
    let good = member("a.jpg", size: octal(jpeg.count), jpeg) + member("a.txt", size: octal(5), Array("first".utf8))
    let after = member("c.jpg", size: octal(jpeg.count), jpeg) + member("c.txt", size: octal(5), Array("third".utf8))
    let fields: [(String, [UInt8])] = [
      ("minus", Array("-0000001000".utf8) + [0]), ("minus-large", Array("-1024".utf8)),
      ("nonoctal", Array("0000000009x".utf8) + [0]), ("plus", Array("+0000000007".utf8) + [0]),
      ("empty", [0x20, 0x20, 0]),
      ("base256-negative", [0xFF] + [UInt8](repeating: 0xFF, count: 11)),
      ("base256-huge", [0x80] + [UInt8](repeating: 0xFF, count: 11)),
    ]
    for (label, field) in fields {
      let path = "\(dir)/\(label).tar"
      let bad = member("b.jpg", size: field, jpeg) + member("b.txt", size: octal(6), Array("second".utf8))
      try Data(good + bad + after + [UInt8](repeating: 0, count: 1024)).write(to: URL(fileURLWithPath: path))
      let set = WebDataset.index([path])
      #expect(set.pairs.map(\.caption) == ["first"], "\(label)")
      #expect(set.brokenShards == [path], "\(label)")
      #expect(set.damage[path]?.contains("the tar header at byte 2048 has an invalid size field") == true, "\(label): \(set.damage)")
    }
    // GNU's positive base-256 size is a size like any other.
    let path = dir + "/base256.tar"
    let b256 = member("b.jpg", size: [0x80] + [UInt8](repeating: 0, count: 10) + [UInt8(jpeg.count)], jpeg)
      + member("b.txt", size: octal(6), Array("second".utf8))
    try Data(good + b256 + after + [UInt8](repeating: 0, count: 1024)).write(to: URL(fileURLWithPath: path))
    let set = WebDataset.index([path])
    #expect(set.pairs.map(\.caption) == ["first", "second", "third"] && set.brokenShards.isEmpty)
    #expect(try set.pairs[1].image.bytes() == jpeg)
    // A caption whose size runs far past the end of the file is truncation, not a huge read.
    let cut = dir + "/cut.tar"
    try Data(good + member("b.jpg", size: octal(jpeg.count), jpeg) + member("b.txt", size: octal(0o77777777777), [])).write(to: URL(fileURLWithPath: cut))
    let c = WebDataset.index([cut])
    #expect(c.pairs.map(\.caption) == ["first"] && c.brokenShards == [cut])
    #expect(c.damage[cut]?.hasPrefix("truncated") == true)
    // A base-256 size just under Int.max: past the file, so no seek to an offset beyond off_t.
    let far = dir + "/far.tar"
    let huge: [UInt8] = [0x80, 0, 0, 0] + [0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00]
    try Data(good + member("z.jpg", size: huge, jpeg) + after + [UInt8](repeating: 0, count: 1024)).write(to: URL(fileURLWithPath: far))
    let f = WebDataset.index([far])
    #expect(f.pairs.map(\.caption) == ["first"] && f.brokenShards == [far])
    #expect(f.damage[far]?.contains("claims 9223372036854775552 bytes") == true, "\(f.damage)")
  }
}

/// A small deterministic generator for the order tests.
struct TestRandom: RandomNumberGenerator {
  var state: UInt64
  mutating func next() -> UInt64 {
    state = state &* 6364136223846793005 &+ 1442695040888963407
    return state ^ (state >> 29)
  }
}

@Suite struct EpochOrder {
  func pairs(shards: Int, each: Int) -> [Pair] {
    (0..<shards).flatMap { s in
      (0..<each).map { i in Pair(image: .member(shard: "/d/shard-\(s).tar", offset: UInt64(i * 1024), size: 10, name: "\(i).jpg"), caption: "c") }
    }
  }

  @Test func shardsInShuffledOrderThroughABuffer() {
    let p = pairs(shards: 6, each: 50)
    var a = TestRandom(state: 1), b = TestRandom(state: 1), c = TestRandom(state: 2)
    let o1 = WebDataset.epochOrder(p, rng: &a, buffer: 40, initial: 10)
    #expect(o1.sorted() == Array(0..<300))  // every sample once
    #expect(o1 == WebDataset.epochOrder(p, rng: &b, buffer: 40, initial: 10))  // same seed, same order
    let o2 = WebDataset.epochOrder(p, rng: &c, buffer: 40, initial: 10)
    #expect(o1 != o2)
    // Shuffled, but local: the first 20 samples drawn come from the first shard or two read.
    #expect(o1 != o1.sorted())
    #expect(Set(o1.prefix(20).map { $0 / 50 }).count <= 2)
    // The shard order itself differs between seeds (first shard read).
    let firstShards = (1...8).map { seed -> Int in
      var r = TestRandom(state: UInt64(seed))
      return WebDataset.epochOrder(p, rng: &r, buffer: 1, initial: 1)[0] / 50
    }
    #expect(Set(firstShards).count > 1)
  }
}

extension EpochOrder {
  /// Ranks take equal contiguous runs of the shard stream: disjoint, each from about 1/W of the
  /// shards, the same count everywhere, and a single shard still feeds every rank.
  @Test(arguments: [(6, 50, 4), (1, 9, 2), (3, 7, 5)]) func ranksSplitTheShardStream(shards: Int, each: Int, world: Int) {
    let p = pairs(shards: shards, each: each)
    let orders = (0..<world).map { rank -> [Int] in
      var r = TestRandom(state: 9)
      return WebDataset.epochOrder(p, rng: &r, rank: rank, worldSize: world, buffer: 40, initial: 10)
    }
    let per = p.count / world
    #expect(orders.allSatisfy { $0.count == per })
    #expect(Set(orders.joined()).count == per * world)
    for o in orders { #expect(Set(o.map { $0 / each }).count <= (shards + world - 1) / world + 1) }
    var one = TestRandom(state: 9)
    let single = WebDataset.epochOrder(p, rng: &one, buffer: 40, initial: 10)
    #expect(single.count == p.count)
    // The runs, concatenated in rank order, hold the single process's stream (before its buffer).
    var s = TestRandom(state: 9)
    let stream = WebDataset.epochOrder(p, rng: &s, buffer: 1, initial: 1)
    for (rank, o) in orders.enumerated() { #expect(Set(o) == Set(stream[(rank * per)..<((rank + 1) * per)])) }
  }
}

@Suite struct Prefetching {
  @Test func batchesComeInOrderWhateverTheWorkers() {
    let batches = (0..<7).map { b in (0..<5).map { b * 5 + $0 } }
    let make: @Sendable (Int) -> Int? = { id in
      usleep(UInt32((id * 7919) % 5) * 200)  // uneven work, so workers finish out of order
      return id % 11 == 3 ? nil : id * id
    }
    let expected = batches.map { $0.map { $0 % 11 == 3 ? nil : $0 * $0 } }
    for workers in [0, 1, 4] {
      let loader = BatchPrefetcher<Int>(batches: batches, workers: workers, depth: 2, make: make)
      var got: [[Int?]] = []
      while let b = loader.next() { got.append(b) }
      #expect(got == expected, "workers \(workers)")
    }
    // Starting mid-epoch skips the first batches; stopping early ends the workers.
    let resumed = BatchPrefetcher<Int>(batches: batches, start: 5, workers: 3, make: make)
    #expect(resumed.next() == expected[5])
    resumed.stop()
  }
}

@Suite struct PathParts {
  /// Foundation's deletingLastPathComponent traps on "0" or "a//" (found by fuzzing tar names).
  @Test func parentPathAsNSStringGivesItWithoutTrapping() {
    let cases: [(String, String)] = [("a/b", "a"), ("/a", "/"), ("a", ""), ("0", ""), ("a/b/", "a"), ("a//", ""),
                                     ("é/", ""), ("/", "/"), ("//x", "/"), ("x//y", "x"), ("", ""), ("/a/b.tar", "/a")]
    for (path, parent) in cases { #expect(path.parentPath == parent, "\(path.debugDescription)") }
  }
}
