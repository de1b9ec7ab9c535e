import Foundation
import Imaging
import Testing
import Tokenizers
import Torch
@testable import Models

/// open_clip's `CLIP` (tools/fixtures/openclip_fixtures.py): NV-CLIP/CLIPA layout with its BERT
/// tokenizer and preprocessing, and the OpenAI layout on given ids.
@Suite struct OpenCLIPMatchesOpenCLIP {
  @Test func nvclipFeaturesTokensPixelsAndLogits() throws {
    let dir = MFx.model("tiny_nvclip")
    let ref = try Safetensors.read(dir + "/reference.safetensors").dictionary
    let bundle = try ModelRegistry.load(ModelLoadOptions(type: "ViT-L-14-SigLIP-CLIPA-224", pretrainedDir: dir, canonicalize: false))
    #expect(bundle.family == "OpenCLIP" && bundle.contextLength == 16)
    let enc = bundle.encoder as! OpenCLIPAdapter
    try noGrad {
      let img = try enc.model.imageFeatures(ref["pixel_values"]!)
      let (c1, d1) = try cosineAndMaxDiff(img, ref["image_features"]!)
      #expect(d1 < 1e-4 && c1 > 0.99999, "image: max |diff| \(d1), min cos \(c1)")
      let txt = try enc.model.textFeatures(ref["input_ids"]!)
      let (c2, d2) = try cosineAndMaxDiff(txt, ref["text_features"]!)
      #expect(d2 < 1e-4 && c2 > 0.99999, "text: max |diff| \(d2), min cos \(c2)")
      let logits = try (try enc.encodeImages(ref["pixel_values"]!).matmul(try enc.encodeTexts(ref["input_ids"]!, attentionMask: nil).transpose(0, 1))
        * enc.logitScale.exp() + enc.logitBias)
      #expect(try (logits - ref["logits_per_image"]!).abs().amax().item() < 1e-4)
      // 84 px on a 56 px model: the position table resized as TAO's wrapper does.
      let (c3, d3) = try cosineAndMaxDiff(try enc.model.imageFeatures(ref["pixel_values_large"]!), ref["image_features_large"]!)
      #expect(d3 < 1e-4 && c3 > 0.99999, "resized positions: max |diff| \(d3), min cos \(c3)")
    }
    // open_clip's HFTokenizer: whitespace cleaning, BERT ids, every [SEP] replaced by 0.
    let (prompts, images) = MFx.inputs("tiny_nvclip")
    let ids = try bundle.tokenize(prompts).ids.flatMap { $0 }
    #expect(try ref["input_ids"]!.toArray(Int64.self).map(Int.init) == ids)
    // open_clip's eval transform: shortest side bicubic (torchvision rounding), centre crop, OpenAI statistics.
    let decoder = ImageDecoder()
    let pixels = try images.map { try bundle.transform(try decoder.decode(file: MFx.dir + "/images/" + $0)) }.flatMap { $0 }
    let expected = try ref["pixel_values"]!.floats()
    #expect(pixels.count == expected.count)
    #expect(zip(pixels, expected).map { abs($0 - $1) }.max()! < 1e-5)
  }

  /// tiny_openai_clip: learnable positions, ln_pre, class-token pool, causal text, argmax pool,
  /// QuickGELU. tiny_openclip_kwargs: per-tower norm_kwargs eps and act_kwargs tanh, a text
  /// projection with bias, first-token pooling.
  @Test(arguments: ["tiny_openai_clip", "tiny_openclip_kwargs"])
  func layoutsOnGivenIds(_ name: String) throws {
    let dir = MFx.model(name)
    let ref = try Safetensors.read(dir + "/reference.safetensors").dictionary
    let file = try OpenCLIPFamily.readConfig(dir)
    let model = try OpenCLIPModel(file.modelCfg, initialize: .empty)
    try model.load(stateDict: try OpenCLIPFamily.weights(in: dir), assign: true, source: dir)
    model.eval()
    try noGrad {
      let (c1, d1) = try cosineAndMaxDiff(try model.imageFeatures(ref["pixel_values"]!), ref["image_features"]!)
      #expect(d1 < 1e-4 && c1 > 0.99999, "image: max |diff| \(d1), min cos \(c1)")
      let (c2, d2) = try cosineAndMaxDiff(try model.textFeatures(ref["input_ids"]!), ref["text_features"]!)
      #expect(d2 < 1e-4 && c2 > 0.99999, "text: max |diff| \(d2), min cos \(c2)")
    }
  }

  @Test func openCLIPCheckpointsLoadIntoTAOTypes() throws {
    // TAO's NV-CLIP type starts from random weights; an open_clip state dict (DDP-prefixed, as
    // open_clip's training writes) given as the checkpoint replaces them all.
    let dir = MFx.model("tiny_nvclip")
    let weights = try OpenCLIPFamily.weights(in: dir)
    let ckpt = NSTemporaryDirectory() + "oc-\(UUID().uuidString).safetensors"
    try Safetensors.write(weights.map { ("module." + $0.key, $0.value) }.sorted { $0.0 < $1.0 }, to: ckpt)
    let bundle = try ModelRegistry.load(ModelLoadOptions(type: "ViT-L-14-SigLIP-CLIPA-224", pretrainedDir: dir, canonicalize: false, weightsFromCheckpoint: true))
    try ModelRegistry.loadCheckpoint(ckpt, into: bundle)
    let ref = try Safetensors.read(dir + "/reference.safetensors").dictionary
    let enc = bundle.encoder as! OpenCLIPAdapter
    enc.eval()
    let (c, d) = try noGrad { try cosineAndMaxDiff(try enc.model.imageFeatures(ref["pixel_values"]!), ref["image_features"]!) }
    #expect(d < 1e-4 && c > 0.99999)
    // A checkpoint missing a tensor is refused with its name.
    let partial = NSTemporaryDirectory() + "oc-\(UUID().uuidString).safetensors"
    try Safetensors.write(weights.filter { $0.key != "visual.proj" }.map { ($0.key, $0.value) }.sorted { $0.0 < $1.0 }, to: partial)
    do { try ModelRegistry.loadCheckpoint(partial, into: bundle); Issue.record("accepted a partial checkpoint") } catch {
      #expect("\(error.localizedDescription)".contains("visual.proj"))
    }
  }

  @Test func openAIDirectoriesTokeniseWithOpenCLIPsBPE() throws {
    // Without tokenizer.json or hf_tokenizer_name, a directory with open_clip's BPE vocabulary
    // uses the SimpleTokenizer (ids checked against open_clip in the tokenizer tests).
    let dir = NSTemporaryDirectory() + "oc-bpe-\(UUID().uuidString)"
    try FileManager.default.copyItem(atPath: MFx.model("tiny_openai_clip"), toPath: dir)
    let vocab = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("TokenizerTests/Fixtures/bpe_simple_vocab_16e6.txt.gz").path
    do { _ = try ModelRegistry.load(ModelLoadOptions(type: "x", pretrainedDir: dir, canonicalize: false)); Issue.record("no tokenizer accepted") } catch {
      #expect("\(error.localizedDescription)".contains("bpe_simple_vocab_16e6.txt.gz"))
    }
    try FileManager.default.copyItem(atPath: vocab, toPath: dir + "/bpe_simple_vocab_16e6.txt.gz")
    let bundle = try ModelRegistry.load(ModelLoadOptions(type: "x", pretrainedDir: dir, canonicalize: false))
    let ids = try bundle.tokenize(["A photo of a CAT."]).ids[0]
    #expect(ids.count == 12 && ids.first == 49406 && ids.contains(49407) && ids.last == 0)
    #expect(ids == (try CLIPBPETokenizer(bpePath: vocab, contextLength: 12))(["a photo of a cat."])[0])
  }

  @Test func sameGradientsWithAndWithoutRecomputation() throws {
    let dir = MFx.model("tiny_nvclip")
    let ref = try Safetensors.read(dir + "/reference.safetensors").dictionary
    func grads(_ checkpointing: Bool) throws -> [String: [Float]] {
      let bundle = try ModelRegistry.load(ModelLoadOptions(type: "x", pretrainedDir: dir, canonicalize: false))
      let m = bundle.encoder.module
      m.train()
      bundle.encoder.gradientCheckpointing = checkpointing
      let img = try bundle.encoder.encodeImages(ref["pixel_values"]!)
      let txt = try bundle.encoder.encodeTexts(ref["input_ids"]!, attentionMask: nil)
      try (try img.matmul(try txt.transpose(0, 1)).square().sum()).backward()
      var out: [String: [Float]] = [:]
      for (k, p) in m.namedParameters() where k.contains("resblocks.0") || k.hasSuffix("proj") || k.hasSuffix("projection") {
        if let g = p.grad { out[k] = try g.floats() }
      }
      // The fixed sin-cos table never gets a gradient.
      #expect(m.namedParameters().first { $0.0 == "backbone.model.visual.positional_embedding" }?.1.grad == nil)
      return out
    }
    let plain = try grads(false), recomputed = try grads(true)
    #expect(plain.count >= 20 && Set(plain.keys) == Set(recomputed.keys))
    for (k, g) in plain {
      let d = zip(g, recomputed[k]!).map { abs($0 - $1) }.max() ?? 0
      #expect(d < 1e-6, "\(k): \(d)")
    }
  }

  @Test func sinCosTableIsOpenCLIPs() throws {
    // The fixture's frozen table was computed by open_clip; ours is built from the formula.
    let weights = try OpenCLIPFamily.weights(in: MFx.model("tiny_nvclip"))
    let ours = try OpenCLIPVisionTransformer.sinCos2D(width: 64, grid: 4)
    #expect(try (ours - weights["visual.positional_embedding"]!).abs().amax().item() < 1e-6)
  }

  @Test func unsupportedVariantsAreRefusedByName() throws {
    func refused(_ vision: String, _ text: String = "{}", naming: String) throws {
      let json = #"{"embed_dim": 8, "vision_cfg": "# + vision + #", "text_cfg": "# + text + "}"
      do {
        let cfg = try JSONDecoder().decode(OpenCLIPConfig.self, from: Data(json.utf8))
        _ = try OpenCLIPModel(cfg, initialize: .empty)
        Issue.record("accepted \(json)")
      } catch {
        #expect("\(error)".contains(naming), "\(error)")
      }
    }
    try refused(#"{"timm_model_name": "vit_base_patch16_224", "image_size": 224}"#, naming: "timm_model_name")
    try refused(#"{"image_size": 224, "attentional_pool": "parallel"}"#, naming: "attentional_pool")
    try refused(#"{"image_size": 224, "layers": [3, 4, 6, 3]}"#, naming: "ModifiedResNet")
    try refused(#"{"image_size": 224, "norm_kwargs": {"eps": 1e-6, "elementwise_affine": 0}}"#, naming: "elementwise_affine")
    try refused(#"{"image_size": 224, "patch_size": 0}"#, naming: "positive")
    try refused(#"{"image_size": 224}"#, #"{"tokenizer_mode": "clips"}"#, naming: "tokenizer_mode")
    try refused(#"{"image_size": 224}"#, #"{"heads": 0}"#, naming: "positive")
  }
}
