import Foundation
import Testing
import Torch
@testable import Models

/// RADIO-CLIP against NVlabs/RADIO's own code (tools/fixtures/radio_fixtures.py): three tiny hub
/// checkpoints (A: siglip2-g adaptor, MLP v2, LayerScale, fp16 EMA; B: clip adaptor, MLP v1, final
/// norm, bf16; C: siglip2 adaptor with spectral reparametrisation folded), square and non-square
/// inputs whose grid differs from the CPE grid, and text through the teachers' towers.
@Suite(.serialized) struct RADIOMatchesRADIO {
  static let root = MFx.dir + "/radio"

  /// The fixture's Hugging Face cache, with open_clip's CLIP vocabulary beside the DFN weights (the
  /// open_clip package carries it; the snapshot does not).
  static let hfCache: String = {
    let dir = NSTemporaryDirectory() + "clipkit-radio-hf-\(UUID().uuidString)"
    try! FileManager.default.copyItem(atPath: root + "/hf_cache", toPath: dir)
    let dfn = dir + "/hub/models--apple--DFN5B-CLIP-ViT-H-14-378/snapshots"
    let snap = try! FileManager.default.contentsOfDirectory(atPath: dfn)[0]
    let vocab = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("TokenizerTests/Fixtures/bpe_simple_vocab_16e6.txt.gz").path
    try! FileManager.default.copyItem(atPath: vocab, toPath: dfn + "/" + snap + "/bpe_simple_vocab_16e6.txt.gz")
    return dir + "/hub"
  }()

  func load(_ type: String, adaptor: String, weightsFromCheckpoint: Bool = false) throws -> CLIPBundle {
    setenv("HF_HUB_CACHE", Self.hfCache, 1)
    return try ModelRegistry.load(ModelLoadOptions(type: type, pretrainedDir: Self.root + "/torch_home/hub/checkpoints", adaptorName: adaptor,
                                                   weightsFromCheckpoint: weightsFromCheckpoint))
  }

  func reference(_ v: String) throws -> [String: Tensor] { try Safetensors.read(Self.root + "/reference_\(v).safetensors").dictionary }
  func prompts(_ v: String) throws -> [String] {
    let o = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: Self.root + "/reference_\(v).json")!) as! [String: Any]
    return o["prompts"] as! [String]
  }

  func expectClose(_ a: Tensor, _ b: Tensor, _ what: String, tolerance: Double = 1e-4) throws {
    let (cos, diff) = try cosineAndMaxDiff(try a.to(.float32), try b.to(.float32))
    let scale = try b.abs().amax().item()
    #expect(diff <= tolerance * max(scale, 1) && cos >= 0.9999, "\(what): max |diff| \(diff) (scale \(scale)), min cos \(cos)")
  }

  @Test(arguments: [("A", "c-radio_v3-h", "siglip"), ("B", "c-radio_v3-l", "clip"), ("C", "c-radio_v3-b", "siglip")])
  func embeddingsMatch(variant: String, type: String, adaptor: String) throws {
    let bundle = try load(type, adaptor: adaptor)
    let radio = (bundle.encoder as! RADIOAdapter).radio
    let ref = try reference(variant), inputs = try Safetensors.read(Self.root + "/inputs.safetensors").dictionary
    try noGrad {
      for name in ["sq48", "rect32x64", "grid128"] {
        let x = inputs[name]!
        let tokens = try radio.vit(x)
        try expectClose(try tokens.narrow(dim: 1, start: 0, length: ref["\(name).all_summary"]!.size(1)), ref["\(name).all_summary"]!,
                        "\(variant) \(name) class tokens")
        try expectClose(try radio.imageFeatures(x), ref["\(name).summary"]!, "\(variant) \(name) adaptor summary")
        try expectClose(try bundle.encoder.encodeImages(x), ref["\(name).embedding"]!, "\(variant) \(name) embedding")
      }
      // TAO's transformers (4.57) tokenises with the class tokenizer_config.json names; for a
      // siglip2 text model transformers 5 would force its lower-casing Siglip2Tokenizer instead
      // (C's `text.*`), so C is compared with the file's GemmaTokenizer (`text_gemma.*`).
      let text = variant == "C" ? "text_gemma" : "text"
      let enc = try bundle.tokenize(try prompts(variant))
      let ids = try Tensor(enc.ids.flatMap { $0.map(Int64.init) }, shape: [enc.ids.count, enc.ids[0].count])
      #expect(try ids.toArray(Int64.self) == ref["\(text).input_ids"]!.toArray(Int64.self), "\(variant) token ids")
      let mask = try Tensor(enc.attentionMask.flatMap { $0.map(Int64.init) }, shape: [enc.ids.count, enc.ids[0].count])
      try expectClose(try bundle.encoder.encodeTexts(ids, attentionMask: mask), ref["\(text).embedding"]!, "\(variant) text embedding")
      if variant != "B" {  // and without the mask (what TAO's ONNX graph computes), where recorded
        if let noMask = ref["\(text).embedding_no_mask"] { try expectClose(try bundle.encoder.encodeTexts(ids, attentionMask: nil).detach(), noMask, "\(variant) no mask") }
      }
    }
    #expect(radio.summaryIdxs.shape == [variant == "B" ? 4 : variant == "A" ? 3 : 2])
  }

  /// TAO's training path: the ViT in train mode crops a random window of the position grid per
  /// sample and drops whole encodings, drawing from the default generator in RADIO's order.
  @Test func trainModeReplaysRADIOsDraws() throws {
    let bundle = try load("c-radio_v3-h", adaptor: "siglip")
    let radio = (bundle.encoder as! RADIOAdapter).radio
    let ref = try reference("A"), inputs = try Safetensors.read(Self.root + "/inputs.safetensors").dictionary
    radio.vit.train()
    try noGrad {
      for (key, input) in [("train", "sq48"), ("train_grid128", "grid128")] {
        try Torch.manualSeed(7)
        try expectClose(try bundle.encoder.encodeImages(inputs[input]!), ref["\(key).embedding"]!, key)
      }
    }
  }

  /// Gradient checkpointing recomputes the blocks (TAO's flag is a silent no-op for RADIO) and
  /// gives the same gradients, stochastic depth included: the recomputation replays the forward's
  /// random draws.
  @Test func checkpointingGivesTheSameGradients() throws {
    let bundle = try load("c-radio_v3-h", adaptor: "siglip")
    let radio = (bundle.encoder as! RADIOAdapter).radio
    for b in radio.vit.blocks { b.dropPath = 0.4 }
    bundle.encoder.train(frozen: [])
    let x = try Safetensors.read(Self.root + "/inputs.safetensors").dictionary["sq48"]!
    func grads(_ checkpointing: Bool) throws -> [[Float]] {
      bundle.encoder.gradientCheckpointing = checkpointing
      for (_, p) in bundle.encoder.module.namedParameters() { try p.zeroGrad() }
      try Torch.manualSeed(11)
      try (bundle.encoder.encodeImages(x) * 3).sum().backward()
      return try radio.vit.namedParameters().map { try $0.1.grad?.toArray(Float.self) ?? [] }
    }
    let plain = try grads(false), recomputed = try grads(true)
    #expect(plain.contains { !$0.isEmpty } && plain == recomputed)
    #expect(try grads(false) == plain)  // and the draws matter: the seed fixes them
  }

  /// A TAO 7.0.1 checkpoint (the adaptor repeated under `adaptor.*`) loads, gives TAO's outputs,
  /// and ClipKit writes the same layout back.
  @Test func taoCheckpointLoads() throws {
    let bundle = try load("c-radio_v3-h", adaptor: "siglip", weightsFromCheckpoint: true)
    try ModelRegistry.loadCheckpoint(Self.root + "/tao_radio_siglip.pth", into: bundle)
    let ref = try reference("A"), inputs = try Safetensors.read(Self.root + "/inputs.safetensors").dictionary
    try noGrad {
      try expectClose(try bundle.encoder.encodeImages(inputs["sq48"]!), ref["tao.sq48.embedding"]!, "TAO checkpoint image embedding")
      let enc = try bundle.tokenize(try prompts("A"))
      let ids = try Tensor(enc.ids.flatMap { $0.map(Int64.init) }, shape: [enc.ids.count, enc.ids[0].count])
      let mask = try Tensor(enc.attentionMask.flatMap { $0.map(Int64.init) }, shape: [enc.ids.count, enc.ids[0].count])
      try expectClose(try bundle.encoder.encodeTexts(ids, attentionMask: mask), ref["tao.text.embedding"]!, "TAO checkpoint text embedding")
    }
    // The newer TAO layout (no `adaptor.*` copy) gives the same model; a copy that disagrees in
    // shape with its original is an error naming both keys.
    let tensors = try PyTorchCheckpoint.read(Self.root + "/tao_radio_siglip.pth").tensors
    let newer = NSTemporaryDirectory() + "radio-newer-\(UUID().uuidString).safetensors"
    try Safetensors.write(tensors.filter { !$0.key.hasPrefix("model.adaptor.") }.sorted { $0.key < $1.key }, to: newer)
    let again = try load("c-radio_v3-h", adaptor: "siglip", weightsFromCheckpoint: true)
    try ModelRegistry.loadCheckpoint(newer, into: again)
    try noGrad {
      try expectClose(try again.encoder.encodeImages(inputs["sq48"]!), ref["tao.sq48.embedding"]!, "newer TAO layout image embedding")
    }
    var bad = tensors
    bad["model.adaptor.head_mlp.fc1.weight"] = try Tensor.zeros([3, 3])
    let badPath = NSTemporaryDirectory() + "radio-bad-\(UUID().uuidString).safetensors"
    try Safetensors.write(bad.sorted { $0.key < $1.key }, to: badPath)
    do { try ModelRegistry.loadCheckpoint(badPath, into: again); Issue.record("mismatched copy accepted") } catch {
      #expect("\(error.localizedDescription)".contains("adaptor.head_mlp.fc1.weight"), "\(error.localizedDescription)")
    }
    let written = Set(bundle.encoder.checkpointStateDict().map(\.0))
    let tao = Set(try PyTorchCheckpoint.read(Self.root + "/tao_radio_siglip.pth").tensors.keys.map { String($0.dropFirst("model.".count)) })
    #expect(written == tao, "keys only ClipKit writes: \(written.subtracting(tao).sorted().prefix(5)); only TAO: \(tao.subtracting(written).sorted().prefix(5))")
  }

  @Test func unknownAdaptorAndMissingFilesAreNamed() throws {
    do { _ = try load("c-radio_v3-h", adaptor: "dino"); Issue.record("unknown teacher accepted") } catch {
      #expect("\(error.localizedDescription)".contains("no teacher named 'dino'"), "\(error.localizedDescription)")
    }
    do { _ = try load("c-radio_v3-g", adaptor: "siglip"); Issue.record("missing checkpoint accepted") } catch {
      #expect("\(error.localizedDescription)".contains("c-radio_v3-g_half.pth.tar"), "\(error.localizedDescription)")
    }
  }
}
