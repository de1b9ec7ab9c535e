import Export
import Foundation
import Torch

// SigLIP's forward pass written as an ONNX graph, module by module, with the same math as
// Siglip.swift. Initializers are named by their Hugging Face checkpoint keys.

extension Activation {
  var onnx: ONNXActivation {
    switch self {
    case .geluErf: return .geluErf
    case .geluTanh: return .geluTanh
    case .quickGelu: return .quickGelu
    }
  }
}

extension SiglipMLP {
  func onnx(_ g: ONNXGraph, _ x: String, key: String) throws -> String {
    try g.linear(g.activation(try g.linear(x, fc1, key: key + ".fc1"), act.onnx), fc2, key: key + ".fc2")
  }
}

extension SiglipEncoderLayer {
  func onnx(_ g: ONNXGraph, _ x: String, key: String, mask: String? = nil) throws -> String {
    let a = attention, dim = a.q.weight.size(0)
    let n = try g.layerNorm(x, norm1, key: key + ".layer_norm1")
    let ctx = g.attention(q: try g.linear(n, a.q, key: key + ".self_attn.q_proj"),
                          k: try g.linear(n, a.k, key: key + ".self_attn.k_proj"),
                          v: try g.linear(n, a.v, key: key + ".self_attn.v_proj"), heads: a.heads, dim: dim, mask: mask)
    let h = g.op("Add", [x, try g.linear(ctx, a.out, key: key + ".self_attn.out_proj")])
    return g.op("Add", [h, try mlp.onnx(g, try g.layerNorm(h, norm2, key: key + ".layer_norm2"), key: key + ".mlp")])
  }
}

extension SiglipEncoder {
  func onnx(_ g: ONNXGraph, _ x: String, key: String, mask: String? = nil) throws -> String {
    var h = x
    for (i, layer) in layers.enumerated() { h = try layer.onnx(g, h, key: "\(key).layers.\(i)", mask: mask) }
    return h
  }
}

extension SiglipMAPHead {
  func onnx(_ g: ONNXGraph, _ x: String, key: String) throws -> String {
    let mha = attention, dim = probe.size(2)
    let w = try mha.inProjWeight.chunk(3), b = try mha.inProjBias.chunk(3)
    // The probe is [1, 1, D]: its query broadcasts over the batch inside the attention.
    let q = try g.linear(try g.weight(key + ".probe", probe), weight: w[0], bias: b[0], key: key + ".attention.in_proj_q")
    let k = try g.linear(x, weight: w[1], bias: b[1], key: key + ".attention.in_proj_k")
    let v = try g.linear(x, weight: w[2], bias: b[2], key: key + ".attention.in_proj_v")
    let a = try g.linear(g.attention(q: q, k: k, v: v, heads: mha.heads, dim: dim), mha.out, key: key + ".attention.out_proj")
    let y = g.op("Add", [a, try mlp.onnx(g, try g.layerNorm(a, norm, key: key + ".layernorm"), key: key + ".mlp")])
    return g.selectToken(y, index: 0)
  }
}

extension SiglipModel {
  /// pixels [B, 3, height, width] → pooled image features [B, D] (not normalised).
  func onnxImageFeatures(_ g: ONNXGraph, pixels: String, height: Int, width: Int) throws -> String {
    let v = vision, key = "vision_model"
    guard let emb = v.embeddings else {
      throw ExportError.unsupported(SiglipFamily.naflexExportRefusal)
    }
    let p = emb.patchSize
    guard height % p == 0 && width % p == 0 && height >= p && width >= p else {
      throw ExportError.unsupported("export.input_height/input_width \(height)x\(width) must be positive multiples of the patch size \(p)")
    }
    let d = emb.patch.weight.size(0)
    var convInputs = [pixels, try g.weight(key + ".embeddings.patch_embedding.weight", emb.patch.weight)]
    if let bias = emb.patch.bias { convInputs.append(try g.weight(key + ".embeddings.patch_embedding.bias", bias)) }
    let conv = g.op("Conv", convInputs, [.ints("kernel_shape", [p, p]), .ints("strides", [p, p])])
    let tokens = g.op("Transpose", [g.op("Reshape", [conv, g.int64s([0, Int64(d), -1])])], [.ints("perm", [0, 2, 1])])
    // The position grid is resized to the export resolution once, here, as the eager model does per call.
    let positions = try emb.positions(h: height / p, w: width / p)
    var h = g.op("Add", [tokens, try g.weight(key + ".embeddings.position_embedding.weight", positions)])
    h = try v.encoder.onnx(g, h, key: key + ".encoder")
    h = try g.layerNorm(h, v.postNorm, key: key + ".post_layernorm")
    guard let head = v.head else {
      // Mean over tokens, as ReduceSum ÷ N (ReduceSum takes its axes as an input in every opset ≥ 13).
      let s = g.op("ReduceSum", [h, g.int64s([1])], [.int("keepdims", 0)])
      return g.op("Div", [s, g.float(Float((height / p) * (width / p)))])
    }
    return try head.onnx(g, h, key: key + ".head")
  }

  /// ids [B, L] → pooled text features [B, E] (not normalised): last position after the final
  /// norm, no padding mask (TAO's export feeds an all-ones mask).
  func onnxTextFeatures(_ g: ONNXGraph, ids: String, length: Int) throws -> String {
    try text.onnx(g, ids: ids, length: length, key: "text_model")
  }
}

extension SiglipTextTransformer {
  /// ids [B, L] → pooled text features [B, E]; initializers named under `key`.
  func onnx(_ g: ONNXGraph, ids: String, length: Int, key: String, mask: String? = nil) throws -> String {
    let t = self
    guard length <= t.embeddings.position.weight.size(0) else {
      throw ExportError.unsupported("text length \(length) exceeds the model's \(t.embeddings.position.weight.size(0)) positions")
    }
    let tokens = g.op("Gather", [try g.weight(key + ".embeddings.token_embedding.weight", t.embeddings.token.weight), ids], [.int("axis", 0)])
    let positions = try t.embeddings.position.weight.narrow(dim: 0, start: 0, length: length).unsqueeze(0)
    var h = g.op("Add", [tokens, try g.weight(key + ".embeddings.position_embedding.weight", positions)])
    // Padded keys get a large negative score: (1 − mask)·−1e4 as [B, 1, 1, L].
    let additive = mask.map { m in
      g.op("Unsqueeze", [g.op("Mul", [g.op("Sub", [g.float(1), g.op("Cast", [m], [.int("to", 1)])]), g.float(-1e4)]), g.int64s([1, 2])])
    }
    h = try t.encoder.onnx(g, h, key: key + ".encoder", mask: additive)
    h = try g.layerNorm(h, t.finalNorm, key: key + ".final_layer_norm")
    return try g.linear(g.selectToken(h, index: length - 1), t.head, key: key + ".head")
  }
}

extension SiglipAdapter {
  public func onnxImageEmbedding(_ g: ONNXGraph, pixels: String, height: Int, width: Int) throws -> String {
    g.l2Normalize(try inner.onnxImageFeatures(g, pixels: pixels, height: height, width: width))
  }
  public func onnxTextEmbedding(_ g: ONNXGraph, ids: String, mask: String?, length: Int) throws -> String {
    g.l2Normalize(try inner.onnxTextFeatures(g, ids: ids, length: length))
  }
}
