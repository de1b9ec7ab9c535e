import Foundation
import Paths
import SwiftProtobuf
import Torch

// Reading and writing whole ONNX files. Past protobuf's 2 GiB limit the weights live in one
// external `<stem>_weights.bin` beside the model (TAO's rule: more than 1.9 GiB); readers get every
// tensor inline, whichever way it was stored.
enum ONNXFile {
  /// The model at `path` with external tensor data (relative to its folder) read inline.
  static func read(_ path: String) throws -> Onnx_ModelProto {
    guard let data = FileManager.default.contents(atPath: path) else { throw ExportError.io(path: path, reason: "cannot be read") }
    var model: Onnx_ModelProto
    do { model = try Onnx_ModelProto(serializedBytes: data) } catch {
      throw ExportError.io(path: path, reason: "not an ONNX model (\(error))")
    }
    let dir = path.parentPath
    var blobs: [String: Data] = [:]
    func inline(_ t: inout Onnx_TensorProto) throws {
      guard t.dataLocation == .external else { return }
      let e = Dictionary(t.externalData.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
      guard let loc = e["location"] else { throw ExportError.io(path: path, reason: "tensor \(t.name) has external data without a location") }
      let blob: Data
      if let b = blobs[loc] { blob = b } else {
        guard let d = FileManager.default.contents(atPath: dir + "/" + loc) else {
          throw ExportError.io(path: dir + "/" + loc, reason: "external weights of \(path) are missing (keep them beside the .onnx)")
        }
        blobs[loc] = d
        blob = d
      }
      let off = Int(e["offset"] ?? "0") ?? 0
      let len = Int(e["length"] ?? "") ?? (blob.count - off)
      // As remainders: offset + length can overflow for values written in the file.
      guard off >= 0, off <= blob.count, len >= 0, len <= blob.count - off else {
        throw ExportError.io(path: dir + "/" + loc, reason: "truncated (tensor \(t.name): offset \(off), length \(len), file of \(blob.count) bytes)")
      }
      t.rawData = blob.subdata(in: off..<(off + len))
      t.dataLocation = .default
      t.externalData = []
    }
    for i in model.graph.initializer.indices { try inline(&model.graph.initializer[i]) }
    for i in model.graph.node.indices where model.graph.node[i].opType == "Constant" {
      for k in model.graph.node[i].attribute.indices where model.graph.node[i].attribute[k].hasT {
        try inline(&model.graph.node[i].attribute[k].t)
      }
    }
    return model
  }

  /// Writes `model` atomically. When its initializers exceed `externalThreshold` bytes, the
  /// floating-point ones go to `<stem>_weights.bin`; small ones (shapes, axes) stay inline, since
  /// shape inference and TensorRT need their values.
  static func write(_ model: Onnx_ModelProto, to path: String, externalThreshold: Int = 1_900 * 1_048_576) throws {
    var model = model
    let url = URL(fileURLWithPath: path)
    let binName = url.deletingPathExtension().lastPathComponent + "_weights.bin"
    let binPath = url.deletingLastPathComponent().appendingPathComponent(binName).path
    var blob = Data()
    if model.graph.initializer.reduce(0, { $0 + $1.rawData.count }) > externalThreshold {
      func entry(_ k: String, _ v: String) -> Onnx_StringStringEntryProto {
        var e = Onnx_StringStringEntryProto()
        e.key = k
        e.value = v
        return e
      }
      for i in model.graph.initializer.indices {
        let t = model.graph.initializer[i]
        guard [1, 10, 16].contains(t.dataType), t.rawData.count > 64 else { continue }
        blob.append(Data(count: (64 - blob.count % 64) % 64))  // 64-byte aligned, so readers can map it
        model.graph.initializer[i].externalData = [entry("location", binName), entry("offset", String(blob.count)), entry("length", String(t.rawData.count))]
        model.graph.initializer[i].dataLocation = .external
        model.graph.initializer[i].rawData = Data()
        blob.append(t.rawData)
      }
    }
    let data: Data
    do { data = try model.serializedData() } catch {
      throw ExportError.io(path: path, reason: "the ONNX model could not be serialised (\(error))")
    }
    if !blob.isEmpty { try AtomicFile.write(binPath, data: blob) }
    try AtomicFile.write(path, data: data)
  }
}
