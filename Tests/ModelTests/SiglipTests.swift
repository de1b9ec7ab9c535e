import Foundation
import Imaging
import Testing
import Tokenizers
import Torch
@testable import Models

enum MFx {
  static let dir = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.path
  static func model(_ name: String) -> String { dir + "/" + name }
  static func inputs(_ name: String) -> (prompts: [String], images: [String]) {
    let o = try! JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: model(name) + "/inputs.json")!) as! [String: [String]]
    return (o["prompts"]!, o["images"]!)
  }
}

func cosineAndMaxDiff(_ a: Tensor, _ b: Tensor) throws -> (minCos: Double, maxAbs: Double) {
  let cos = try (a * b).sum(dims: [-1]) / (try a.norm(dims: [-1]) * b.norm(dims: [-1]))
  let minCos = try cos.amin().item()
  let maxAbs = try (a - b).abs().amax().item()
  return (minCos, maxAbs)
}

@Suite struct SiglipMatchesTransformers {
  let name = "tiny_siglip"

  @Test func featuresFromIdenticalInputs() throws {
    let model = try SiglipModel.fromPretrained(MFx.model(name))
    let ref = try Safetensors.read(MFx.model(name) + "/reference.safetensors").dictionary
    try noGrad {
      let img = try model.imageFeatures(ref["pixel_values"]!)
      let (c1, d1) = try cosineAndMaxDiff(img, ref["image_features"]!)
      #expect(d1 < 1e-4 && c1 > 0.99999, "image: max |diff| \(d1), min cos \(c1)")
      let txt = try model.textFeatures(ref["input_ids"]!)
      let (c2, d2) = try cosineAndMaxDiff(txt, ref["text_features"]!)
      #expect(d2 < 1e-4 && c2 > 0.99999, "text: max |diff| \(d2), min cos \(c2)")
      let masked = try model.textFeatures(ref["input_ids"]!, attentionMask: ref["attention_mask"]!)
      let (c3, d3) = try cosineAndMaxDiff(masked, ref["text_features_masked"]!)
      #expect(d3 < 1e-4 && c3 > 0.99999, "masked text: max |diff| \(d3), min cos \(c3)")
      let large = try model.imageFeatures(ref["pixel_values_large"]!)
      let (c4, d4) = try cosineAndMaxDiff(large, ref["image_features_large"]!)
      #expect(d4 < 1e-4 && c4 > 0.99999, "interpolated positions: max |diff| \(d4), min cos \(c4)")
    }
  }

  @Test func preprocessingFromFilesMatches() throws {
    let dir = MFx.model(name)
    let ref = try Safetensors.read(dir + "/reference.safetensors").dictionary
    let (prompts, images) = MFx.inputs(name)
    let tok = try Tokenizer(directory: dir)
    let enc = try tok(prompts, maxLength: 16)
    #expect(try ref["input_ids"]!.toArray(Int64.self).map(Int.init) == enc.ids.flatMap { $0 })
    let proc = try ImageProcessorConfig.load(dir, defaultSize: 224)
    let decoder = ImageDecoder()
    let pixels = try images.map { try proc.transform(try decoder.decode(file: MFx.dir + "/images/" + $0)) }.flatMap { $0 }
    let expected = try ref["pixel_values"]!.floats()
    #expect(pixels.count == expected.count)
    #expect(zip(pixels, expected).map { abs($0 - $1) }.max()! < 1e-6)
  }
}

@Suite struct TAOCheckpoints {
  @Test func pthCheckpointLoadsIntoTheAdapter() throws {
    let bundle = try ModelRegistry.load(ModelLoadOptions(type: "x", pretrainedDir: MFx.model("tiny_siglip"), canonicalize: false))
    try ModelRegistry.loadCheckpoint(MFx.dir + "/tiny_siglip_tao.pth", into: bundle)
    #expect(try bundle.encoder.logitScale.item() == 2.5)
    #expect(try bundle.encoder.logitBias.item() == -7.0)
    let ref = try Safetensors.read(MFx.model("tiny_siglip") + "/reference.safetensors").dictionary
    let expected = try Safetensors.read(MFx.dir + "/tiny_siglip_tao_reference.safetensors").dictionary
    try noGrad {
      let img = try bundle.encoder.encodeImages(ref["pixel_values"]!)
      let (c, d) = try cosineAndMaxDiff(img, try expected["image_features"]!.l2Normalized())
      #expect(d < 1e-4 && c > 0.99999, "image after checkpoint: \(d) \(c)")
      let txt = try bundle.encoder.encodeTexts(ref["input_ids"]!, attentionMask: nil)
      let (c2, d2) = try cosineAndMaxDiff(txt, try expected["text_features"]!.l2Normalized())
      #expect(d2 < 1e-4 && c2 > 0.99999, "text after checkpoint: \(d2) \(c2)")
    }
  }

  @Test func wrongCheckpointsAreRefusedWithTheKeys() throws {
    let bundle = try ModelRegistry.load(ModelLoadOptions(type: "x", pretrainedDir: MFx.model("tiny_siglip"), canonicalize: false))
    do {
      try ModelRegistry.loadCheckpoint(MFx.model("tiny_siglip") + "/reference.safetensors", into: bundle)
      Issue.record("accepted a file that is not a checkpoint of this model")
    } catch {
      #expect(error.localizedDescription.contains("missing keys") && error.localizedDescription.contains("unexpected keys"))
    }
  }
}

@Suite struct NaFlexMatchesTransformers {
  let name = "tiny_siglip2_naflex"

  @Test func featuresAndPreprocessing() throws {
    let dir = MFx.model(name)
    let model = try SiglipModel.fromPretrained(dir)
    #expect(model.isNaFlex)
    let ref = try Safetensors.read(dir + "/reference.safetensors").dictionary
    let shapesFlat = try ref["spatial_shapes"]!.toArray(Int64.self).map(Int.init)
    let shapes = stride(from: 0, to: shapesFlat.count, by: 2).map { (shapesFlat[$0], shapesFlat[$0 + 1]) }
    try noGrad {
      let img = try model.imageFeatures(patches: ref["pixel_values"]!, mask: ref["pixel_attention_mask"]!, shapes: shapes)
      let (c, d) = try cosineAndMaxDiff(img, ref["image_features"]!)
      #expect(d < 1e-4 && c > 0.99999, "naflex image: \(d) \(c)")
      let txt = try model.textFeatures(ref["input_ids"]!)
      let (c2, d2) = try cosineAndMaxDiff(txt, ref["text_features"]!)
      #expect(d2 < 1e-4 && c2 > 0.99999, "naflex text: \(d2) \(c2)")
    }
    // Siglip2ImageProcessor from preprocessor_config.json.
    let proc = try NaFlexProcessorConfig.load(dir)
    let (_, images) = MFx.inputs(name)
    var patches: [Float] = [], masks: [Int64] = [], grids: [Int] = []
    for f in images {
      let r = proc.transform(try ImageDecoder().decode(file: MFx.dir + "/images/" + f))
      patches += r.patches; masks += r.mask; grids += [r.shape.0, r.shape.1]
    }
    #expect(grids == shapesFlat)
    #expect(try masks == ref["pixel_attention_mask"]!.toArray(Int64.self))
    let expected = try ref["pixel_values"]!.floats()
    #expect(zip(patches, expected).map { abs($0 - $1) }.max()! < 1e-6)
  }
}

@Suite struct GradientCheckpointing {
  /// Also under bf16 autocast, with backward outside the autocast scope as training runs it: the
  /// recomputation must use the forward's precision.
  @Test(arguments: [false, true]) func sameGradientsWithAndWithoutRecomputation(bf16: Bool) throws {
    let ref = try Safetensors.read(MFx.model("tiny_siglip") + "/reference.safetensors").dictionary
    func grads(_ checkpointing: Bool) throws -> [String: [Float]] {
      let bundle = try ModelRegistry.load(ModelLoadOptions(type: "x", pretrainedDir: MFx.model("tiny_siglip"), canonicalize: false))
      let m = bundle.encoder.module
      m.train()
      bundle.encoder.gradientCheckpointing = checkpointing
      let loss = try autocast(.cpu, dtype: .bfloat16, enabled: bf16) { () throws -> Tensor in
        let img = try bundle.encoder.encodeImages(ref["pixel_values"]!).to(.float32)
        let txt = try bundle.encoder.encodeTexts(ref["input_ids"]!, attentionMask: nil).to(.float32)
        return try img.matmul(try txt.transpose(0, 1)).square().sum()
      }
      try loss.backward()
      var out: [String: [Float]] = [:]
      for (k, p) in m.namedParameters() where k.contains("layers.0") || k.contains("head") {
        if let g = p.grad { out[k] = try g.floats() }
      }
      return out
    }
    let plain = try grads(false), recomputed = try grads(true)
    #expect(!plain.isEmpty && Set(plain.keys) == Set(recomputed.keys))
    for (k, g) in plain {
      let d = zip(g, recomputed[k]!).map { abs($0 - $1) }.max() ?? 0
      let scale = max(1, g.map { abs($0) }.max() ?? 0)
      #expect(d < 1e-6 * scale, "\(k): \(d)")
    }
  }
}

/// A copy of a fixture model directory (files linked) whose config.json / preprocessor_config.json
/// keys are replaced by `config` / `preprocessor` (a nil value removes the key).
func alteredModel(_ name: String, config: [String: [String: Any?]] = [:], preprocessor: [String: Any?] = [:]) throws -> String {
  let src = MFx.model(name), fm = FileManager.default
  let dir = NSTemporaryDirectory() + "clipkit-model-\(UUID().uuidString)"
  try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
  for f in try fm.contentsOfDirectory(atPath: src) where f != "config.json" && f != "preprocessor_config.json" {
    try fm.createSymbolicLink(atPath: dir + "/" + f, withDestinationPath: src + "/" + f)
  }
  var c = try JSONSerialization.jsonObject(with: fm.contents(atPath: src + "/config.json")!) as! [String: Any]
  for (section, keys) in config {
    var s = c[section] as? [String: Any] ?? [:]
    for (k, v) in keys { s[k] = v }
    c[section] = s
  }
  try JSONSerialization.data(withJSONObject: c).write(to: URL(fileURLWithPath: dir + "/config.json"))
  var p = (fm.contents(atPath: src + "/preprocessor_config.json")).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
  for (k, v) in preprocessor { p[k] = v }
  try JSONSerialization.data(withJSONObject: p).write(to: URL(fileURLWithPath: dir + "/preprocessor_config.json"))
  return dir
}

@Suite struct MalformedSiglipConfigs {
  func expectConfigError(_ dir: String, _ file: String, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation,
                         _ body: () throws -> Void) {
    let error = #expect(throws: ModelError.self, sourceLocation: sourceLocation) { try body() }
    guard case .config(let f, let reason)? = error else { return }
    #expect(f == dir + "/" + file && reason.contains(fragment), "\(f): \(reason)", sourceLocation: sourceLocation)
  }

  /// config.json sizes that would divide by zero, make an invalid range or overflow are errors
  /// naming the file and field.
  @Test func sizesAreValidatedByField() throws {
    for (section, key, value, fragment) in [
      ("vision_config", "num_attention_heads", 0, "vision_config.num_attention_heads must be in 1..."),
      ("text_config", "num_attention_heads", 0, "text_config.num_attention_heads must be in 1..."),
      ("vision_config", "patch_size", 0, "vision_config.patch_size must be in 1..."),
      ("vision_config", "patch_size", -4, "vision_config.patch_size must be in 1..."),
      ("vision_config", "hidden_size", 30, "vision_config.hidden_size 30 is not divisible by vision_config.num_attention_heads"),
      ("text_config", "hidden_size", 33, "text_config.hidden_size 33 is not divisible by text_config.num_attention_heads"),
      ("vision_config", "image_size", 4, "vision_config.image_size 4 is smaller than vision_config.patch_size 8"),
      ("vision_config", "num_hidden_layers", -1, "vision_config.num_hidden_layers must be in 0..."),
      ("text_config", "num_hidden_layers", -3, "text_config.num_hidden_layers must be in 0..."),
      ("text_config", "vocab_size", 0, "text_config.vocab_size must be in 1..."),
      ("text_config", "max_position_embeddings", 0, "text_config.max_position_embeddings must be in 1..."),
      ("text_config", "intermediate_size", -1, "text_config.intermediate_size must be in 1..."),
      ("text_config", "projection_size", 0, "text_config.projection_size must be in 1..."),
      ("vision_config", "num_channels", 0, "vision_config.num_channels must be in 1..."),
      ("vision_config", "image_size", 1 << 40, "vision_config.image_size must be in 1...2147483647"),
    ] as [(String, String, Int, String)] {
      let dir = try alteredModel("tiny_siglip", config: [section: [key: value]])
      expectConfigError(dir, "config.json", fragment) { _ = try SiglipModel.fromConfig(dir, initialize: .empty) }
    }
    // NaFlex: the position grid is square; the patch Linear is channels × patch².
    for (key, value, fragment) in [("num_patches", 0, "vision_config.num_patches must be in 1..."),
                                   ("num_patches", 15, "vision_config.num_patches 15 is not a square"),
                                   ("patch_size", 0, "vision_config.patch_size must be in 1..."),
                                   ("patch_size", 1 << 30, "num_channels × patch_size²")] as [(String, Int, String)] {
      let dir = try alteredModel("tiny_siglip2_naflex", config: ["vision_config": [key: value]])
      expectConfigError(dir, "config.json", fragment) { _ = try SiglipModel.fromConfig(dir, initialize: .empty) }
    }
    // The fixtures themselves are valid.
    _ = try SiglipModel.fromConfig(MFx.model("tiny_siglip"), initialize: .empty)
    _ = try SiglipModel.fromConfig(MFx.model("tiny_siglip2_naflex"), initialize: .empty)
  }

  /// image_mean / image_std: one value (a number or a one-value list) is broadcast to the three
  /// channels, as torchvision and OpenCLIP's preprocess_cfg do; empty or two values name the key.
  @Test func channelStatisticsTakeOneOrThreeValues() throws {
    for (mean, std) in [(0.25, 0.75), ([0.25], [0.75])] as [(Any, Any)] {
      let dir = try alteredModel("tiny_siglip", preprocessor: ["image_mean": mean, "image_std": std])
      let t = try ImageProcessorConfig.load(dir, defaultSize: 32).transform
      #expect(t.mean == [0.25, 0.25, 0.25] && t.std == [0.75, 0.75, 0.75])
      let n = try alteredModel("tiny_siglip2_naflex", preprocessor: ["image_mean": mean, "image_std": std])
      let nt = try NaFlexProcessorConfig.load(n).transform
      #expect(nt.mean == [0.25, 0.25, 0.25] && nt.std == [0.75, 0.75, 0.75])
    }
    for (key, value, got) in [("image_mean", [] as [Double], "0 values"), ("image_std", [0.5, 0.5], "2 values"),
                              ("image_mean", [0.1, 0.2, 0.3, 0.4], "4 values"), ("image_std", "0.5", "0.5")] as [(String, Any, String)] {
      let dir = try alteredModel("tiny_siglip", preprocessor: [key: value])
      expectConfigError(dir, "preprocessor_config.json", "\(key) needs 1 value (for every channel) or 3 (R, G, B), got \(got)") {
        _ = try ImageProcessorConfig.load(dir, defaultSize: 32)
      }
      let n = try alteredModel("tiny_siglip2_naflex", preprocessor: [key: value])
      expectConfigError(n, "preprocessor_config.json", "\(key) needs 1 value") { _ = try NaFlexProcessorConfig.load(n) }
    }
    // Sizes of the resize must be positive.
    for (size, key) in [(["height": 0, "width": 32], "size.height"), (["height": 32, "width": -1], "size.width"),
                        (["shortest_edge": 0], "size.shortest_edge")] as [([String: Int], String)] {
      let dir = try alteredModel("tiny_siglip", preprocessor: ["size": size])
      expectConfigError(dir, "preprocessor_config.json", "\(key) must be an integer in 1...65536") {
        _ = try ImageProcessorConfig.load(dir, defaultSize: 32)
      }
    }
  }

  /// NaFlex processor sizes: patch_size and max_num_patches must be positive, and the patch size
  /// must be the model's.
  @Test func naflexProcessorSizesAreChecked() throws {
    for (key, value, fragment) in [("patch_size", 0, "patch_size must be an integer in 1...65536, got 0"),
                                   ("max_num_patches", 0, "max_num_patches must be an integer in 1...65536, got 0"),
                                   ("max_num_patches", -5, "max_num_patches must be an integer in 1...65536, got -5"),
                                   ("patch_size", 8192, "more than 2^31 values per image")] as [(String, Int, String)] {
      let dir = try alteredModel("tiny_siglip2_naflex", preprocessor: [key: value])
      expectConfigError(dir, "preprocessor_config.json", fragment) { _ = try NaFlexProcessorConfig.load(dir) }
    }
    let dir = try alteredModel("tiny_siglip2_naflex", preprocessor: ["patch_size": 8])
    expectConfigError(dir, "preprocessor_config.json", "patch_size 8 differs from config.json's vision_config.patch_size 4") {
      _ = try ModelRegistry.load(ModelLoadOptions(type: "siglip2-so400m-patch16-naflex", pretrainedDir: dir, canonicalize: false))
    }
  }
}
