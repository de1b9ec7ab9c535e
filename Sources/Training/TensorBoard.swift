import Foundation

/// TensorBoard event files (`events.out.tfevents.*`): TFRecord framing (length, masked CRC-32C,
/// payload, masked CRC-32C) around hand-encoded `Event` protobufs holding scalar summaries.
public final class TensorBoardWriter {
  public let path: String
  private let handle: FileHandle

  public init(directory: String) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let host = ProcessInfo.processInfo.hostName
    path = "\(directory)/events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host).\(getpid()).0"
    FileManager.default.createFile(atPath: path, contents: nil)
    guard let h = FileHandle(forWritingAtPath: path) else {
      throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
    }
    handle = h
    var e = Proto()
    e.double(1, Date().timeIntervalSince1970)
    e.string(3, "brain.Event:2")
    try record(e.bytes)
  }
  deinit { try? handle.close() }

  /// Adds scalars at a global step.
  public func scalars(_ values: [(String, Double)], step: Int) throws {
    var summary = Proto()
    for (tag, v) in values {
      var value = Proto()
      value.string(1, tag)
      value.float(2, Float(v))
      summary.message(1, value)
    }
    var e = Proto()
    e.double(1, Date().timeIntervalSince1970)
    e.varint(2, UInt64(bitPattern: Int64(step)))
    e.message(5, summary)
    try record(e.bytes)
  }

  public func flush() throws { try handle.synchronize() }

  private func record(_ data: [UInt8]) throws {
    var out: [UInt8] = []
    withUnsafeBytes(of: UInt64(data.count).littleEndian) { out += $0 }
    let lenCRC = CRC32C.masked(out)
    withUnsafeBytes(of: lenCRC.littleEndian) { out += $0 }
    out += data
    withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { out += $0 }
    try handle.write(contentsOf: out)
  }
}

/// Minimal protobuf wire encoding for the few fields the event format needs.
struct Proto {
  var bytes: [UInt8] = []
  mutating func key(_ field: Int, _ wire: Int) { varintRaw(UInt64(field << 3 | wire)) }
  mutating func varintRaw(_ v: UInt64) {
    var x = v
    while x >= 0x80 { bytes.append(UInt8(x & 0x7F) | 0x80); x >>= 7 }
    bytes.append(UInt8(x))
  }
  mutating func varint(_ f: Int, _ v: UInt64) { key(f, 0); varintRaw(v) }
  mutating func double(_ f: Int, _ v: Double) { key(f, 1); withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
  mutating func float(_ f: Int, _ v: Float) { key(f, 5); withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
  mutating func string(_ f: Int, _ s: String) { key(f, 2); varintRaw(UInt64(s.utf8.count)); bytes += Array(s.utf8) }
  mutating func message(_ f: Int, _ m: Proto) { key(f, 2); varintRaw(UInt64(m.bytes.count)); bytes += m.bytes }
}

/// CRC-32C (Castagnoli), as TFRecord uses, with TensorFlow's masking.
enum CRC32C {
  static let table: [UInt32] = (0..<256).map { i -> UInt32 in
    var c = UInt32(i)
    for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F63B78 : c >> 1 }
    return c
  }
  static func checksum(_ data: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFFFFFF
    for b in data { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFFFFFF
  }
  static func masked(_ data: [UInt8]) -> UInt32 {
    let c = checksum(data)
    return ((c >> 15) | (c << 17)) &+ 0xA282EAD8
  }
}
