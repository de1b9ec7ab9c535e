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
    let bundle = try ModelRegistry.load(type: "x", pretrainedDir: MFx.model("tiny_siglip"), canonicalize: false)
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
    let bundle = try ModelRegistry.load(type: "x", pretrainedDir: MFx.model("tiny_siglip"), canonicalize: false)
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
  @Test func sameGradientsWithAndWithoutRecomputation() throws {
    let ref = try Safetensors.read(MFx.model("tiny_siglip") + "/reference.safetensors").dictionary
    func grads(_ checkpointing: Bool) throws -> [String: [Float]] {
      let bundle = try ModelRegistry.load(type: "x", pretrainedDir: MFx.model("tiny_siglip"), canonicalize: false)
      let m = bundle.encoder.module
      m.train()
      bundle.encoder.gradientCheckpointing = checkpointing
      let img = try bundle.encoder.encodeImages(ref["pixel_values"]!)
      let txt = try bundle.encoder.encodeTexts(ref["input_ids"]!, attentionMask: nil)
      let loss = try img.matmul(try txt.transpose(0, 1)).square().sum()
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
      #expect(d < 1e-6, "\(k): \(d)")
    }
  }
}
