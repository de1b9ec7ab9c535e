import Foundation

/// Reads the graph inputs (name and dimensions) of an ONNX model by walking its protobuf
/// encoding: ModelProto.graph (7) → GraphProto.input (11) → ValueInfoProto{name (1), type (2)} →
/// TypeProto.tensor_type (1) → shape (2) → dim (1) → dim_value (1) | dim_param (2).
/// Initializers listed as inputs (old exporters) are skipped.
public enum ONNXInputs {
  public enum Dim: Equatable, Sendable, CustomStringConvertible {
    case fixed(Int)
    case symbolic(String)
    public var description: String {
      switch self { case .fixed(let n): return String(n); case .symbolic(let s): return s }
    }
  }
  public struct Input: Equatable, Sendable {
    public var name: String
    public var dims: [Dim]
  }

  public static func read(_ path: String) throws -> [Input] {
    guard let data = FileManager.default.contents(atPath: path) else { throw DeployError.input("\(path): cannot read the ONNX file") }
    let bytes = [UInt8](data)
    guard let graph = try fields(bytes, path).first(where: { $0.0 == 7 })?.1 else {
      throw DeployError.input("\(path): not an ONNX model (no graph)")
    }
    let g = try fields(graph, path)
    let initializers = Set(try g.filter { $0.0 == 5 }.compactMap { try fields($0.1, path).first { $0.0 == 8 }.map { String(decoding: $0.1, as: UTF8.self) } })
    var out: [Input] = []
    for (f, value) in g where f == 11 {
      let vi = try fields(value, path)
      guard let name = vi.first(where: { $0.0 == 1 }).map({ String(decoding: $0.1, as: UTF8.self) }), !initializers.contains(name) else { continue }
      var dims: [Dim] = []
      if let type = vi.first(where: { $0.0 == 2 })?.1, let tensor = try fields(type, path).first(where: { $0.0 == 1 })?.1,
         let shape = try fields(tensor, path).first(where: { $0.0 == 2 })?.1 {
        for (df, dim) in try fields(shape, path) where df == 1 {
          let d = try fields(dim, path)
          if let v = d.first(where: { $0.0 == 1 }) {
            // int64 on the wire: a negative dim_value is a ten-byte varint past Int.max.
            let n = Int64(bitPattern: varintValue(v.1))
            guard n >= 0 else { throw DeployError.input("\(path): input '\(name)' has a negative dimension (dim_value \(n))") }
            dims.append(.fixed(Int(n)))
          }
          else if let p = d.first(where: { $0.0 == 2 }) { dims.append(.symbolic(String(decoding: p.1, as: UTF8.self))) }
          else { dims.append(.symbolic("?")) }
        }
      }
      out.append(Input(name: name, dims: dims))
    }
    return out
  }

  /// (field number, payload) pairs of one message; varints are returned as their raw bytes.
  static func fields(_ b: [UInt8], _ path: String) throws -> [(Int, [UInt8])] {
    var out: [(Int, [UInt8])] = []
    var p = 0
    func varint() throws -> UInt64 {
      var v: UInt64 = 0, shift: UInt64 = 0
      while true {
        guard p < b.count, shift < 64 else { throw DeployError.input("\(path): malformed protobuf") }
        let x = b[p]; p += 1
        v |= UInt64(x & 0x7F) << shift
        if x & 0x80 == 0 { return v }
        shift += 7
      }
    }
    while p < b.count {
      let key = try varint()
      let field = Int(key >> 3)
      switch key & 7 {
      case 0:
        let start = p
        _ = try varint()
        out.append((field, Array(b[start..<p])))
      case 1: guard p + 8 <= b.count else { throw DeployError.input("\(path): malformed protobuf") }; p += 8
      case 5: guard p + 4 <= b.count else { throw DeployError.input("\(path): malformed protobuf") }; p += 4
      case 2:
        // Compared before any conversion: a length past the data may be past Int.max too.
        let length = try varint()
        guard length <= UInt64(b.count - p) else { throw DeployError.input("\(path): malformed protobuf (truncated file?)") }
        let n = Int(length)
        out.append((field, Array(b[p..<(p + n)])))
        p += n
      default: throw DeployError.input("\(path): malformed protobuf (wire type \(key & 7))")
      }
    }
    return out
  }

  static func varintValue(_ raw: [UInt8]) -> UInt64 {
    var v: UInt64 = 0
    for (i, x) in raw.enumerated() { v |= UInt64(x & 0x7F) << (7 * UInt64(i)) }
    return v
  }
}

public enum DeployError: Error, LocalizedError {
  case input(String)
  public var errorDescription: String? { if case .input(let m) = self { return m }; return nil }
}
