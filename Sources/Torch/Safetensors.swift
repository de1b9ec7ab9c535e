import Foundation
import Paths

// The safetensors format: [u64 little-endian header length N][N bytes of JSON header][data].
// The header maps names to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the
// data section) plus an optional "__metadata__" string map. Reading validates everything the
// reference implementation validates: header size, dtype, offsets in bounds, byte counts equal to
// shape × item size, and no overlapping or uncovered bytes.

public enum SafetensorsError: Error, LocalizedError {
  case io(path: String, reason: String)
  case format(path: String, reason: String)
  case tensor(path: String, key: String, reason: String)
  case missingShard(index: String, key: String, file: String)

  public var errorDescription: String? {
    switch self {
    case .io(let p, let r): return "\(p): \(r)"
    case .format(let p, let r): return "\(p): not a valid safetensors file: \(r)"
    case .tensor(let p, let k, let r): return "\(p): tensor '\(k)': \(r)"
    case .missingShard(let i, let k, let f): return "\(i): tensor '\(k)' maps to \(f), which does not exist"
    }
  }
}

public struct SafetensorsFile {
  public var tensors: [(String, Tensor)]
  public var metadata: [String: String]
  public var dictionary: [String: Tensor] { Dictionary(tensors, uniquingKeysWith: { a, _ in a }) }
}

public enum Safetensors {
  static let dtypeNames: [String: DType] = [
    "F32": .float32, "F16": .float16, "BF16": .bfloat16, "F64": .float64, "I64": .int64,
    "I32": .int32, "I16": .int16, "I8": .int8, "U8": .uint8, "BOOL": .bool,
  ]
  static func name(of d: DType) -> String { dtypeNames.first { $0.value == d }!.key }

  /// Reads every tensor of one `.safetensors` file.
  public static func read(_ path: String) throws -> SafetensorsFile {
    let data: Data
    do {
      data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
    } catch {
      throw SafetensorsError.io(path: path, reason: (error as NSError).localizedFailureReason ?? "cannot read file")
    }
    guard data.count >= 8 else { throw SafetensorsError.format(path: path, reason: "file is \(data.count) bytes, shorter than the 8-byte header length") }
    let n = data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self).littleEndian }
    guard n <= 100_000_000 else { throw SafetensorsError.format(path: path, reason: "header length \(n) exceeds 100 MB") }
    guard 8 + Int(n) <= data.count else {
      throw SafetensorsError.format(path: path, reason: "header length \(n) runs past the end of the \(data.count)-byte file (truncated?)")
    }
    let headerData = data.subdata(in: 8..<(8 + Int(n)))
    guard let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any] else {
      throw SafetensorsError.format(path: path, reason: "header is not a JSON object")
    }
    let dataStart = 8 + Int(n)
    let bufferSize = data.count - dataStart
    var metadata: [String: String] = [:]
    struct Entry { let key: String; let dtype: DType; let shape: [Int]; let begin: Int; let end: Int }
    var entries: [Entry] = []
    for (key, value) in header {
      if key == "__metadata__" {
        guard let m = value as? [String: Any] else { throw SafetensorsError.format(path: path, reason: "__metadata__ is not an object") }
        for (k, v) in m {
          guard let s = v as? String else { throw SafetensorsError.format(path: path, reason: "__metadata__ value for '\(k)' is not a string") }
          metadata[k] = s
        }
        continue
      }
      guard let info = value as? [String: Any] else { throw SafetensorsError.tensor(path: path, key: key, reason: "entry is not an object") }
      guard let dt = info["dtype"] as? String else { throw SafetensorsError.tensor(path: path, key: key, reason: "no dtype") }
      guard let dtype = dtypeNames[dt] else { throw SafetensorsError.tensor(path: path, key: key, reason: "unsupported dtype \(dt)") }
      guard let shapeAny = info["shape"] as? [Any], let shape = intList(shapeAny), shape.allSatisfy({ $0 >= 0 }) else {
        throw SafetensorsError.tensor(path: path, key: key, reason: "shape is not a list of non-negative integers")
      }
      guard let offAny = info["data_offsets"] as? [Any], let off = intList(offAny), off.count == 2, off[0] >= 0, off[0] <= off[1] else {
        throw SafetensorsError.tensor(path: path, key: key, reason: "data_offsets is not [begin, end]")
      }
      guard off[1] <= bufferSize else {
        throw SafetensorsError.tensor(path: path, key: key, reason: "data_offsets \(off) run past the \(bufferSize)-byte data section (truncated file?)")
      }
      let (numel, overflow) = shape.reduce((1, false)) { acc, d in
        let (m, o) = acc.0.multipliedReportingOverflow(by: d)
        return (m, acc.1 || o)
      }
      let bytes = numel.multipliedReportingOverflow(by: dtype.itemSize)
      guard !overflow, !bytes.overflow, bytes.partialValue == off[1] - off[0] else {
        // The shape comes from the file: its byte count is only printed when it has one.
        let needs = overflow || bytes.overflow ? "more bytes than a 64-bit size holds" : "\(bytes.partialValue)"
        throw SafetensorsError.tensor(path: path, key: key, reason: "holds \(off[1] - off[0]) bytes but shape \(shape) of \(dt) needs \(needs)")
      }
      entries.append(Entry(key: key, dtype: dtype, shape: shape, begin: off[0], end: off[1]))
    }
    // Contiguous, non-overlapping coverage of the data section.
    var expected = 0
    for e in entries.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
      guard e.begin == expected else {
        throw SafetensorsError.format(path: path, reason: e.begin < expected ? "tensor '\(e.key)' overlaps another" : "gap before tensor '\(e.key)'")
      }
      expected = e.end
    }
    guard expected == bufferSize else {
      throw SafetensorsError.format(path: path, reason: "data section is \(bufferSize) bytes but tensors cover \(expected)")
    }
    var tensors: [(String, Tensor)] = []
    tensors.reserveCapacity(entries.count)
    try data.withUnsafeBytes { raw in
      for e in entries.sorted(by: { $0.begin < $1.begin }) {
        let slice = UnsafeRawBufferPointer(rebasing: raw[(dataStart + e.begin)..<(dataStart + e.end)])
        tensors.append((e.key, try Tensor(bytes: slice, shape: e.shape, dtype: e.dtype)))
      }
    }
    return SafetensorsFile(tensors: tensors, metadata: metadata)
  }

  /// Reads a sharded checkpoint through its `*.safetensors.index.json` weight map.
  public static func readSharded(index path: String) throws -> SafetensorsFile {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw SafetensorsError.io(path: path, reason: "cannot read file")
    }
    guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
          let map = obj["weight_map"] as? [String: String] else {
      throw SafetensorsError.format(path: path, reason: "index has no weight_map object")
    }
    let dir = path.parentPath
    var byFile: [String: [String]] = [:]
    for (k, f) in map { byFile[f, default: []].append(k) }
    var out: [(String, Tensor)] = []
    var metadata: [String: String] = [:]
    for file in byFile.keys.sorted() {
      let full = (dir as NSString).appendingPathComponent(file)
      guard FileManager.default.fileExists(atPath: full) else {
        throw SafetensorsError.missingShard(index: path, key: byFile[file]!.sorted()[0], file: full)
      }
      let shard = try read(full)
      let wanted = Set(byFile[file]!)
      let have = Set(shard.tensors.map { $0.0 })
      if let absent = wanted.subtracting(have).sorted().first {
        throw SafetensorsError.tensor(path: full, key: absent, reason: "listed in \(path) but not in the shard")
      }
      out += shard.tensors.filter { wanted.contains($0.0) }
      metadata.merge(shard.metadata) { a, _ in a }
    }
    return SafetensorsFile(tensors: out, metadata: metadata)
  }

  /// Reads a `.safetensors` file, an `.index.json`, or a directory holding `model.safetensors` or
  /// `model.safetensors.index.json`.
  public static func load(_ path: String) throws -> SafetensorsFile {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
      throw SafetensorsError.io(path: path, reason: "no such file or directory")
    }
    if isDir.boolValue {
      let single = (path as NSString).appendingPathComponent("model.safetensors")
      if FileManager.default.fileExists(atPath: single) { return try read(single) }
      let index = (path as NSString).appendingPathComponent("model.safetensors.index.json")
      if FileManager.default.fileExists(atPath: index) { return try readSharded(index: index) }
      throw SafetensorsError.io(path: path, reason: "directory has neither model.safetensors nor model.safetensors.index.json")
    }
    return path.hasSuffix(".json") ? try readSharded(index: path) : try read(path)
  }

  /// Writes tensors (any device; stored as their dtype) atomically.
  public static func write(_ tensors: [(String, Tensor)], metadata: [String: String]? = nil, to path: String) throws {
    var header: [String: Any] = [:]
    if let metadata { header["__metadata__"] = metadata }
    var offset = 0
    var blobs: [[UInt8]] = []
    for (key, t) in tensors {
      guard header[key] == nil else { throw SafetensorsError.tensor(path: path, key: key, reason: "duplicate name") }
      let b = try t.bytes()
      header[key] = ["dtype": name(of: t.dtype), "shape": t.shape, "data_offsets": [offset, offset + b.count]] as [String: Any]
      offset += b.count
      blobs.append(b)
    }
    var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
    var prefix = Data(count: 8)
    prefix.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(json.count).littleEndian, as: UInt64.self) }
    try AtomicFile.write(path) { h in
      try h.write(contentsOf: prefix)
      try h.write(contentsOf: json)
      for b in blobs { try h.write(contentsOf: b) }
    }
  }

  private static func intList(_ a: [Any]) -> [Int]? {
    var out: [Int] = []
    for v in a {
      guard let n = v as? Int else { return nil }
      out.append(n)
    }
    return out
  }
}
