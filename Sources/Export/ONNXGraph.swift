import Foundation
import SwiftProtobuf
import Torch

// An ONNX graph written node by node from a model's weights. Models describe their forward pass
// with the layer helpers below; `write` serialises the model with the protobuf messages generated
// from Proto/onnx-subset.proto. Weights live in the graph as initializers (little-endian raw
// data) or, past the protobuf size limit, in one external `<stem>_weights.bin` beside it.

public enum ExportError: Error, LocalizedError {
  case exists(String)
  case io(path: String, reason: String)
  case unsupported(String)

  public var errorDescription: String? {
    switch self {
    case .exists(let p): return "\(p) already exists; export never overwrites (remove it or choose another export.onnx_file)"
    case .io(let p, let r): return "\(p): \(r)"
    case .unsupported(let m): return m
    }
  }
}

/// A tensor dimension in a graph input/output signature.
public enum ONNXDim: Sendable, Equatable {
  case fixed(Int)
  case symbolic(String)
}

public enum ONNXElement: Int32, Sendable {
  case float = 1
  case int64 = 7
}

public final class ONNXGraph {
  private var nodes: [Onnx_NodeProto] = []
  private var initializers: [(name: String, shape: [Int], type: ONNXElement, bytes: [UInt8])] = []
  private var inputs: [Onnx_ValueInfoProto] = []
  private var outputs: [Onnx_ValueInfoProto] = []
  private var counter = 0
  public let name: String
  /// The opset the graph is written for; layers pick their operators by it.
  public let opset: Int

  public init(name: String, opset: Int = 17) {
    self.name = name
    self.opset = opset
  }

  /// Total bytes of all weights.
  public var weightBytes: Int { initializers.reduce(0) { $0 + $1.bytes.count } }

  private func fresh(_ hint: String) -> String {
    counter += 1
    return "\(hint)_\(counter)"
  }

  // MARK: signature

  public func input(_ name: String, _ type: ONNXElement, _ dims: [ONNXDim]) -> String {
    inputs.append(Self.valueInfo(name, type, dims))
    return name
  }

  /// Marks `value` as a graph output named `name` (through an Identity when the names differ).
  public func output(_ value: String, as name: String, _ type: ONNXElement, _ dims: [ONNXDim]) {
    if value != name { nodes.append(Self.node("Identity", [value], [name], name: name)) }
    outputs.append(Self.valueInfo(name, type, dims))
  }

  private static func valueInfo(_ name: String, _ type: ONNXElement, _ dims: [ONNXDim]) -> Onnx_ValueInfoProto {
    var v = Onnx_ValueInfoProto()
    v.name = name
    var t = Onnx_TypeProto.Tensor()
    t.elemType = type.rawValue
    var shape = Onnx_TensorShapeProto()
    shape.dim = dims.map { d in
      var x = Onnx_TensorShapeProto.Dimension()
      switch d {
      case .fixed(let n): x.dimValue = Int64(n)
      case .symbolic(let s): x.dimParam = s
      }
      return x
    }
    t.shape = shape
    v.type.tensorType = t
    return v
  }

  // MARK: constants

  /// A float32 weight; `name` is kept (the checkpoint key) so the graph reads like the model.
  @discardableResult
  public func weight(_ name: String, _ t: Tensor) throws -> String {
    let f = try t.to(.float32, device: .cpu).contiguous()
    initializers.append((name, f.shape, .float, try f.bytes()))
    return name
  }

  public func int64s(_ values: [Int64], shape: [Int]? = nil, hint: String = "const") -> String {
    let name = fresh(hint)
    let bytes = values.withUnsafeBytes { [UInt8]($0) }
    initializers.append((name, shape ?? [values.count], .int64, bytes))
    return name
  }

  public func float(_ value: Float, hint: String = "const") -> String {
    let name = fresh(hint)
    initializers.append((name, [], .float, withUnsafeBytes(of: value) { [UInt8]($0) }))
    return name
  }

  // MARK: nodes

  public enum Attribute {
    case int(String, Int)
    case float(String, Float)
    case ints(String, [Int])
  }

  private static func node(_ op: String, _ inputs: [String], _ outputs: [String], name: String,
                           attributes: [Attribute] = []) -> Onnx_NodeProto {
    var n = Onnx_NodeProto()
    n.opType = op
    n.input = inputs
    n.output = outputs
    n.name = name
    n.attribute = attributes.map { a in
      var p = Onnx_AttributeProto()
      switch a {
      case .int(let k, let v): p.name = k; p.i = Int64(v); p.type = .int
      case .float(let k, let v): p.name = k; p.f = v; p.type = .float
      case .ints(let k, let v): p.name = k; p.ints = v.map(Int64.init); p.type = .ints
      }
      return p
    }
    return n
  }

  /// Appends one node and returns the name of its (single) output.
  @discardableResult
  public func op(_ op: String, _ inputs: [String], _ attributes: [Attribute] = [], hint: String? = nil) -> String {
    let out = fresh(hint ?? op)
    nodes.append(Self.node(op, inputs, [out], name: out, attributes: attributes))
    return out
  }

  // MARK: writing

  /// Writes the model. Weights go inline unless they exceed `externalThreshold` bytes, in which
  /// case the float weights go to `<stem>_weights.bin` beside `path` (TAO's rule for >1.9 GiB models).
  /// (operator, output name) of every node so far, in graph order: export.verbose prints them.
  public var nodeList: [(op: String, name: String)] { nodes.map { ($0.opType, $0.name) } }

  public func write(to path: String, producerVersion: String,
                    externalThreshold: Int = 1_900 * 1_048_576) throws {
    var graph = Onnx_GraphProto()
    graph.name = name
    graph.node = nodes
    graph.input = inputs
    graph.output = outputs
    graph.initializer = initializers.map { i in
      var t = Onnx_TensorProto()
      t.name = i.name
      t.dims = i.shape.map(Int64.init)
      t.dataType = i.type.rawValue
      t.rawData = Data(i.bytes)
      return t
    }
    var model = Onnx_ModelProto()
    model.irVersion = 8
    model.producerName = "clipkit"
    model.producerVersion = producerVersion
    var ops = Onnx_OperatorSetIdProto()
    ops.domain = ""
    ops.version = Int64(opset)
    model.opsetImport = [ops]
    model.graph = graph
    try ONNXFile.write(model, to: path, externalThreshold: externalThreshold)
  }
}
