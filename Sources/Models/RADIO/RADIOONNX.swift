import Export
import Foundation
import Torch

// RADIO-CLIP as an ONNX graph with the eager model's math (RADIO.swift), in eval mode: the CPE
// position grid for the export resolution is computed once and stored; inputs are normalised
// pixels (normalisation stays outside, as TAO exports it).

extension TimmBlock {
  func onnx(_ g: ONNXGraph, _ x: String, key: String) throws -> String {
    let c = attn.proj.weight.size(0)
    let n = try g.layerNorm(x, norm1, key: key + ".norm1")
    let w = try attn.qkv.mergedWeight().chunk(3), b = try attn.qkv.bias.map { try $0.chunk(3) }
    func part(_ i: Int, _ name: String) throws -> String { try g.linear(n, weight: w[i], bias: b?[i], key: key + ".attn.qkv_" + name) }
    var a = try g.linear(g.attention(q: try part(0, "q"), k: try part(1, "k"), v: try part(2, "v"), heads: attn.heads, dim: c),
                         attn.proj, key: key + ".attn.proj")
    if let ls1 { a = g.op("Mul", [a, try g.weight(key + ".ls1.grandma", ls1.gamma)]) }
    let h = g.op("Add", [x, a])
    var m = g.activation(try g.linear(try g.layerNorm(h, norm2, key: key + ".norm2"), mlp.fc1, key: key + ".mlp.fc1"), .geluErf)
    if let norm = mlp.norm { m = try g.layerNorm(m, norm, key: key + ".mlp.norm") }
    m = try g.linear(m, mlp.fc2, key: key + ".mlp.fc2")
    if let ls2 { m = g.op("Mul", [m, try g.weight(key + ".ls2.grandma", ls2.gamma)]) }
    return g.op("Add", [h, m])
  }
}

extension RADIOHead {
  func onnx(_ g: ONNXGraph, _ x: String, key: String) throws -> String {
    if let v1 = self as? RADIOMLPv1 {
      let h = g.op("Relu", [try g.layerNorm(try g.linear(x, v1.fc1, key: key + ".fc1"), v1.norm, key: key + ".norm")])
      return try g.linear(h, v1.fc2, key: key + ".fc2")
    }
    let v2 = self as! RADIOMLPv2
    func block(_ t: String, _ b: NormGeluLinear, _ k: String) throws -> String {
      try g.linear(g.activation(try g.layerNorm(t, b.norm, key: k + ".0"), .geluErf), b.linear, key: k + ".2")
    }
    var h = x
    if let pre = v2.preNorm { h = g.activation(try g.layerNorm(h, pre.norm, key: key + ".pre_norm.0"), .geluErf) }
    h = try g.linear(h, v2.fc1, key: key + ".fc1")
    for (i, b) in v2.blocks.enumerated() { h = g.op("Add", [h, try block(h, b, key + ".blocks.\(i)")]) }
    return try block(h, v2.final, key + ".final")
  }
}

extension RADIOModel {
  /// pixels [B, 3, height, width] → the adaptor's summary [B, E] (not normalised).
  func onnxImageFeatures(_ g: ONNXGraph, pixels: String, height: Int, width: Int) throws -> String {
    let pg = vit.patchGenerator, p = pg.patchSize, key = "radio_model.model"
    guard height % p == 0 && width % p == 0 && height >= p && width >= p else {
      throw ExportError.unsupported("export.input_height/input_width \(height)x\(width) must be positive multiples of RADIO's patch size \(p)")
    }
    let (py, px) = (height / p, width / p), c = pg.embedder.weight.size(0)
    // 'b c (py yy) (px xx) -> b (py px) (c yy xx)', then the bias-free patch Linear.
    let grid = g.op("Reshape", [pixels, g.int64s([0, 3, Int64(py), Int64(p), Int64(px), Int64(p)])])
    let patches = g.op("Reshape", [g.op("Transpose", [grid], [.ints("perm", [0, 2, 4, 1, 3, 5])]), g.int64s([0, Int64(py * px), Int64(3 * p * p)])])
    var h = try g.linear(patches, pg.embedder, key: key + ".patch_generator.embedder")
    let positions = try noGrad { try pg.positions(batch: 1, rows: py, cols: px) }
    h = g.op("Add", [h, try g.weight(key + ".patch_generator.pos_embed", positions)])
    // The class/register tokens, repeated over the batch.
    let tokens = try g.weight(key + ".patch_generator.cls_token.token", try pg.clsToken.token.unsqueeze(0))
    let batch = g.op("Slice", [g.op("Shape", [pixels]), g.int64s([0]), g.int64s([1])])
    let prefixShape = g.op("Concat", [batch, g.int64s([Int64(pg.clsToken.token.size(0)), Int64(c)])], [.int("axis", 0)])
    h = g.op("Concat", [g.op("Expand", [tokens, prefixShape]), h], [.int("axis", 1)])
    if let norm = pg.patchNormalizer { h = try g.layerNorm(h, norm, key: key + ".patch_generator.patch_normalizer") }
    for (i, b) in vit.blocks.enumerated() { h = try b.onnx(g, h, key: "\(key).blocks.\(i)") }
    if let norm = vit.norm { h = try g.layerNorm(h, norm, key: key + ".norm") }
    let a = adaptors.items[0]
    return try a.1.head.onnx(g, g.selectToken(h, index: a.1.headIndex), key: "radio_model.adaptors.\(a.0).head_mlp")
  }
}

extension RADIOAdapter {
  public func onnxImageEmbedding(_ g: ONNXGraph, pixels: String, height: Int, width: Int) throws -> String {
    g.l2Normalize(try radio.onnxImageFeatures(g, pixels: pixels, height: height, width: width))
  }
  /// The teacher's text tower. A SigLIP tower whose tokenizer returns a mask reads the graph's
  /// `attention_mask` (TAO ties it in unused, so its graph differs from its own eager model for
  /// padded texts; all ones here gives TAO's graph).
  public func onnxTextEmbedding(_ g: ONNXGraph, ids: String, mask: String?, length: Int) throws -> String {
    let a = radio.adaptor
    if let t = a.siglipText {
      return g.l2Normalize(try t.onnx(g, ids: ids, length: length, key: "radio_model.adaptors.\(adaptorName).text_model",
                                      mask: usesTextAttentionMask ? mask : nil))
    }
    return g.l2Normalize(try a.openCLIPText!.onnxTextFeatures(g, ids: ids, length: length))
  }
}
