import Export
import Foundation
import Torch

// open_clip's CLIP written as an ONNX graph with the same math as OpenCLIP.swift. Initializers
// are named by open_clip's state-dict keys.

extension ResidualAttentionBlock {
  func onnx(_ g: ONNXGraph, _ x: String, key: String, mask: String?) throws -> String {
    let dim = attn.out.weight.size(0)
    let w = try attn.inProjWeight.chunk(3), b = try attn.inProjBias.chunk(3)
    let n = try g.layerNorm(x, ln1, key: key + ".ln_1")
    let ctx = g.attention(q: try g.linear(n, weight: w[0], bias: b[0], key: key + ".attn.in_proj_q"),
                          k: try g.linear(n, weight: w[1], bias: b[1], key: key + ".attn.in_proj_k"),
                          v: try g.linear(n, weight: w[2], bias: b[2], key: key + ".attn.in_proj_v"), heads: attn.heads, dim: dim, mask: mask)
    let h = g.op("Add", [x, try g.linear(ctx, attn.out, key: key + ".attn.out_proj")])
    let m = try g.linear(g.activation(try g.linear(try g.layerNorm(h, ln2, key: key + ".ln_2"), mlp.fc, key: key + ".mlp.c_fc"), mlp.act.onnx),
                         mlp.proj, key: key + ".mlp.c_proj")
    return g.op("Add", [h, m])
  }
}

extension OpenCLIPTransformer {
  func onnx(_ g: ONNXGraph, _ x: String, key: String, mask: String? = nil) throws -> String {
    var h = x
    for (i, b) in blocks.enumerated() { h = try b.onnx(g, h, key: "\(key).resblocks.\(i)", mask: mask) }
    return h
  }
}

extension OpenCLIPModel {
  /// pixels [B, 3, H, W] → projected image features [B, E] (not normalised).
  func onnxImageFeatures(_ g: ONNXGraph, pixels: String, height: Int, width: Int) throws -> String {
    guard let v = visual else { throw ModelError.input("this open_clip model has no vision tower") }
    let c = v.config, key = "visual"
    let p = c.patchSize, w = c.width
    // Square only; sizes that are not multiples of the patch lose their last pixels to the
    // strided convolution, as in open_clip (TAO exports NV-CLIP-224 at 256 px by default).
    guard height == width && height >= p else {
      throw ExportError.unsupported("export.input_height/input_width \(height)x\(width): OpenCLIP models export square inputs of at least the patch size \(p)")
    }
    let (gh, gw) = (height / p, width / p)
    let conv = g.op("Conv", [pixels, try g.weight(key + ".conv1.weight", v.conv1.weight)], [.ints("kernel_shape", [p, p]), .ints("strides", [p, p])])
    let patches = g.op("Transpose", [g.op("Reshape", [conv, g.int64s([0, Int64(w), -1])])], [.ints("perm", [0, 2, 1])])
    // The class token, broadcast to the batch: Expand to [B, 1, W] with B read from the input.
    let batch = g.op("Gather", [g.op("Shape", [pixels]), g.int64s([0])], [.int("axis", 0)])
    let clsShape = g.op("Concat", [batch, g.int64s([1, Int64(w)])], [.int("axis", 0)])
    let cls = g.op("Expand", [try g.weight(key + ".class_embedding", try v.classEmbedding.reshape([1, 1, w])), clsShape])
    // The position table resized to the export resolution once, here, as the eager model does per call.
    var h = g.op("Add", [g.op("Concat", [cls, patches], [.int("axis", 1)]), try g.weight(key + ".positional_embedding", try v.positions(h: gh, w: gw).unsqueeze(0))])
    if let ln = v.lnPre { h = try g.layerNorm(h, ln, key: key + ".ln_pre") }
    h = try v.transformer.onnx(g, h, key: key + ".transformer")
    let n = gh * gw
    func pool(_ t: String) -> String {
      guard c.poolType == "avg" else { return g.selectToken(t, index: 0) }
      let patchTokens = g.op("Slice", [t, g.int64s([1]), g.int64s([Int64(n + 1)]), g.int64s([1])])
      return g.op("Div", [g.op("ReduceSum", [patchTokens, g.int64s([1])], [.int("keepdims", 0)]), g.float(Float(n))])
    }
    let pooled = c.finalLnAfterPool ? try g.layerNorm(pool(h), v.lnPost, key: key + ".ln_post") : pool(try g.layerNorm(h, v.lnPost, key: key + ".ln_post"))
    return g.op("MatMul", [pooled, try g.weight(key + ".proj", v.proj)])
  }

  /// ids [B, L] → projected text features [B, E] (not normalised).
  func onnxTextFeatures(_ g: ONNXGraph, ids: String, length: Int) throws -> String {
    guard length <= positionalEmbedding.size(0) else {
      throw ExportError.unsupported("text length \(length) exceeds the model's \(positionalEmbedding.size(0)) positions")
    }
    let tokens = g.op("Gather", [try g.weight("token_embedding.weight", tokenEmbedding.weight), ids], [.int("axis", 0)])
    var h = g.op("Add", [tokens, try g.weight("positional_embedding", try positionalEmbedding.narrow(dim: 0, start: 0, length: length).unsqueeze(0))])
    // Causal text: −inf above the diagonal (a large negative, finite for fp16 engines).
    var mask: String? = nil
    if !config.text.noCausalMask {
      let m = (0..<(length * length)).map { i -> Float in i % length > i / length ? -1e4 : 0 }
      mask = try g.weight("attn_mask", try Tensor(m, shape: [length, length]))
    }
    h = try transformer.onnx(g, h, key: "transformer", mask: mask)
    h = try g.layerNorm(h, lnFinal, key: "ln_final")
    let pooled: String
    switch config.text.poolType {
    case "first": pooled = g.selectToken(h, index: 0)
    case "argmax":  // the end-of-text token has the highest id: gather its row per sequence
      let at = g.op("Unsqueeze", [g.op("ArgMax", [ids], [.int("axis", 1), .int("keepdims", 1)]), g.int64s([2])])  // [B, 1, 1]
      let target = g.op("Concat", [g.op("Slice", [g.op("Shape", [at]), g.int64s([0]), g.int64s([2])]), g.int64s([Int64(config.text.width)])],
                        [.int("axis", 0)])  // [B, 1, W]
      let row = g.op("GatherElements", [h, g.op("Expand", [at, target])], [.int("axis", 1)])
      pooled = g.op("Squeeze", [row, g.int64s([1])])
    default: pooled = g.selectToken(h, index: length - 1)
    }
    if let lin = textProjectionLinear { return try g.linear(pooled, lin, key: "text_projection") }
    return g.op("MatMul", [pooled, try g.weight("text_projection", textProjection!)])
  }
}
