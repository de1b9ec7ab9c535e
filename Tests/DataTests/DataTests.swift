import Foundation
import Testing
@testable import Data

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
  }

  @Test func truncatedShardKeepsCompleteSamples() throws {
    let set = WebDataset.index([dataFixtures + "/broken/truncated.tar"])
    #expect(set.brokenShards.count == 1)
    #expect(set.pairs.map(\.caption) == ["five"])
  }
}
