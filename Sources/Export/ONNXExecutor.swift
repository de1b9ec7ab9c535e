import Foundation
import SwiftProtobuf
import Torch

// Runs an exported ONNX graph on libtorch, node by node, so `clipkit deploy` works on the ONNX
// files without ONNX Runtime or TensorRT. It covers the operators ClipKit's exporter writes and
// those torch.onnx (TAO's exporter) emits for CLIP towers, shape arithmetic included; anything
// else is refused by name, never guessed.

public final class ONNXExecutor {
  public struct Signature: Sendable {
    public let name: String
    public let dims: [Int?]  // nil = symbolic (dynamic)
    public init(name: String, dims: [Int?]) {
      self.name = name
      self.dims = dims
    }
  }

  private let nodes: [Onnx_NodeProto]
  private var constants: [String: Tensor] = [:]
  public let inputs: [Signature]
  public let outputs: [Signature]
  public let path: String

  public init(path: String) throws {
    self.path = path
    let g = try ONNXFile.read(path).graph
    for t in g.initializer { constants[t.name] = try Self.tensor(t, model: path) }
    // Constant nodes (torch.onnx writes hundreds) become tensors once, here, not on every run.
    var rest: [Onnx_NodeProto] = []
    for n in g.node {
      guard n.opType == "Constant" else { rest.append(n); continue }
      guard let v = n.attribute.first(where: { $0.name == "value" }), v.hasT, let out = n.output.first else {
        throw ExportError.unsupported("\(path): Constant node \(n.name) without a tensor value")
      }
      constants[out] = try Self.tensor(v.t, model: path)
    }
    nodes = rest
    // Every node's result is stored under its first output name.
    if let bad = nodes.first(where: { $0.output.first.map(\.isEmpty) ?? true }) {
      throw ExportError.unsupported("\(path): node \(bad.name) (\(bad.opType)) has no output")
    }
    func sig(_ v: Onnx_ValueInfoProto) throws -> Signature {
      Signature(name: v.name, dims: try v.type.tensorType.shape.dim.map { d -> Int? in
        guard case .dimValue(let n)? = d.value else { return nil }
        guard n >= 0 else { throw ExportError.unsupported("\(path): '\(v.name)' has a negative dimension (dim_value \(n))") }
        return Int(n)
      })
    }
    let initNames = Set(constants.keys)
    inputs = try g.input.filter { !initNames.contains($0.name) }.map(sig)
    outputs = try g.output.map(sig)
    let known: Set<String> = ["Conv", "Reshape", "Transpose", "Add", "Sub", "Mul", "Div", "MatMul", "LayerNormalization", "ReduceMean",
                              "ReduceSum", "Sqrt", "Max", "Tanh", "Erf", "Sigmoid", "Softmax", "Gather", "Identity",
                              "Shape", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Expand", "Gemm", "ReduceL2", "Clip",
                              "ConstantOfShape", "Tile", "Mod", "Exp", "Pow", "Neg", "Min", "ArgMax", "GatherElements", "Relu"]
    if let bad = nodes.first(where: { !known.contains($0.opType) || !($0.domain.isEmpty || $0.domain == "ai.onnx") }) {
      throw ExportError.unsupported("\(path): operator \(bad.opType) (node \(bad.name)) is not supported by ClipKit's ONNX executor; run this model with onnxruntime or TensorRT")
    }
  }

  private static func tensor(_ t: Onnx_TensorProto, model: String) throws -> Tensor {
    let raw = t.rawData
    let shape = t.dims.map(Int.init)
    guard shape.allSatisfy({ $0 >= 0 }) else { throw ExportError.unsupported("\(model): tensor \(t.name) has a negative dimension in \(shape)") }
    switch t.dataType {
    case 1:
      if raw.isEmpty { return try Tensor([Float](), shape: [0]).reshape(shape) }
      return try raw.withUnsafeBytes { try Tensor(bytes: $0, shape: shape, dtype: .float32) }
    case 10:  // mixed-precision graphs (gen_trt_engine for TensorRT 11)
      return try raw.withUnsafeBytes { try Tensor(bytes: $0, shape: shape, dtype: .float16) }
    case 7:
      if raw.isEmpty { return try Tensor(t.int64Data, shape: shape) }
      return try raw.withUnsafeBytes { try Tensor(bytes: $0, shape: shape, dtype: .int64) }
    default:
      throw ExportError.unsupported("\(model): tensor \(t.name) has ONNX data type \(t.dataType); only float32, float16 and int64 are supported")
    }
  }

  /// Elementwise integer arithmetic on small shape tensors (same size, or one side a single value).
  static func integerOp(_ a: Tensor, _ b: Tensor, _ f: (Int64, Int64) -> Int64) throws -> Tensor {
    let x = try a.to(.int64).toArray(Int64.self), y = try b.to(.int64).toArray(Int64.self)
    guard x.count == y.count || x.count == 1 || y.count == 1 else {
      throw ExportError.unsupported("integer arithmetic on shapes \(a.shape) and \(b.shape)")
    }
    // An empty side broadcasts to an empty result (indexing its first value would trap).
    if x.isEmpty || y.isEmpty { return try Tensor([Int64](), shape: x.isEmpty ? a.shape : b.shape) }
    let n = max(x.count, y.count)
    let r = (0..<n).map { f(x[x.count == 1 ? 0 : $0], y[y.count == 1 ? 0 : $0]) }
    return try Tensor(r, shape: x.count >= y.count ? a.shape : b.shape)
  }

  /// The nodes `wanted` depends on, in graph order, and the graph inputs they read.
  private func plan(_ wanted: [String]) -> (nodes: [Onnx_NodeProto], inputs: [String]) {
    var needed = Set(wanted), keep: [Onnx_NodeProto] = []
    for n in nodes.reversed() where n.output.contains(where: needed.contains) {
      keep.append(n)
      needed.formUnion(n.input.filter { !$0.isEmpty })
    }
    return (keep.reversed(), inputs.map(\.name).filter(needed.contains))
  }

  /// Runs what the `outputs` (by name; all graph outputs when nil) need; `feeds` by input name.
  /// A combined graph asked for one tower's embedding runs only that tower.
  public func run(_ feeds: [String: Tensor], outputs wanted: [String]? = nil) throws -> [String: Tensor] {
    let names = wanted ?? outputs.map(\.name)
    let (todo, needs) = plan(names)
    var env = constants
    for i in needs {
      guard let t = feeds[i] else { throw ExportError.unsupported("\(path): input '\(i)' was not given") }
      env[i] = t
    }
    for n in todo {
      func input(_ k: Int) throws -> Tensor {
        guard k < n.input.count, let t = env[n.input[k]] else {
          throw ExportError.unsupported("\(path): node \(n.name) reads '\(k < n.input.count ? n.input[k] : "#\(k)")', which nothing produced")
        }
        return t
      }
      func attr(_ name: String) -> Onnx_AttributeProto? { n.attribute.first { $0.name == name } }
      func ints(_ name: String) -> [Int]? { attr(name).map { $0.ints.map(Int.init) } }
      func bad(_ why: String) -> ExportError { .unsupported("\(path): node \(n.name) (\(n.opType)) \(why)") }
      /// An axis attribute or input, negative counting from the end, checked against the rank.
      func checkedAxis(_ a: Int, rank: Int) throws -> Int {
        let r = a < 0 ? a + rank : a
        guard r >= 0 && r < rank else { throw bad("has axis \(a), outside a tensor of rank \(rank)") }
        return r
      }
      let out: Tensor
      switch n.opType {
      case "Add": out = try input(0) + input(1)
      case "Sub": out = try input(0) - input(1)
      case "Mul": out = try input(0) * input(1)
      case "Div":
        let (a, b) = (try input(0), try input(1))
        // Integer division truncates in ONNX (shape arithmetic); torch's `/` would give floats.
        // Int64.min / -1 overflows: it wraps (the reporting forms never trap).
        out = a.dtype.isFloatingPoint ? try a / b : try Self.integerOp(a, b) { $1 == 0 ? 0 : $0.dividedReportingOverflow(by: $1).partialValue }
      case "Mod":
        let (a, b) = (try input(0), try input(1))
        guard !a.dtype.isFloatingPoint else { throw ExportError.unsupported("\(path): floating-point Mod is not supported") }
        let fmod = (attr("fmod")?.i ?? 0) == 1
        out = try Self.integerOp(a, b) { x, y in
          guard y != 0 else { return 0 }
          let r = x.remainderReportingOverflow(dividingBy: y).partialValue  // Int64.min % -1 is 0
          return fmod || r == 0 || (r < 0) == (y < 0) ? r : r + y
        }
      case "Max": out = try input(0).maximum(try input(1))
      case "Min": out = try input(0).minimum(try input(1))
      case "Exp": out = try input(0).exp()
      case "Neg": out = try input(0).neg()
      case "Pow": out = try input(0).pow(try input(1))
      case "Shape":
        out = try Tensor(try input(0).shape.map(Int64.init), shape: [try input(0).shape.count])
      case "Unsqueeze", "Squeeze":
        let x = try input(0)
        let rank = x.shape.count + (n.opType == "Unsqueeze" ? 1 : 0)
        var axes = try ints("axes") ?? (n.input.count > 1 ? try input(1).toArray(Int64.self).map(Int.init) : [])
        if axes.isEmpty && n.opType == "Squeeze" { axes = x.shape.indices.filter { x.shape[$0] == 1 } }
        axes = axes.map { $0 < 0 ? $0 + rank : $0 }
        var y = x
        if n.opType == "Unsqueeze" { for a in axes.sorted() { y = try y.unsqueeze(a) } }
        else { for a in axes.sorted(by: >) { y = try y.squeeze(a) } }
        out = y
      case "Concat":
        let parts = try (0..<n.input.count).map { try input($0) }
        out = try Tensor.cat(parts, dim: Int(attr("axis")?.i ?? 0))
      case "ArgMax":
        let axis = Int(attr("axis")?.i ?? 0), keep = (attr("keepdims")?.i ?? 1) == 1
        guard (attr("select_last_index")?.i ?? 0) == 0 else { throw ExportError.unsupported("\(path): ArgMax with select_last_index") }
        out = try input(0).argmax(dim: axis, keepDim: keep)
      case "GatherElements":
        out = try input(0).gather(dim: Int(attr("axis")?.i ?? 0), index: try input(1))
      case "Slice":
        let x = try input(0)
        let starts = try input(1).toArray(Int64.self), ends = try input(2).toArray(Int64.self)
        let axes = n.input.count > 3 && !n.input[3].isEmpty ? try input(3).toArray(Int64.self) : (0..<Int64(starts.count)).map { $0 }
        let steps = n.input.count > 4 && !n.input[4].isEmpty ? try input(4).toArray(Int64.self) : starts.map { _ in 1 }
        guard ends.count == starts.count, axes.count == starts.count, steps.count == starts.count else {
          throw bad("has \(starts.count) starts, \(ends.count) ends, \(axes.count) axes and \(steps.count) steps (one each per sliced axis)")
        }
        var y = x
        for k in starts.indices {
          let axis = try checkedAxis(Int(axes[k]), rank: x.shape.count), size = Int64(x.shape[axis])
          guard steps[k] > 0 else { throw ExportError.unsupported("\(path): Slice with a negative step (node \(n.name))") }
          func clampIndex(_ v: Int64) -> Int { Int(max(0, min(size, v < 0 ? v + size : v))) }
          y = try y.slice(dim: axis, start: clampIndex(starts[k]), end: clampIndex(ends[k]), step: Int(steps[k]))
        }
        out = y
      case "Cast":
        let to: [Int64: DType] = [1: .float32, 6: .int32, 7: .int64, 9: .bool, 10: .float16, 11: .float64, 16: .bfloat16]
        guard let t = to[attr("to")?.i ?? 0] else { throw ExportError.unsupported("\(path): Cast to ONNX type \(attr("to")?.i ?? 0)") }
        out = try input(0).to(t)
      case "Expand":
        let x = try input(0), target = try input(1).toArray(Int64.self).map(Int.init)
        // Bidirectional broadcast of the two shapes (aligned right; 1 stretches).
        let rank = max(x.shape.count, target.count)
        let a = Array(repeating: 1, count: rank - x.shape.count) + x.shape, b = Array(repeating: 1, count: rank - target.count) + target
        out = try x.reshape(a).expand(zip(a, b).map { $0 == 1 ? $1 : $0 })
      case "Tile":
        // torch's repeat tiles the same way, and refuses what it cannot allocate.
        let x = try input(0), repeats = try input(1).toArray(Int64.self).map(Int.init)
        guard repeats.count == x.shape.count, repeats.allSatisfy({ $0 >= 0 }) else {
          throw bad("has repeats \(repeats) for a tensor of rank \(x.shape.count) (one non-negative count per axis)")
        }
        out = try x.repeated(repeats)
      case "ConstantOfShape":
        let shape = try input(0).toArray(Int64.self).map(Int.init)
        var value = try Tensor.scalar(Float(0))
        if let v = attr("value"), v.hasT {
          value = try Self.tensor(v.t, model: path).reshape([])
        }
        out = try value.expand(shape).contiguous()
      case "Gemm":
        var a = try input(0), b = try input(1)
        if (attr("transA")?.i ?? 0) == 1 { a = try a.transpose(0, 1) }
        if (attr("transB")?.i ?? 0) == 1 { b = try b.transpose(0, 1) }
        var y = try a.matmul(b) * Double(attr("alpha")?.f ?? 1)
        if n.input.count > 2 && !n.input[2].isEmpty { y = try y + (try input(2) * Double(attr("beta")?.f ?? 1)) }
        out = y
      case "ReduceL2":
        let x = try input(0)
        let axes = try ints("axes") ?? (n.input.count > 1 ? try input(1).toArray(Int64.self).map(Int.init) : Array(0..<x.shape.count))
        out = try (x * x).sum(dims: axes, keepDim: (attr("keepdims")?.i ?? 1) == 1).sqrt()
      case "Clip":
        let x = try input(0)
        let lo = n.input.count > 1 && !n.input[1].isEmpty ? try input(1).item() : nil
        let hi = n.input.count > 2 && !n.input[2].isEmpty ? try input(2).item() : nil
        out = try x.clamp(min: lo, max: hi)
      case "MatMul": out = try input(0).matmul(try input(1))
      case "Sqrt": out = try input(0).sqrt()
      case "Tanh": out = try input(0).tanh()
      case "Erf": out = try input(0).erf()
      case "Sigmoid": out = try input(0).sigmoid()
      case "Relu": out = try input(0).relu()
      case "Identity": out = try input(0)
      case "Softmax": out = try F.softmax(try input(0), dim: Int(attr("axis")?.i ?? -1))
      case "Transpose": out = try input(0).permute(ints("perm") ?? Array((0..<input(0).shape.count).reversed()))
      case "Reshape":
        let x = try input(0)
        // ONNX: 0 copies the input's dimension (allowzero unset), -1 is inferred.
        let target = try input(1).toArray(Int64.self).enumerated().map { i, d in
          guard d != 0 else {
            guard i < x.shape.count else { throw bad("copies dimension \(i) (a 0 in the shape) of a tensor of rank \(x.shape.count)") }
            return x.shape[i]
          }
          return Int(d)
        }
        out = try x.reshape(target)
      case "Conv":
        let k = ints("strides") ?? [1, 1], p = ints("pads") ?? [0, 0, 0, 0], d = ints("dilations") ?? [1, 1]
        guard k.count == 2, d.count == 2 else { throw bad("has strides \(k) and dilations \(d); a 2-D convolution needs 2 of each") }
        guard p.count == 4, p[0] == p[2], p[1] == p[3] else { throw ExportError.unsupported("\(path): node \(n.name) has asymmetric padding") }
        out = try F.conv2d(try input(0), try input(1), n.input.count > 2 ? try input(2) : nil, stride: (k[0], k[1]),
                           padding: (p[0], p[1]), dilation: (d[0], d[1]), groups: Int(attr("group")?.i ?? 1))
      case "LayerNormalization":
        let x = try input(0)
        let first = try checkedAxis(Int(attr("axis")?.i ?? -1), rank: x.shape.count)
        out = try F.layerNorm(x, shape: Array(x.shape[first...]), weight: try input(1), bias: n.input.count > 2 ? try input(2) : nil,
                              eps: Double(attr("epsilon")?.f ?? 1e-5))
      case "ReduceMean", "ReduceSum":
        let x = try input(0)
        let axes = try ints("axes") ?? (n.input.count > 1 ? try input(1).toArray(Int64.self).map(Int.init) : Array(0..<x.shape.count))
        let keep = (attr("keepdims")?.i ?? 1) == 1
        out = n.opType == "ReduceMean" ? try x.mean(dims: axes, keepDim: keep) : try x.sum(dims: axes, keepDim: keep)
      case "Gather":
        let x = try input(0), idx = try input(1)
        let dim = try checkedAxis(Int(attr("axis")?.i ?? 0), rank: x.shape.count)
        if idx.shape.isEmpty {
          let i = try idx.item()
          guard let index = Int(exactly: i) else { throw bad("has index \(i), not an integer") }
          out = try x.select(dim: dim, index: index)
        } else if dim == 0 && x.shape.count == 2 {
          out = try F.embedding(idx, weight: x)
        } else {
          let flat = try x.indexSelect(dim: dim, index: try idx.reshape([-1]))
          out = try flat.reshape(Array(x.shape[..<dim]) + idx.shape + Array(x.shape[(dim + 1)...]))
        }
      default:
        throw ExportError.unsupported("\(path): operator \(n.opType) is not supported")
      }
      env[n.output[0]] = out
    }
    var result: [String: Tensor] = [:]
    for o in names {
      guard let t = env[o] else { throw ExportError.unsupported("\(path): output '\(o)' was never produced") }
      result[o] = t
    }
    return result
  }
}
