import Foundation
import Testing
@testable import Spec

/// Every TAO key does what TAO does, is refused by name, or is a documented no-op: never accepted
/// and silently ignored.
@Suite struct KeyPolicies {
  static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

  @Test func everySchemaKeyHasExactlyOnePolicy() {
    let leaves = KeyPolicy.leafPaths()
    let policies = KeyPolicy.table.map(\.path)
    #expect(Set(policies).count == policies.count, "duplicate policies")
    #expect(Set(leaves).subtracting(policies).sorted() == [], "schema keys without a policy")
    #expect(Set(policies).subtracting(leaves).sorted() == [], "policies for keys the schema does not have")
    for p in KeyPolicy.table where p.support != .honoured { #expect(!p.note.isEmpty, "\(p.path) needs its reason") }
  }

  /// An honoured key must be read somewhere outside the spec library: its Swift property (the
  /// camel-cased key) appears in the sources of the actions or libraries.
  @Test func honouredKeysAreReadByTheCode() throws {
    var sources = ""
    let root = Self.repo.appendingPathComponent("Sources")
    let files = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil)!
    for case let url as URL in files where url.pathExtension == "swift" && !url.path.contains("/Sources/Spec/") {
      sources += try String(contentsOf: url, encoding: .utf8)
    }
    for p in KeyPolicy.table where p.support == .honoured {
      let leaf = String(p.path.split(separator: ".").last!)
      let camel = leaf.split(separator: "_").enumerated().map { $0.offset == 0 ? String($0.element) : $0.element.capitalized }.joined()
      let read = sources.range(of: "\\.\(camel)\\b", options: .regularExpression) != nil || sources.contains("\"\(p.path)")
      #expect(read, "\(p.path) is marked honoured but no code reads .\(camel)")
    }
  }

  @Test func readmeHoldsTheTable() throws {
    let readme = try String(contentsOf: Self.repo.appendingPathComponent("README.md"), encoding: .utf8)
    let holds = readme.contains(KeyPolicy.markdownTable())
    #expect(holds, "README's spec-key table is out of date: paste `clipkit spec-keys`")
  }

  @Test func defaultsAreAccepted() throws {
    let spec = try Spec.load(yaml: "")
    for a in ["train", "evaluate", "inference", "export", "gen_trt_engine", "deploy evaluate", "deploy inference"] {
      try spec.refuseUnsupported(action: a)
    }
    // TAO's shipped example spec asks for nothing unsupported either.
    try Spec.load(file: fixture("seed_example.yaml")).refuseUnsupported(action: "train")
  }

  /// Each refused key, set to something other than its default, stops the actions that read it
  /// with one message naming the key.
  @Test func nonDefaultValuesOfRefusedKeysAreRefusedByName() throws {
    let cases: [(String, String, String)] = [
      ("train.triplet_loss_weight=0.5", "train", "train.triplet_loss_weight"),
      ("train.triplet_margin=0.3", "train", "train.triplet_margin"),
      ("train.siglip_loss_mask_mode=attribute_match_ignore", "train", "train.siglip_loss_mask_mode"),
      ("train.distributed_strategy=fsdp", "train", "train.distributed_strategy"),
      ("dataset.train.balance_query_types=true", "train", "dataset.train.balance_query_types"),
      ("dataset.train.include_attribute_metadata=true", "train", "dataset.train.include_attribute_metadata"),
      ("dataset.val.metadata_match_eval=true", "evaluate", "dataset.val.metadata_match_eval"),
      ("evaluate.text_file=/tmp/p.txt", "evaluate", "evaluate.text_file"),
      ("evaluate.pas_ground_truth_mode=scalar_attributes", "evaluate", "evaluate.pas_ground_truth_mode"),
      ("model_name=detector", "export", "model_name"),
    ]
    for (o, action, key) in cases {
      let spec = try Spec.load(yaml: "", overrides: [o])
      expectSpecError(["'\(key)'", "not supported yet"]) { try spec.refuseUnsupported(action: action) }
    }
    // Keys inside list elements are named with their index.
    let listed = try Spec.load(yaml: """
      dataset:
        train:
          datasets:
            - image_dir: /a
            - image_dir: /b
              train_pairs_file: /b/train_pairs.json
      """)
    expectSpecError(["'dataset.train.datasets.1.train_pairs_file'", "/b/train_pairs.json"]) { try listed.refuseUnsupported(action: "train") }
    // Only the actions that read a key refuse it: export does not train.
    try Spec.load(yaml: "", overrides: ["train.triplet_loss_weight=0.5"]).refuseUnsupported(action: "export")
    // `enabled: false` where the default is null asks for nothing either.
    try Spec.load(yaml: "", overrides: ["peft.vision.enabled=false"]).refuseUnsupported(action: "train")
    // An explicit default (written as an integer) is still the default.
    try Spec.load(yaml: "train:\n  triplet_loss_weight: 0\n").refuseUnsupported(action: "train")
  }
}
