import Foundation
import Torch

// Transformer building blocks in operators of opset 14 and later, so the graphs run on
// onnxruntime and TensorRT alike. LayerNormalization is used from opset 17 and spelled out below it.

public enum ONNXActivation: Sendable {
  case geluErf, geluTanh, quickGelu
}

extension ONNXGraph {
  /// y = x Wᵀ + b. The weight is stored transposed ([in, out]) under `<key>.weight`.
  public func linear(_ x: String, weight: Tensor, bias: Tensor?, key: String) throws -> String {
    let w = try self.weight(key + ".weight", try weight.transpose(0, 1))
    let y = op("MatMul", [x, w])
    guard let bias else { return y }
    return op("Add", [y, try self.weight(key + ".bias", bias)])
  }

  public func layerNorm(_ x: String, weight: Tensor, bias: Tensor, eps: Double, key: String) throws -> String {
    let w = try self.weight(key + ".weight", weight), b = try self.weight(key + ".bias", bias)
    if opset >= 17 {
      return op("LayerNormalization", [x, w, b], [.int("axis", -1), .float("epsilon", Float(eps))], hint: key)
    }
    // (x − mean) / √(var + eps) · w + b, biased variance, over the last axis (ReduceMean takes
    // its axes as an attribute before opset 18).
    func mean(_ t: String) -> String { op("ReduceMean", [t], [.ints("axes", [-1]), .int("keepdims", 1)]) }
    let centred = op("Sub", [x, mean(x)])
    let variance = mean(op("Mul", [centred, centred]))
    let normed = op("Div", [centred, op("Sqrt", [op("Add", [variance, float(Float(eps))])])])
    return op("Add", [op("Mul", [normed, w]), b], hint: key)
  }

  /// A Linear with a LoRA adapter is written merged (W + B·A·scaling): the graph is the plain model.
  public func linear(_ x: String, _ m: Linear, key: String) throws -> String {
    try linear(x, weight: try m.mergedWeight(), bias: m.bias, key: key)
  }

  public func layerNorm(_ x: String, _ m: LayerNorm, key: String) throws -> String {
    try layerNorm(x, weight: m.weight, bias: m.bias, eps: m.eps, key: key)
  }

  public func activation(_ x: String, _ kind: ONNXActivation) -> String {
    switch kind {
    case .geluErf:  // 0.5·x·(1 + erf(x/√2))
      let e = op("Erf", [op("Div", [x, float(Float(2).squareRoot())])])
      return op("Mul", [op("Mul", [x, float(0.5)]), op("Add", [e, float(1)])])
    case .geluTanh:  // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
      let cube = op("Mul", [op("Mul", [x, x]), x])
      let inner = op("Add", [x, op("Mul", [cube, float(0.044715)])])
      let t = op("Tanh", [op("Mul", [inner, float(Float((2 / Double.pi).squareRoot()))])])
      return op("Mul", [op("Mul", [x, float(0.5)]), op("Add", [t, float(1)])])
    case .quickGelu:
      return op("Mul", [x, op("Sigmoid", [op("Mul", [x, float(1.702)])])])
    }
  }

  /// Scaled dot-product attention over already projected q [Bq, Lq, D], k and v [B, L, D];
  /// q's batch may be 1 (a learned probe) and broadcasts. `mask`: an additive [Lq, L] term (a
  /// causal mask). Returns [B, Lq, D].
  public func attention(q: String, k: String, v: String, heads: Int, dim: Int, mask: String? = nil) -> String {
    let dh = dim / heads
    let split = int64s([0, -1, Int64(heads), Int64(dh)], hint: "heads_shape")
    func perHead(_ t: String, _ perm: [Int]) -> String { op("Transpose", [op("Reshape", [t, split])], [.ints("perm", perm)]) }
    let qh = op("Mul", [perHead(q, [0, 2, 1, 3]), float(Float(1 / Double(dh).squareRoot()))])
    let kt = perHead(k, [0, 2, 3, 1])  // [B, H, dh, L]
    let scores = op("MatMul", [qh, kt])
    let p = op("Softmax", [mask.map { op("Add", [scores, $0]) } ?? scores], [.int("axis", -1)])
    let a = op("MatMul", [p, perHead(v, [0, 2, 1, 3])])  // [B, H, Lq, dh]
    let merged = op("Transpose", [a], [.ints("perm", [0, 2, 1, 3])])
    return op("Reshape", [merged, int64s([0, -1, Int64(dim)], hint: "merge_shape")])
  }

  /// x / max(‖x‖₂, 1e-12) along the last axis (torch.nn.functional.normalize).
  public func l2Normalize(_ x: String) -> String {
    let sq = op("ReduceSum", [op("Mul", [x, x]), int64s([-1], hint: "axes")], [.int("keepdims", 1)])
    let norm = op("Max", [op("Sqrt", [sq]), float(1e-12)])
    return op("Div", [x, norm])
  }

  /// x[:, index] for x [B, L, D] → [B, D].
  public func selectToken(_ x: String, index: Int) -> String {
    op("Gather", [x, int64s([Int64(index)], shape: [], hint: "token")], [.int("axis", 1)])
  }
}
