import Foundation
import SwiftProtobuf
import Torch

// TensorRT 11 builds every network strongly typed: its `--fp16` and per-layer precision flags are
// gone, and an fp16 engine needs a graph whose tensors are fp16 (NVIDIA's answer is ModelOpt
// AutoCast). This pass writes that graph from a float32 one, ClipKit's export or torch.onnx's:
// - matrix products (MatMul, Gemm, Conv) and the elementwise work around them run in fp16;
// - normalisation and exponentials (LayerNormalization, reductions, Pow/Sqrt/Div, Softmax, Exp,
//   Log) stay fp32, and so does elementwise work fed by them until the next matrix product, so
//   the casts sit at a few boundaries instead of around every op;
// - work on constants alone (logit scale and bias) stays fp32, embedding lookups read fp16 tables;
// - inputs and outputs keep float32 (the deploy side does not change);
// - `layers_precision` entries (`node name:fp32|fp16`, `*` as a wildcard) override the choice.
// Weights read by fp16 nodes are stored as fp16 (clamped to ±65504); activations crossing a
// boundary get one Cast node each.

public enum ONNXMixedPrecision {
  static let fp32Ops: Set<String> = ["LayerNormalization", "ReduceMean", "ReduceSum", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp",
                                     "Pow", "Sqrt", "Reciprocal", "Div", "Softmax", "LogSoftmax", "Exp", "Log", "Resize", "Range", "CumSum"]
  static let matrixOps: Set<String> = ["MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum"]
  /// Ops that take any element type (no cast needed on their inputs).
  static let anyTypeInputs: Set<String> = ["Shape", "Size", "Cast"]
  static let float: Int32 = 1, half: Int32 = 10

  public struct Summary: Sendable {
    public var fp16Nodes = 0
    public var fp32Nodes = 0
    public var casts = 0
  }

  /// Parses `name:fp32` / `name:fp16` entries (TAO's `layers_precision`).
  public static func layerPrecisions(_ entries: [String]) throws -> [String: Bool] {
    var out: [String: Bool] = [:]
    for e in entries {
      guard let colon = e.lastIndex(of: ":") else { throw ExportError.unsupported("layers_precision entry '\(e)' is not 'layer_name:precision'") }
      let name = String(e[..<colon]), p = e[e.index(after: colon)...].lowercased()
      switch p {
      case "fp32", "float32": out[name] = false
      case "fp16", "float16": out[name] = true
      default: throw ExportError.unsupported("layers_precision entry '\(e)': precision '\(p)' is not fp32 or fp16")
      }
    }
    return out
  }

  /// Converts the float32 model at `source` and writes it to `destination`.
  @discardableResult
  public static func convert(_ source: String, to destination: String, layerPrecisions: [String: Bool] = [:]) throws -> Summary {
    var model = try ONNXFile.read(source)
    let summary = try convert(&model.graph, layerPrecisions: layerPrecisions, path: source)
    try ONNXFile.write(model, to: destination)
    return summary
  }

  static func convert(_ g: inout Onnx_GraphProto, layerPrecisions: [String: Bool], path: String) throws -> Summary {
    // Subgraphs (If/Loop/Scan bodies) and quantized graphs are outside what this pass types.
    if let n = g.node.first(where: { ["If", "Loop", "Scan", "QuantizeLinear", "DequantizeLinear", "QLinearMatMul", "QLinearConv"].contains($0.opType) }) {
      throw ExportError.unsupported("\(path): node \(n.name) (\(n.opType)): graphs with subgraphs or quantization cannot be converted to fp16 by ClipKit; build an fp32 engine or convert the graph with NVIDIA ModelOpt")
    }
    // Element types of every value, by the ONNX typing rules of the ops these graphs use.
    var type: [String: Int32] = [:]
    for v in g.input { type[v.name] = v.type.tensorType.elemType }
    var constant: [String: Onnx_TensorProto] = [:]
    for t in g.initializer { type[t.name] = t.dataType; constant[t.name] = t }
    for n in g.node {
      func attr(_ k: String) -> Onnx_AttributeProto? { n.attribute.first { $0.name == k } }
      let first = n.input.first { !$0.isEmpty }.flatMap { type[$0] }
      let t: Int32?
      switch n.opType {
      case "Constant":
        if let v = attr("value"), v.hasT { t = v.t.dataType; constant[n.output[0]] = v.t }
        else if attr("value_float") != nil || attr("value_floats") != nil { t = float }  // cast where fp16 nodes read it
        else if attr("value_int") != nil || attr("value_ints") != nil { t = 7 }
        else { t = nil }
      case "Shape", "Size", "ArgMax", "ArgMin", "NonZero": t = 7
      case "Cast": t = Int32(attr("to")?.i ?? 0)
      case "ConstantOfShape": t = attr("value").map { $0.t.dataType } ?? float
      case "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf": t = 9
      case "Where": t = n.input.count > 1 ? type[n.input[1]] : nil
      case "CastLike": t = n.input.count > 1 ? type[n.input[1]] : nil
      case "OneHot": t = n.input.count > 2 ? type[n.input[2]] : nil
      default: t = first
      }
      for o in n.output where !o.isEmpty { type[o] = t ?? 0 }
      // Second outputs with their own types: indices, masks.
      if n.output.count > 1 && !n.output[1].isEmpty {
        switch n.opType {
        case "TopK", "MaxPool", "Unique": type[n.output[1]] = 7
        case "Dropout": type[n.output[1]] = 9
        default: break
        }
      }
    }

    // Each float-producing node's precision: true = fp16.
    let producer = Dictionary(g.node.enumerated().flatMap { i, n in n.output.map { ($0, i) } }, uniquingKeysWith: { a, _ in a })
    var low = [Bool](repeating: false, count: g.node.count)
    var summary = Summary()
    // x·x summed for a norm overflows fp16 once |x| > 256 (GELU's x³ may overflow harmlessly).
    var readers: [String: [String]] = [:]
    for n in g.node { for x in n.input { readers[x, default: []].append(n.opType) } }
    func isSquareIntoReduction(_ n: Onnx_NodeProto) -> Bool {
      n.opType == "Mul" && n.input.count == 2 && n.input[0] == n.input[1]
        && (readers[n.output[0]] ?? []).allSatisfy { $0.hasPrefix("Reduce") } && readers[n.output[0]] != nil
    }
    let patterns = layerPrecisions.filter { $0.key.contains("*") && $0.key != "*" }.sorted { $0.key.count > $1.key.count }
    for (i, n) in g.node.enumerated() {
      guard n.output.contains(where: { type[$0] == float }), !["Constant", "Cast", "ConstantOfShape"].contains(n.opType) else { continue }
      if let forced = layerPrecisions[n.name] ?? patterns.first(where: { glob($0.key, n.name) })?.value ?? layerPrecisions["*"] {
        low[i] = forced
      } else if fp32Ops.contains(n.opType) || isSquareIntoReduction(n) {
        low[i] = false
      } else if matrixOps.contains(n.opType) {
        low[i] = true
      } else {
        // Elementwise: fp32 when an activation it reads is fp32 (graph inputs included), or when
        // it reads only constants (logit scale and bias stay exact), except embedding lookups.
        let activations = n.input.filter { !$0.isEmpty && type[$0] == float && constant[$0] == nil }
        low[i] = activations.isEmpty ? n.opType == "Gather" : !activations.contains { a in producer[a].map { !low[$0] } ?? true }
      }
      if low[i] { summary.fp16Nodes += 1 } else { summary.fp32Nodes += 1 }
    }
    if summary.fp16Nodes == 0 { throw ExportError.unsupported("\(path): no node could run in fp16") }

    // Graph outputs made by fp16 nodes: the node writes `<name>__fp16`, a Cast restores the name.
    let outputs = Set(g.output.map(\.name))
    var rename: [String: String] = [:]
    for (i, n) in g.node.enumerated() where low[i] {
      for (k, o) in n.output.enumerated() where outputs.contains(o) && type[o] == float {
        rename[o] = o + "__fp16"
        g.node[i].output[k] = o + "__fp16"
      }
    }

    var nodes: [Onnx_NodeProto] = []
    var halfCopies: [String: String] = [:], casts: [String: String] = [:]
    var newInitializers: [Onnx_TensorProto] = []
    func isHalf(_ v: String) -> Bool { producer[v].map { low[$0] && type[v] == float } ?? false }
    for (i, var n) in g.node.enumerated() {
      for (k, name) in n.input.enumerated() where !name.isEmpty {
        let x = rename[name] ?? name
        n.input[k] = x
        guard type[name] == float, !anyTypeInputs.contains(n.opType), !(n.opType == "Resize" && k > 0) else { continue }
        // Non-float nodes (comparisons …) read fp32.
        let wantHalf = low[i]
        if let c = constant[name], producer[name] == nil || g.node[producer[name]!].opType == "Constant" {
          guard wantHalf else { continue }
          if halfCopies[name] == nil {
            var h = Onnx_TensorProto()
            h.name = name + "__fp16"
            h.dims = c.dims
            h.dataType = half
            h.rawData = try halfBytes(c, path: path)
            newInitializers.append(h)
            halfCopies[name] = h.name
          }
          n.input[k] = halfCopies[name]!
        } else if isHalf(name) != wantHalf {
          let key = x + (wantHalf ? "__to_fp16" : "__to_fp32")
          if casts[key] == nil {
            var c = Onnx_NodeProto()
            c.opType = "Cast"
            c.name = key
            c.input = [x]
            c.output = [key]
            var to = Onnx_AttributeProto()
            to.name = "to"
            to.type = .int
            to.i = Int64(wantHalf ? half : float)
            c.attribute = [to]
            nodes.append(c)
            casts[key] = key
            summary.casts += 1
          }
          n.input[k] = casts[key]!
        }
      }
      nodes.append(n)
    }
    for (o, h) in rename.sorted(by: { $0.key < $1.key }) {
      var c = Onnx_NodeProto()
      c.opType = "Cast"
      c.name = o + "__to_fp32"
      c.input = [h]
      c.output = [o]
      var to = Onnx_AttributeProto()
      to.name = "to"
      to.type = .int
      to.i = Int64(float)
      c.attribute = [to]
      nodes.append(c)
      summary.casts += 1
    }
    g.node = nodes
    // Float weights now read only in fp16 are dropped in their fp32 form (and from the graph
    // inputs, where old exports list initializers too).
    let read = Set(nodes.flatMap(\.input)).union(g.output.map(\.name))
    let dropped = Set(g.initializer.map(\.name)).subtracting(read)
    g.initializer = (g.initializer + newInitializers).filter { read.contains($0.name) }
    g.input.removeAll { dropped.contains($0.name) }
    // value_info (an unknown field in ClipKit's subset .proto) would carry the old float types.
    g.unknownFields = UnknownStorage()
    return summary
  }

  /// `*` matches any run of characters (trtexec's `--layerPrecisions` patterns).
  public static func glob(_ pattern: String, _ name: String) -> Bool {
    let parts = pattern.split(separator: "*", omittingEmptySubsequences: false).map(String.init)
    guard name.hasPrefix(parts[0]), name.hasSuffix(parts[parts.count - 1]), name.count >= parts[0].count + parts[parts.count - 1].count else { return false }
    var rest = Substring(name.dropFirst(parts[0].count).dropLast(parts[parts.count - 1].count))
    for p in parts.dropFirst().dropLast() where !p.isEmpty {
      guard let r = rest.range(of: p) else { return false }
      rest = rest[r.upperBound...]
    }
    return true
  }

  /// A float32 tensor's values as fp16 bytes, clamped to fp16's finite range.
  static func halfBytes(_ t: Onnx_TensorProto, path: String) throws -> Data {
    let n = t.dims.reduce(1) { $0 * Int($1) }
    guard t.dataType == float, t.rawData.count == n * 4 else {
      throw ExportError.unsupported("\(path): constant \(t.name) is not float32 stored as raw data; ClipKit cannot convert it to fp16")
    }
    let values = try t.rawData.withUnsafeBytes { try Tensor(bytes: $0, shape: [n], dtype: .float32) }
    return Data(try values.clamp(min: -65504, max: 65504).to(.float16).bytes())
  }
}
