import Foundation
import Paths
import ZIPFoundation

/// Values ClipKit writes into a `.pth` (what `torch.load(weights_only=True)` accepts).
public indirect enum PickleOut {
  case none
  case bool(Bool)
  case int(Int)
  case float(Double)
  case string(String)
  case tensor(Tensor)
  case list([PickleOut])
  case tuple([PickleOut])
  /// A dict with string or integer keys, in order (`ordered` pickles a collections.OrderedDict).
  case dict([(PickleOut, PickleOut)], ordered: Bool)
}

/// Writes PyTorch's zip checkpoint format: `<name>/data.pkl` (pickle protocol 2), `<name>/data/<i>`
/// (raw little-endian storages), `<name>/byteorder`, `<name>/version`. Written to a temporary file
/// and renamed, so a crash never leaves a partial file under the final name.
public enum PyTorchCheckpointWriter {
  public static func write(_ root: PickleOut, to path: String) throws {
    var storages: [[UInt8]] = []
    var p: [UInt8] = [0x80, 0x02]  // PROTO 2
    func unicode(_ s: String) {
      let b = Array(s.utf8)
      p.append(0x58)  // BINUNICODE
      withUnsafeBytes(of: UInt32(b.count).littleEndian) { p += $0 }
      p += b
    }
    func int(_ v: Int) {
      if v >= 0 && v < 256 { p += [0x4B, UInt8(v)] }
      else if v >= 0 && v < 65536 { p += [0x4D, UInt8(v & 0xFF), UInt8(v >> 8)] }
      else if v >= Int(Int32.min) && v <= Int(Int32.max) { p.append(0x4A); withUnsafeBytes(of: Int32(v).littleEndian) { p += $0 } }
      else { p += [0x8A, 8]; withUnsafeBytes(of: Int64(v).littleEndian) { p += $0 } }
    }
    func global(_ module: String, _ name: String) { p.append(0x63); p += Array("\(module)\n\(name)\n".utf8) }
    func emit(_ v: PickleOut) throws {
      switch v {
      case .none: p.append(0x4E)
      case .bool(let b): p.append(b ? 0x88 : 0x89)
      case .int(let i): int(i)
      case .float(let d): p.append(0x47); withUnsafeBytes(of: d.bitPattern.bigEndian) { p += $0 }
      case .string(let s): unicode(s)
      case .list(let items):
        p.append(0x5D)  // EMPTY_LIST
        if !items.isEmpty { p.append(0x28); for i in items { try emit(i) }; p.append(0x65) }  // MARK ... APPENDS
      case .tuple(let items):
        p.append(0x28); for i in items { try emit(i) }; p.append(0x74)  // MARK ... TUPLE
      case .dict(let items, let ordered):
        if ordered { global("collections", "OrderedDict"); p += [0x29, 0x52] } else { p.append(0x7D) }  // OrderedDict() / {}
        if !items.isEmpty {
          p.append(0x28)
          for (k, v) in items { try emit(k); try emit(v) }
          p.append(0x75)  // SETITEMS
        }
      case .tensor(let t0):
        let t = try t0.detach().contiguous().to(device: .cpu)
        let key = storages.count
        storages.append(try t.bytes())
        global("torch._utils", "_rebuild_tensor_v2")
        p.append(0x28)  // MARK: args tuple
        // persistent id ('storage', torch.<Type>Storage, key, 'cpu', numel)
        p.append(0x28)
        unicode("storage")
        global("torch", storageName(t.dtype))
        unicode(String(key))
        unicode("cpu")
        int(t.count)
        p.append(0x74)
        p.append(0x51)  // BINPERSID
        int(0)  // storage offset
        p.append(0x28); for d in t.shape { int(d) }; p.append(0x74)
        var strides: [Int] = []
        var acc = 1
        for d in t.shape.reversed() { strides.insert(acc, at: 0); acc *= max(d, 1) }
        p.append(0x28); for s in strides { int(s) }; p.append(0x74)
        p.append(0x89)  // requires_grad False
        global("collections", "OrderedDict"); p += [0x29, 0x52]  // backward hooks
        p.append(0x74)  // TUPLE
        p.append(0x52)  // REDUCE
      }
    }
    try emit(root)
    p.append(0x2E)  // STOP

    let dir = path.parentPath
    try? FileManager.default.createDirectory(atPath: dir.isEmpty ? "." : dir, withIntermediateDirectories: true)
    let tmp = "\(dir.isEmpty ? "." : dir)/.\((path as NSString).lastPathComponent).tmp-\(getpid())"
    try? FileManager.default.removeItem(atPath: tmp)
    let archiveName = "archive"
    do {
      let archive = try Archive(url: URL(fileURLWithPath: tmp), accessMode: .create)
      func add(_ name: String, _ bytes: [UInt8]) throws {
        let data = Data(bytes)
        try archive.addEntry(with: "\(archiveName)/\(name)", type: .file, uncompressedSize: Int64(data.count),
                             compressionMethod: .none) { position, size in
          data.subdata(in: Int(position)..<(Int(position) + size))
        }
      }
      try add("data.pkl", p)
      try add("byteorder", Array("little".utf8))
      for (i, s) in storages.enumerated() { try add("data/\(i)", s) }
      try add("version", Array("3\n".utf8))
    } catch {
      try? FileManager.default.removeItem(atPath: tmp)
      throw CheckpointError.io(path: path, reason: "cannot write checkpoint: \(error.localizedDescription)")
    }
    // fsync then rename into place.
    let fd = open(tmp, O_RDONLY)
    if fd >= 0 { fsync(fd); close(fd) }
    guard rename(tmp, path) == 0 else {
      try? FileManager.default.removeItem(atPath: tmp)
      throw CheckpointError.io(path: path, reason: String(cString: strerror(errno)))
    }
    let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY)
    if dfd >= 0 { fsync(dfd); close(dfd) }
  }

  static func storageName(_ d: DType) -> String {
    switch d {
    case .float32: return "FloatStorage"
    case .float16: return "HalfStorage"
    case .bfloat16: return "BFloat16Storage"
    case .float64: return "DoubleStorage"
    case .int64: return "LongStorage"
    case .int32: return "IntStorage"
    case .int16: return "ShortStorage"
    case .int8: return "CharStorage"
    case .uint8: return "ByteStorage"
    case .bool: return "BoolStorage"
    }
  }
}
