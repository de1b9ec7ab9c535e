import Foundation
import Testing
@testable import Torch

@Suite struct PyTorchCheckpoints {
  @Test func readsWhatTorchSaveWrote() throws {
    let ckpt = try PyTorchCheckpoint.read(Fixture.path("tao_style.pth"))
    let tensors = try ckpt.tensors
    let expected = try Safetensors.read(Fixture.path("tao_style_expected.safetensors")).dictionary
    #expect(Set(tensors.keys) == Set(expected.keys))
    for (k, e) in expected {
      let t = tensors[k]!
      #expect(t.dtype == e.dtype && t.shape == e.shape, "\(k)")
      #expect(try t.contiguous().bytes() == e.bytes(), "\(k)")
    }
    guard case .dict(let top) = ckpt.root else { Issue.record("top is not a dict"); return }
    #expect(top["epoch"]?.intValue == 3 && top["global_step"]?.intValue == 120)
    #expect(top["name"]?.stringValue == "clip")
    if case .list(let opt)? = top["optimizer_states"], case .dict(let first) = opt.items[0], case .list(let groups)? = first["param_groups"],
       case .dict(let g) = groups.items[0], case .float(let lr)? = g["lr"] {
      #expect(lr == 1e-4)
    } else {
      Issue.record("optimizer_states not read")
    }
  }

  @Test func refusesPicklesThatCallAnything() throws {
    try? FileManager.default.removeItem(atPath: "/tmp/clipkit_pwned")
    for (name, global) in [("malicious.pth", "posix.system"), ("malicious_builtins.pth", "builtins.eval")] {
      do {
        _ = try PyTorchCheckpoint.read(Fixture.path(name))
        Issue.record("\(name) was accepted")
      } catch {
        let m = error.localizedDescription
        #expect(m.contains("refused") && m.contains(global) && m.contains(name), "\(m)")
      }
    }
    #expect(!FileManager.default.fileExists(atPath: "/tmp/clipkit_pwned"))
  }

  @Test func truncatedAndForeignFilesAreNamedErrors() throws {
    for (name, fragment) in [("truncated.pth", "truncated.pth"), ("python_written.safetensors", "not a zip-format")] {
      do {
        _ = try PyTorchCheckpoint.read(Fixture.path(name))
        Issue.record("\(name) accepted")
      } catch {
        #expect(error.localizedDescription.contains(fragment), "\(error.localizedDescription)")
      }
    }
  }
}

@Suite struct CheckpointWriting {
  @Test func writtenCheckpointsReadBack() throws {
    let path = NSTemporaryDirectory() + "ck-\(UUID().uuidString).pth"
    let w = try Tensor.randn([3, 4])
    let h = try Tensor.randn([5]).to(.bfloat16)
    let root = PickleOut.dict([
      (.string("state_dict"), .dict([(.string("model.w"), .tensor(w)), (.string("model.h"), .tensor(h)),
                                      (.string("model.t"), .tensor(try w.transpose(0, 1)))], ordered: true)),
      (.string("epoch"), .int(7)), (.string("global_step"), .int(70_000)), (.string("lr"), .float(1e-4)),
      (.string("betas"), .tuple([.float(0.9), .float(0.95)])), (.string("flags"), .list([.bool(true), .none])),
      (.string("state"), .dict([(.int(0), .dict([(.string("step"), .tensor(try Tensor.scalar(Float(3))))], ordered: false))], ordered: false)),
    ], ordered: false)
    try PyTorchCheckpointWriter.write(root, to: path)
    let back = try PyTorchCheckpoint.read(path)
    let t = try back.tensors
    #expect(try t["model.w"]!.floats() == w.floats())
    #expect(try t["model.h"]!.bytes() == h.bytes())
    #expect(try t["model.t"]!.floats() == w.transpose(0, 1).contiguous().floats())
    guard case .dict(let top) = back.root else { Issue.record("not a dict"); return }
    #expect(top["epoch"]?.intValue == 7 && top["global_step"]?.intValue == 70_000)
    if case .float(let lr)? = top["lr"] { #expect(lr == 1e-4) } else { Issue.record("lr") }
    // No temporary file is left beside it.
    let dir = (path as NSString).deletingLastPathComponent
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".tmp-") }.isEmpty)
  }
}

/// Pickle bytes for the tests below, written opcode by opcode.
struct PickleBytes {
  var b: [UInt8] = [0x80, 0x02]
  mutating func unicode(_ s: String) { b.append(0x58); b += le(UInt64(s.utf8.count), 4); b += Array(s.utf8) }
  mutating func global(_ m: String, _ n: String) { b.append(0x63); b += Array("\(m)\n\(n)\n".utf8) }
  mutating func int(_ v: Int) { b += [0x8A, 8] + le(UInt64(bitPattern: Int64(v)), 8) }  // LONG1
  mutating func tuple(_ body: (inout PickleBytes) -> Void) { b.append(0x28); body(&self); b.append(0x74) }
  /// `torch._utils._rebuild_tensor_v2` of a FloatStorage with `count` elements under key "0".
  mutating func tensor(count: Int, size: [Int], stride: [Int], offset: Int = 0) {
    global("torch._utils", "_rebuild_tensor_v2")
    tuple { p in
      p.tuple { q in q.unicode("storage"); q.global("torch", "FloatStorage"); q.unicode("0"); q.unicode("cpu"); q.int(count) }
      p.b.append(0x51)  // BINPERSID
      p.int(offset)
      p.tuple { q in for s in size { q.int(s) } }
      p.tuple { q in for s in stride { q.int(s) } }
      p.b.append(0x89)
    }
    b.append(0x52)  // REDUCE
  }
  func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
}

/// A stored (uncompressed) zip archive, written byte by byte; `zip64` gives the first entry a
/// Zip64 extra field declaring these (uncompressed, compressed) sizes.
func zipArchive(_ entries: [(String, [UInt8])], zip64: (UInt64, UInt64)? = nil) -> [UInt8] {
  func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
  func crc32(_ d: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for x in d {
      c ^= UInt32(x)
      for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
    }
    return ~c
  }
  var out: [UInt8] = [], central: [UInt8] = []
  for (i, (name, data)) in entries.enumerated() {
    let offset = UInt64(out.count), n = Array(name.utf8), crc = UInt64(crc32(data))
    let big = i == 0 ? zip64 : nil
    let size32: UInt64 = big == nil ? UInt64(data.count) : 0xFFFF_FFFF
    let extra = big.map { le(1, 2) + le(16, 2) + le($0.0, 8) + le($0.1, 8) } ?? []
    out += le(0x0403_4B50, 4) + le(45, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(crc, 4) + le(size32, 4) + le(size32, 4)
      + le(UInt64(n.count), 2) + le(UInt64(extra.count), 2) + n + extra + data
    central += le(0x0201_4B50, 4) + le(45, 2) + le(45, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(crc, 4) + le(size32, 4)
      + le(size32, 4) + le(UInt64(n.count), 2) + le(UInt64(extra.count), 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4)
      + le(offset, 4) + n + extra
  }
  let cdOffset = UInt64(out.count)
  out += central
  out += le(0x0605_4B50, 4) + le(0, 2) + le(0, 2) + le(UInt64(entries.count), 2) + le(UInt64(entries.count), 2)
    + le(UInt64(central.count), 4) + le(cdOffset, 4) + le(0, 2)
  return out
}

@Suite struct MalformedCheckpoints {
  func unpickle(_ bytes: [UInt8], storage: Int = 4) throws -> PickleValue {
    try Unpickler(data: bytes, file: "crafted.pth") { dtype, _, _ in
      try Tensor([Float](repeating: 1, count: storage), shape: [storage]).to(dtype)
    }.run()
  }
  func expectMalformed(_ bytes: [UInt8], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let error = #expect(throws: PickleError.self, sourceLocation: sourceLocation) { _ = try unpickle(bytes) }
    guard case .malformed(let file, let reason)? = error else { return }
    #expect(file == "crafted.pth" && reason.contains(fragment), "\(reason)", sourceLocation: sourceLocation)
  }

  /// 8-byte lengths past Int.max (or past the data) are malformed pickles, not overflows.
  @Test func eightByteLengthsPastTheDataAreMalformed() throws {
    for op: UInt8 in [0x8D, 0x8E, 0x96] {  // BINUNICODE8, BINBYTES8, BYTEARRAY8
      for length: UInt64 in [UInt64.max, UInt64(Int.max), UInt64(Int.max) - 1, 1 << 40] {
        expectMalformed([0x80, 0x04, op] + PickleBytes().le(length, 8) + [0x2E], "length \(length) runs past the end")
      }
    }
    // A 4-byte length past the data as well.
    expectMalformed([0x80, 0x04, 0x58, 0xFF, 0xFF, 0xFF, 0xFF], "runs past the end")
    // Well-formed 8-byte lengths still read.
    guard case .bytes(let b) = try unpickle([0x80, 0x04, 0x8E] + PickleBytes().le(3, 8) + [1, 2, 3, 0x2E]) else {
      Issue.record("BINBYTES8 not read"); return
    }
    #expect(b == [1, 2, 3])
    #expect(try unpickle([0x80, 0x04, 0x8D] + PickleBytes().le(2, 8) + Array("hi".utf8) + [0x2E]) == .string("hi"))
  }

  /// Tensor views whose size × stride overflows, or that reach past their storage, are named errors.
  @Test func tensorViewsAreBoundsCheckedWithoutOverflow() throws {
    for (size, stride, offset, fragment) in [
      ([3, 2], [Int.max, 1], 0, "overflows a 64-bit element count"),
      ([1 << 32, 1 << 32, 2], [0, 0, 1], 0, "overflows a 64-bit element count"),
      ([2], [1], Int.max, "overflows a 64-bit element count"),
      ([5], [1], 0, "reaches element 4 of storage 0, which holds 4"),
      ([2], [1], 3, "reaches element 4 of storage 0, which holds 4"),
      ([2], [-1], 0, "negative size, stride or offset"),
      ([-2], [1], 0, "negative size, stride or offset"),
    ] as [([Int], [Int], Int, String)] {
      var p = PickleBytes()
      p.tensor(count: 4, size: size, stride: stride, offset: offset)
      p.b.append(0x2E)
      expectMalformed(p.b, fragment)
    }
    var ok = PickleBytes()
    ok.tensor(count: 4, size: [2, 2], stride: [2, 1])
    ok.b.append(0x2E)
    guard case .tensor(let t) = try unpickle(ok.b) else { Issue.record("no tensor"); return }
    #expect(t.shape == [2, 2])
  }

  /// A storage whose element count times its item size overflows is a CheckpointError naming the file.
  @Test func storageByteSizesThatOverflowAreNamed() throws {
    let dir = tmpDir()
    for count in [Int.max / 2, 1 << 62] {
      var p = PickleBytes()
      p.tensor(count: count, size: [1], stride: [1])
      p.b.append(0x2E)
      let path = dir + "/count-\(count).pth"
      try Data(zipArchive([("archive/data.pkl", p.b), ("archive/data/0", [0, 0, 128, 63])])).write(to: URL(fileURLWithPath: path))
      let error = #expect(throws: CheckpointError.self) { _ = try PyTorchCheckpoint.read(path) }
      guard case .format(let file, let reason)? = error else { continue }
      #expect(file == path && reason.contains("storage data/0 claims \(count) elements"), "\(reason)")
    }
    // The same archive with a sane count reads (the zip writer above is sound).
    var p = PickleBytes()
    p.tensor(count: 1, size: [1], stride: [1])
    p.b.append(0x2E)
    let path = dir + "/sane.pth"
    try Data(zipArchive([("archive/data.pkl", p.b), ("archive/data/0", [0, 0, 128, 63])])).write(to: URL(fileURLWithPath: path))
    guard case .tensor(let t) = try PyTorchCheckpoint.read(path).root else { Issue.record("no tensor"); return }
    #expect(try t.floats() == [1])
  }

  /// Zip64 sizes past Int.max (or past the file) are refused before the archive is read.
  @Test func zip64SizesPastTheFileAreRefused() throws {
    let dir = tmpDir()
    var p = PickleBytes()
    p.int(7)
    p.b.append(0x2E)
    for (uncompressed, compressed) in [(UInt64.max, UInt64.max), (UInt64(Int.max) + 1, 10), (1 << 40, 1 << 40)] as [(UInt64, UInt64)] {
      let path = dir + "/zip64-\(uncompressed).pth"
      try Data(zipArchive([("archive/data.pkl", p.b)], zip64: (uncompressed, compressed))).write(to: URL(fileURLWithPath: path))
      let error = #expect(throws: CheckpointError.self) { _ = try PyTorchCheckpoint.read(path) }
      guard case .format(let file, let reason)? = error else { continue }
      #expect(file == path && reason.contains("entry archive/data.pkl declares") && reason.contains("\(uncompressed) uncompressed bytes"), "\(reason)")
    }
    // Zip64 sizes that match the data read normally.
    let path = dir + "/zip64-sane.pth"
    try Data(zipArchive([("archive/data.pkl", p.b)], zip64: (UInt64(p.b.count), UInt64(p.b.count)))).write(to: URL(fileURLWithPath: path))
    #expect(try PyTorchCheckpoint.read(path).root == .int(7))
  }
}

/// Nesting from untrusted pickles is bounded: Swift releases nested values recursively, so a deep
/// chain would overflow the stack (found by fuzzing under ASan); cycles cannot be built.
@Suite struct PickleNesting {
  func unpickle(_ body: [UInt8]) throws -> PickleValue {
    try PyTorchCheckpoint.unpickle([0x80, 0x02] + body + [0x2E], file: "nest.pkl") { _, _, _ in try Tensor.zeros([1]) }
  }
  func message(_ body: [UInt8]) -> String {
    do { _ = try unpickle(body); return "" } catch { return error.localizedDescription }
  }

  @Test func deepChainsAreRefusedShallowOnesRead() throws {
    // EMPTY_TUPLE then n × TUPLE1: a tuple nested n + 1 deep.
    var v = try unpickle([0x29] + [UInt8](repeating: 0x85, count: 900))
    var depth = 0
    while case .tuple(let t) = v, let first = t.first { v = first; depth += 1 }
    #expect(depth == 900)
    #expect(message([0x29] + [UInt8](repeating: 0x85, count: 200_000)).contains("nested deeper than 1000 levels"))
    // Lists: each new list appended into the one below it on the stack (] ] a ] a …).
    var lists: [UInt8] = [0x5D]
    for _ in 0..<2_000 { lists += [0x5D, 0x61] }
    #expect(message(lists).isEmpty)  // APPEND pops the new list into the one below: depth stays 2
    var deep: [UInt8] = [0x5D]
    for _ in 0..<2_000 { deep += [0x5D] }
    for _ in 0..<2_000 { deep += [0x61] }
    #expect(message(deep).contains("nested deeper than 1000 levels"))
  }

  @Test func cyclesAndGrowthAfterNestingAreRefused() {
    // ] q0 h0 a: a list appended into itself.
    #expect(message([0x5D, 0x71, 0x00, 0x68, 0x00, 0x61]).contains("cannot contain itself"))
    // ] q0 ] q1 h0 a 0 h0 h1 a: list1 holds list0; then list1 into list0 (list0 is nested: it may not grow).
    let grows: [UInt8] = [0x5D, 0x71, 0x00, 0x5D, 0x71, 0x01, 0x68, 0x00, 0x61, 0x30, 0x68, 0x00, 0x68, 0x01, 0x61]
    #expect(message(grows).contains("grows deeper after it was placed"))
    // } 2 b: BUILD of a dict with itself as its state would double it on every repeat.
    #expect(message([0x7D, 0x32, 0x62]).contains("BUILD of a dict with itself"))
  }

  @Test func descriptionsOfHugeValuesAreBounded() throws {
    // A list of 10,000 ints inside 12 tuples: the rendering stops at 4 levels and 8 items.
    var body: [UInt8] = [0x5D, 0x28]
    for _ in 0..<10_000 { body += [0x4B, 0x07] }
    body += [0x65] + [UInt8](repeating: 0x85, count: 12)
    let v = try unpickle(body)
    #expect(v.description.count < 100 && v.description.contains("(…)"))
    var inner = v
    while case .tuple(let t) = inner, let first = t.first { inner = first }
    #expect(inner.description == "[7, 7, 7, 7, 7, 7, 7, 7, …]")
  }
}
