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
    let fileSize = Int(try checkZipBounds(path))
    let archive: Archive
    do { archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read) } catch {
      throw CheckpointError.format(path: path, reason: "corrupt or truncated zip archive")
    }
    var entries: [String: Entry] = [:]
    for e in archive { entries[e.path] = e }
    guard let (pkl, pklEntry) = entries.first(where: { $0.key.hasSuffix("/data.pkl") || $0.key == "data.pkl" }) else {
      throw CheckpointError.format(path: path, reason: "no data.pkl record")
    }
    let prefix = String(pkl.dropLast("data.pkl".count))
    if let bo = entries[prefix + "byteorder"], let order = try? extract(archive, bo, path, fileSize: fileSize), String(decoding: order, as: UTF8.self) != "little" {
      throw CheckpointError.format(path: path, reason: "big-endian checkpoints are not supported")
    }
    let pickle = try extract(archive, pklEntry, path, fileSize: fileSize)
    let u = Unpickler(data: pickle, file: path) { dtype, key, count in
      guard let e = entries[prefix + "data/" + key] else {
        throw CheckpointError.format(path: path, reason: "storage data/\(key) is missing from the archive")
      }
      // The element count is the pickle's: its byte size can overflow.
      let (need, overflow) = count.multipliedReportingOverflow(by: dtype.itemSize)
      guard !overflow else {
        throw CheckpointError.format(path: path, reason: "storage data/\(key) claims \(count) elements of \(dtype), more bytes than a 64-bit size holds")
      }
      let bytes = try extract(archive, e, path, fileSize: fileSize)
      guard bytes.count >= need else {
        throw CheckpointError.format(path: path, reason: "storage data/\(key) holds \(bytes.count) bytes, needs \(need)")
      }
      return try bytes.withUnsafeBytes { raw in
        try Tensor(bytes: UnsafeRawBufferPointer(rebasing: raw[0..<need]), shape: [count], dtype: dtype)
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

  static func extract(_ archive: Archive, _ e: Entry, _ path: String, fileSize: Int) throws -> [UInt8] {
    // checkZipBounds keeps declared sizes within Int and stored (uncompressed) entries within the
    // file; a compressed entry's declared size is only reserved up to its compressed size.
    guard e.uncompressedSize <= UInt64(Int.max) else {
      throw CheckpointError.format(path: path, reason: "\(e.path) declares \(e.uncompressedSize) bytes, more than a 64-bit size holds")
    }
    let declared = Int(e.uncompressedSize)
    var out: [UInt8] = []
    // Sizes in the local header can still claim more than the file holds: reserve no more than
    // the file's own size (a stored entry cannot be larger; a deflated one grows by appending).
    out.reserveCapacity(min(e.isCompressed ? min(declared, Int(clamping: e.compressedSize)) : declared, fileSize))
    struct Oversized: Error {}
    do {
      _ = try archive.extract(e, skipCRC32: false) { chunk in
        // More data than the entry declares: stop before it grows without bound.
        guard chunk.count <= declared - out.count else { throw Oversized() }
        out.append(contentsOf: chunk)
      }
    } catch {
      throw CheckpointError.format(path: path, reason: "cannot read \(e.path) (truncated or corrupt archive)")
    }
    return out
  }

  /// ZIPFoundation converts an archive's 64-bit (Zip64) offsets and sizes to signed integers and
  /// adds them unchecked, so a crafted central directory would trap inside it. This reads the end
  /// record and the central directory the way ZIPFoundation will, and refuses any entry whose
  /// offset or size does not fit in the file, before ZIPFoundation sees it. Returns the file's size.
  @discardableResult
  static func checkZipBounds(_ path: String) throws -> UInt64 {
    guard let h = FileHandle(forReadingAtPath: path) else { throw CheckpointError.io(path: path, reason: "cannot read file") }
    defer { try? h.close() }
    func bad(_ r: String) -> CheckpointError { .format(path: path, reason: "corrupt zip archive: \(r)") }
    let fileSize = try h.seekToEnd()
    func read(_ at: UInt64, _ n: Int) -> [UInt8]? {
      guard at <= fileSize, UInt64(n) <= fileSize - at, (try? h.seek(toOffset: at)) != nil,
            let d = try? h.read(upToCount: n), d.count == n else { return nil }
      return [UInt8](d)
    }
    func u16(_ b: [UInt8], _ o: Int) -> UInt64 { UInt64(b[o]) | UInt64(b[o + 1]) << 8 }
    func u32(_ b: [UInt8], _ o: Int) -> UInt64 { u16(b, o) | u16(b, o + 2) << 16 }
    func u64(_ b: [UInt8], _ o: Int) -> UInt64 { u32(b, o) | u32(b, o + 4) << 32 }
    func signature(_ b: [UInt8], _ o: Int, _ sig: UInt64) -> Bool { o >= 0 && o + 4 <= b.count && u32(b, o) == sig }
    // The end record lies within its 22 bytes plus a comment of at most 65535 bytes of the end.
    let tailLength = Int(min(fileSize, 22 + 65535))
    guard let tail = read(fileSize - UInt64(tailLength), tailLength),
          let at = stride(from: tailLength - 22, through: 0, by: -1).first(where: { signature(tail, $0, 0x0605_4B50) }) else {
      throw bad("no end of central directory record")
    }
    let eocd = fileSize - UInt64(tailLength - at)
    var entries = u16(tail, at + 10), directory = u32(tail, at + 16)
    // Zip64: the locator right before the end record, the Zip64 record right before the locator.
    if eocd >= 76, let locator = read(eocd - 20, 20), signature(locator, 0, 0x0706_4B50),
       let record = read(eocd - 76, 56), signature(record, 0, 0x0606_4B50) {
      entries = u64(record, 32)
      directory = u64(record, 48)
    }
    guard directory <= fileSize else { throw bad("the central directory offset \(directory) is past the end of the file (\(fileSize) bytes)") }
    var p = directory
    var index: UInt64 = 0
    while index < entries, let cd = read(p, 46), signature(cd, 0, 0x0201_4B50) {
      let nameLength = Int(u16(cd, 28)), extraLength = Int(u16(cd, 30)), commentLength = Int(u16(cd, 32))
      guard let rest = read(p + 46, nameLength + extraLength) else { break }
      let name = String(decoding: rest[..<nameLength], as: UTF8.self)
      var uncompressed = u32(cd, 24), compressed = u32(cd, 20), offset = u32(cd, 42)
      // The Zip64 extra field holds, in this order, the values whose 32-bit fields are all ones.
      var e = nameLength
      while e + 4 <= rest.count {
        let id = u16(rest, e), size = Int(u16(rest, e + 2))
        if id == 1 {
          var q = e + 4
          func next(_ v: inout UInt64) { if v == 0xFFFF_FFFF && q + 8 <= e + 4 + size && q + 8 <= rest.count { v = u64(rest, q); q += 8 } }
          next(&uncompressed); next(&compressed); next(&offset)
        }
        e += 4 + size
      }
      let stored = u16(cd, 10) == 0
      guard offset <= fileSize, 30 <= fileSize - offset, compressed <= fileSize,
            stored ? uncompressed <= fileSize : uncompressed <= UInt64(Int64.max) else {
        throw bad("entry \(name) declares offset \(offset), \(compressed) compressed and \(uncompressed) uncompressed bytes, which do not fit in a file of \(fileSize) bytes")
      }
      p += 46 + UInt64(nameLength + extraLength + commentLength)
      index += 1
    }
    return fileSize
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
