import Foundation
import ZIPFoundation

/// PyTorch's `torch.save` format: a zip archive (entries stored under one top folder) holding
/// `data.pkl` (the pickled object) and `data/<key>` (raw little-endian storage bytes). Read with
/// the restricted unpickler; nothing in the file is executed.
public struct PyTorchCheckpoint {
  public let root: PickleValue
  public let path: String

  public static func read(_ path: String) throws -> PyTorchCheckpoint {
    guard FileManager.default.fileExists(atPath: path) else {
      throw CheckpointError.io(path: path, reason: "no such file")
    }
    guard let head = FileHandle(forReadingAtPath: path)?.readData(ofLength: 4), head.count == 4 else {
      throw CheckpointError.io(path: path, reason: "cannot read file")
    }
    guard head.elementsEqual([0x50, 0x4B, 0x03, 0x04]) else {
      throw CheckpointError.format(path: path, reason: "not a zip-format PyTorch checkpoint (legacy pre-1.6 pickles and TorchScript archives are not read)")
    }
    let archive: Archive
    do { archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read) } catch {
      throw CheckpointError.format(path: path, reason: "corrupt or truncated zip archive")
    }
    var entries: [String: Entry] = [:]
    for e in archive { entries[e.path] = e }
    guard let pkl = entries.keys.first(where: { $0.hasSuffix("/data.pkl") || $0 == "data.pkl" }) else {
      throw CheckpointError.format(path: path, reason: "no data.pkl record")
    }
    let prefix = String(pkl.dropLast("data.pkl".count))
    if let bo = entries[prefix + "byteorder"], let order = try? extract(archive, bo, path), String(decoding: order, as: UTF8.self) != "little" {
      throw CheckpointError.format(path: path, reason: "big-endian checkpoints are not supported")
    }
    let pickle = try extract(archive, entries[pkl]!, path)
    let u = Unpickler(data: pickle, file: path) { dtype, key, count in
      guard let e = entries[prefix + "data/" + key] else {
        throw CheckpointError.format(path: path, reason: "storage data/\(key) is missing from the archive")
      }
      let bytes = try extract(archive, e, path)
      guard bytes.count >= count * dtype.itemSize else {
        throw CheckpointError.format(path: path, reason: "storage data/\(key) holds \(bytes.count) bytes, needs \(count * dtype.itemSize)")
      }
      return try bytes.withUnsafeBytes { raw in
        try Tensor(bytes: UnsafeRawBufferPointer(rebasing: raw[0..<(count * dtype.itemSize)]), shape: [count], dtype: dtype)
      }
    }
    return PyTorchCheckpoint(root: try u.run(), path: path)
  }

  /// The restricted unpickler on raw pickle bytes (a `data.pkl` record); `storage` supplies each
  /// storage the pickle names as a 1-D tensor of (dtype, key, element count).
  public static func unpickle(_ bytes: [UInt8], file: String,
                              storage: @escaping (DType, String, Int) throws -> Tensor) throws -> PickleValue {
    try Unpickler(data: bytes, file: file, loadStorage: storage).run()
  }

  static func extract(_ archive: Archive, _ e: Entry, _ path: String) throws -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(Int(e.uncompressedSize))
    do {
      _ = try archive.extract(e, skipCRC32: false) { out.append(contentsOf: $0) }
    } catch {
      throw CheckpointError.format(path: path, reason: "cannot read \(e.path) (truncated or corrupt archive)")
    }
    return out
  }

  /// The tensors of the checkpoint's state dict: the top-level dict itself when it maps names to
  /// tensors, or its `state_dict` / `model` / `module` entry.
  public var tensors: [String: Tensor] {
    get throws {
      func flat(_ d: PickleDict) -> [String: Tensor]? {
        var out: [String: Tensor] = [:]
        for (k, v) in d.items {
          guard case .string(let name) = k else { return nil }
          if case .tensor(let t) = v { out[name] = t }
        }
        return out.isEmpty ? nil : out
      }
      guard case .dict(let top) = root else { throw CheckpointError.format(path: path, reason: "top-level object is not a dict") }
      for key in ["state_dict", "model", "module"] {
        if case .dict(let d)? = top[key], let t = flat(d) { return t }
      }
      if let t = flat(top) { return t }
      throw CheckpointError.format(path: path, reason: "no state dict of tensors found")
    }
  }
}

public enum CheckpointError: Error, LocalizedError {
  case io(path: String, reason: String)
  case format(path: String, reason: String)

  public var errorDescription: String? {
    switch self {
    case .io(let p, let r): return "\(p): \(r)"
    case .format(let p, let r): return "\(p): \(r)"
    }
  }
}
