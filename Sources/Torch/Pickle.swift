import Foundation

/// A value built by ClipKit's restricted unpickler. Only plain data and tensors exist here:
/// nothing a pickle names is ever executed.
public indirect enum PickleValue: CustomStringConvertible {
  case none
  case bool(Bool)
  case int(Int)
  case float(Double)
  case string(String)
  case bytes([UInt8])
  case tuple([PickleValue])
  case list(PickleList)
  case dict(PickleDict)
  case tensor(Tensor)
  /// A class or function reference allowed by the weights-only rules, not yet applied.
  case global(String)
  /// A storage reference from a persistent id: (dtype, archive key, element count).
  case storage(dtype: DType, key: String, count: Int)
  /// torch.dtype / torch.device values.
  case torchDType(String)
  case device(String)

  public var description: String { rendered(depth: 4) }

  /// At most `depth` levels and 8 items per container: values come from untrusted files and may
  /// be deep or (through the memo) shared, and error messages show them.
  func rendered(depth: Int) -> String {
    func items(_ vs: some Collection<String>, _ n: Int) -> String {
      vs.prefix(8).joined(separator: ", ") + (n > 8 ? ", …" : "")
    }
    switch self {
    case .none: return "None"
    case .bool(let b): return b ? "True" : "False"
    case .int(let i): return "\(i)"
    case .float(let f): return "\(f)"
    case .string(let s): return s.count > 80 ? "'\(s.prefix(80))…'" : "'\(s)'"
    case .bytes(let b): return "bytes(\(b.count))"
    case .tuple(let t): return depth == 0 ? "(…)" : "(" + items(t.lazy.map { $0.rendered(depth: depth - 1) }, t.count) + ")"
    case .list(let l): return depth == 0 ? "[…]" : "[" + items(l.items.lazy.map { $0.rendered(depth: depth - 1) }, l.items.count) + "]"
    case .dict(let d):
      return depth == 0 ? "{…}"
        : "{" + items(d.items.lazy.map { "\($0.0.rendered(depth: depth - 1)): \($0.1.rendered(depth: depth - 1))" }, d.items.count) + "}"
    case .tensor(let t): return t.description
    case .global(let g): return g
    case .storage(let d, let k, let n): return "storage(\(d), \(k), \(n))"
    case .torchDType(let d): return "torch.\(d)"
    case .device(let d): return "device(\(d))"
    }
  }

  public var dictValue: PickleDict? { if case .dict(let d) = self { return d } else { return nil } }
  public var intValue: Int? { if case .int(let i) = self { return i } else { return nil } }
  /// A float, or an int read as one.
  public var doubleValue: Double? {
    switch self {
    case .float(let f): return f
    case .int(let i): return Double(i)
    default: return nil
    }
  }
  public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
}

public final class PickleList { public var items: [PickleValue] = []; init(_ i: [PickleValue] = []) { items = i } }
/// Insertion-ordered dictionary (Python dicts keep order).
public final class PickleDict {
  public var items: [(PickleValue, PickleValue)] = []
  public init() {}
  public subscript(key: String) -> PickleValue? {
    items.first { if case .string(let s) = $0.0 { return s == key } else { return false } }?.1
  }
}

public enum PickleError: Error, LocalizedError {
  case refused(file: String, global: String)
  case malformed(file: String, reason: String)

  public var errorDescription: String? {
    switch self {
    case .refused(let f, let g):
      return "\(f): refused to load: the pickle calls \(g), which a weights-only load does not allow (nothing was executed)"
    case .malformed(let f, let r): return "\(f): malformed checkpoint pickle: \(r)"
    }
  }
}

/// A pickle interpreter with weights-only semantics (as torch.load(weights_only=True)): it builds
/// dicts, lists, tuples, primitives and tensors; the only callables it knows are the tensor
/// rebuild functions, OrderedDict, torch.Size/device and a few builtins; any other global is
/// refused before anything is built. Memo indices, lengths and stack use are bounds-checked.
struct Unpickler {
  let data: [UInt8]
  let file: String
  /// Resolves a storage reference to its bytes as a 1-D tensor.
  let loadStorage: (DType, String, Int) throws -> Tensor

  static let allowed: Set<String> = [
    "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state", "torch._tensor._rebuild_from_type_v2", "torch.Size", "torch.device",
    "builtins.set", "builtins.frozenset", "builtins.bytearray", "_codecs.encode", "torch.nn.parameter.Parameter",
    "argparse.Namespace",
  ]
  static let storageTypes: [String: DType] = [
    "FloatStorage": .float32, "HalfStorage": .float16, "BFloat16Storage": .bfloat16, "DoubleStorage": .float64,
    "LongStorage": .int64, "IntStorage": .int32, "ShortStorage": .int16, "CharStorage": .int8, "ByteStorage": .uint8,
    "BoolStorage": .bool,
  ]
  static let dtypes: Set<String> = ["float32", "float", "float16", "half", "bfloat16", "float64", "double", "int64", "long",
                                    "int32", "int", "int16", "short", "int8", "uint8", "bool"]

  func fail(_ r: String) -> PickleError { .malformed(file: file, reason: r) }

  /// Deeper values are refused: Swift releases (and compares) nested values recursively, so a
  /// crafted chain of a million TUPLE1s would overflow the stack. Real checkpoints nest < 10 deep.
  static let maxDepth = 1000

  func run() throws -> PickleValue {
    var stack: [PickleValue] = []
    var marks: [Int] = []
    var memo: [Int: PickleValue] = [:]
    // Nesting depth, tracked as values are built: of each stack slot and memo entry (0 for
    // scalars), and of each list/dict object (they grow in place). A list or dict already placed
    // in another value may not grow deeper afterwards, which also rules out cycles.
    var depths: [Int] = [], memoDepths: [Int: Int] = [:]
    var objectDepth: [ObjectIdentifier: Int] = [:]
    var nested: Set<ObjectIdentifier> = []
    var tracked: [AnyObject] = []  // alive for the whole run: a freed list's address may not be reused under its record
    // BUILD copies a dict's items without reading bytes for them: bounded by the file's size, or
    // a few bytes of DUP/BUILD would double a dict until memory runs out.
    var copyBudget = data.count
    func object(_ v: PickleValue) -> ObjectIdentifier? {
      switch v {
      case .list(let l): return ObjectIdentifier(l)
      case .dict(let d): return ObjectIdentifier(d)
      default: return nil
      }
    }
    func tooDeep() -> PickleError { fail("values nested deeper than \(Unpickler.maxDepth) levels") }
    func push(_ v: PickleValue, depth: Int = 0) throws {
      guard depth <= Unpickler.maxDepth else { throw tooDeep() }
      if let id = object(v), objectDepth[id] == nil {
        objectDepth[id] = max(depth, 1)
        switch v { case .list(let l): tracked.append(l); case .dict(let d): tracked.append(d); default: break }
      }
      stack.append(v)
      depths.append(depth)
    }
    func depthOf(_ v: PickleValue, recorded: Int) -> Int { object(v).flatMap { objectDepth[$0] } ?? recorded }
    func popItem() throws -> (PickleValue, Int) {
      guard let v = stack.popLast() else { throw fail("stack underflow") }
      return (v, depthOf(v, recorded: depths.removeLast()))
    }
    /// Places children into a container (new, or `into` an existing one): marks them nested and
    /// returns the depth the container needs.
    func adopt(_ children: [(PickleValue, Int)], into parent: PickleValue? = nil) throws -> Int {
      var d = 1
      for (c, cd) in children {
        if let id = object(c) {
          if let p = parent, object(p) == id { throw fail("a list or dict cannot contain itself") }
          nested.insert(id)
        }
        d = max(d, cd + 1)
      }
      return d
    }
    /// An existing list/dict now holding values of depth up to `d` - 1.
    func grow(_ container: PickleValue, to d: Int) throws {
      guard let id = object(container), d > objectDepth[id] ?? 1 else { return }
      guard !nested.contains(id) else { throw fail("a list or dict grows deeper after it was placed in another value") }
      guard d <= Unpickler.maxDepth else { throw tooDeep() }
      objectDepth[id] = d
    }
    var storages: [String: Tensor] = [:]
    var p = 0
    func byte() throws -> UInt8 { guard p < data.count else { throw fail("unexpected end of data") }; defer { p += 1 }; return data[p] }
    func take(_ n: Int) throws -> [UInt8] {
      // Compared as a remainder: `p + n` overflows for the 8-byte lengths of BINUNICODE8/BINBYTES8.
      guard n >= 0, n <= data.count - p else { throw fail("length \(n) runs past the end of data") }
      defer { p += n }
      return Array(data[p..<(p + n)])
    }
    func le(_ n: Int) throws -> Int { try take(n).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) } }
    /// An 8-byte unsigned length (BINUNICODE8, BINBYTES8, BYTEARRAY8): past Int.max it cannot be
    /// a length of this file.
    func length8() throws -> Int {
      let v = try take(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
      guard v <= UInt64(data.count - p) else { throw fail("length \(v) runs past the end of data") }
      return Int(v)
    }
    func pop() throws -> PickleValue { try popItem().0 }
    func popMarkItems() throws -> [(PickleValue, Int)] {
      guard let m = marks.popLast(), m <= stack.count else { throw fail("no mark") }
      defer { stack.removeSubrange(m...); depths.removeSubrange(m...) }
      return (m..<stack.count).map { (stack[$0], depthOf(stack[$0], recorded: depths[$0])) }
    }
    func popMark() throws -> [PickleValue] { try popMarkItems().map(\.0) }
    func line() throws -> String {
      var b: [UInt8] = []
      while true { let c = try byte(); if c == 0x0A { break }; b.append(c) }
      return String(decoding: b, as: UTF8.self)
    }
    func global(_ module: String, _ name: String) throws -> PickleValue {
      let full = "\(module).\(name)"
      if module == "torch", let _ = Unpickler.storageTypes[name] { return .global(full) }
      if module == "torch", Unpickler.dtypes.contains(name) { return .torchDType(name) }
      guard Unpickler.allowed.contains(full) else { throw PickleError.refused(file: file, global: full) }
      return .global(full)
    }
    func memoPut(_ i: Int) throws {
      guard let top = stack.last else { throw fail("memoize on an empty stack") }
      guard i >= 0 && i < 1 << 24 else { throw fail("memo index \(i)") }
      memo[i] = top
      memoDepths[i] = depths.last ?? 0
    }
    func memoGet(_ i: Int) throws {
      guard let v = memo[i] else { throw fail("memo index \(i) was never stored") }
      try push(v, depth: memoDepths[i] ?? 0)
    }

    while true {
      let op = try byte()
      switch op {
      case 0x80: _ = try byte()                                     // PROTO
      case 0x95: _ = try take(8)                                    // FRAME
      case 0x2E: return try pop()                                   // STOP
      case 0x63: try push(try global(try line(), try line()))       // GLOBAL
      case 0x93:                                                    // STACK_GLOBAL
        let name = try pop(), module = try pop()
        guard case .string(let n) = name, case .string(let m) = module else { throw fail("STACK_GLOBAL needs two strings") }
        try push(try global(m, n))
      case 0x28: marks.append(stack.count)                          // MARK
      case 0x74:                                                    // TUPLE
        let items = try popMarkItems()
        try push(.tuple(items.map(\.0)), depth: try adopt(items))
      case 0x29: try push(.tuple([]), depth: 1)                     // EMPTY_TUPLE
      case 0x85, 0x86, 0x87:                                        // TUPLE1, TUPLE2, TUPLE3
        var items: [(PickleValue, Int)] = []
        for _ in 0..<Int(op - 0x84) { items.insert(try popItem(), at: 0) }
        try push(.tuple(items.map(\.0)), depth: try adopt(items))
      case 0x5D, 0x8F: try push(.list(PickleList()), depth: 1)      // EMPTY_LIST, EMPTY_SET (as a list)
      case 0x6C:                                                    // LIST
        let items = try popMarkItems()
        try push(.list(PickleList(items.map(\.0))), depth: try adopt(items))
      case 0x61, 0x65, 0x90:                                        // APPEND, APPENDS, ADDITEMS
        let items = op == 0x61 ? [try popItem()] : try popMarkItems()
        guard let top = stack.last, case .list(let l) = top else { throw fail("APPEND on a non-list") }
        try grow(top, to: try adopt(items, into: top))
        l.items += items.map(\.0)
      case 0x7D: try push(.dict(PickleDict()), depth: 1)            // EMPTY_DICT
      case 0x64:                                                    // DICT
        let vs = try popMarkItems()
        guard vs.count % 2 == 0 else { throw fail("DICT with an odd item count") }
        let d = PickleDict()
        for i in stride(from: 0, to: vs.count, by: 2) { d.items.append((vs[i].0, vs[i + 1].0)) }
        try push(.dict(d), depth: try adopt(vs))
      case 0x73, 0x75:                                              // SETITEM, SETITEMS
        var vs: [(PickleValue, Int)] = []
        if op == 0x73 { let v = try popItem(); vs = [try popItem(), v] } else { vs = try popMarkItems() }
        guard vs.count % 2 == 0, let top = stack.last, case .dict(let d) = top else { throw fail("SETITEMS on a non-dict") }
        try grow(top, to: try adopt(vs, into: top))
        for i in stride(from: 0, to: vs.count, by: 2) { d.items.append((vs[i].0, vs[i + 1].0)) }
      case 0x71: try memoPut(Int(try byte()))                       // BINPUT
      case 0x72: try memoPut(try le(4))                             // LONG_BINPUT
      case 0x94: try memoPut(memo.count)                            // MEMOIZE
      case 0x68: try memoGet(Int(try byte()))                       // BINGET
      case 0x6A: try memoGet(try le(4))                             // LONG_BINGET
      case 0x4A: try push(.int(Int(Int32(truncatingIfNeeded: try le(4)))))  // BININT
      case 0x4B: try push(.int(Int(try byte())))                // BININT1
      case 0x4D: try push(.int(try le(2)))                      // BININT2
      case 0x8A:                                                    // LONG1
        let n = Int(try byte())
        let b = try take(n)
        guard n <= 8 else { throw fail("integer of \(n) bytes") }
        var v: Int64 = 0
        for (i, x) in b.enumerated() { v |= Int64(x) << (8 * Int64(i)) }
        if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 { v -= Int64(1) << (8 * Int64(n)) }
        try push(.int(Int(v)))
      case 0x47:                                                    // BINFLOAT (big-endian)
        let b = try take(8)
        try push(.float(Double(bitPattern: b.reduce(0) { $0 << 8 | UInt64($1) })))
      case 0x58: try push(.string(String(decoding: try take(try le(4)), as: UTF8.self)))   // BINUNICODE
      case 0x8C: try push(.string(String(decoding: try take(Int(try byte())), as: UTF8.self)))  // SHORT_BINUNICODE
      case 0x8D: try push(.string(String(decoding: try take(try length8()), as: UTF8.self)))  // BINUNICODE8
      case 0x55: try push(.string(String(decoding: try take(Int(try byte())), as: UTF8.self)))  // SHORT_BINSTRING
      case 0x54: try push(.string(String(decoding: try take(try le(4)), as: UTF8.self)))   // BINSTRING
      case 0x42: try push(.bytes(try take(try le(4))))          // BINBYTES
      case 0x43: try push(.bytes(try take(Int(try byte()))))    // SHORT_BINBYTES
      case 0x8E, 0x96: try push(.bytes(try take(try length8())))  // BINBYTES8, BYTEARRAY8
      case 0x4E: try push(.none)                                // NONE
      case 0x88: try push(.bool(true))                          // NEWTRUE
      case 0x89: try push(.bool(false))                         // NEWFALSE
      case 0x30: _ = try pop()                                      // POP
      case 0x31: _ = try popMark()                                  // POP_MARK
      case 0x32: guard let t = stack.last else { throw fail("DUP on an empty stack") }; try push(t, depth: depths.last ?? 0)
      case 0x51:                                                    // BINPERSID
        let pid = try pop()
        guard case .tuple(let t) = pid, t.count >= 5, case .string("storage") = t[0], case .global(let cls) = t[1],
              let dtype = Unpickler.storageTypes[String(cls.split(separator: ".").last ?? "")] else {
          throw fail("unsupported persistent id \(pid)")
        }
        let key: String
        switch t[2] { case .string(let s): key = s; case .int(let i): key = String(i); default: throw fail("storage key \(t[2])") }
        guard case .int(let n) = t[4], n >= 0 else { throw fail("storage size \(t[4])") }
        try push(.storage(dtype: dtype, key: key, count: n))
      case 0x52, 0x81:                                              // REDUCE, NEWOBJ
        // The result may be one of the arguments (torch.Size, set): as deep as they are, at most.
        let (args, depth) = try popItem(), fn = try pop()
        guard case .tuple(let a) = args else { throw fail("REDUCE/NEWOBJ arguments are not a tuple") }
        try push(try apply(fn, a, &storages), depth: depth)
      case 0x62:                                                    // BUILD
        let state = try pop()
        guard let target = stack.last else { throw fail("BUILD on an empty stack") }
        switch target {
        case .dict(let d):  // OrderedDict state: a dict of items or None
          if case .dict(let s) = state {
            guard s !== d else { throw fail("BUILD of a dict with itself") }
            copyBudget -= s.items.count
            guard copyBudget >= 0 else { throw fail("BUILD copies more items than the pickle has bytes") }
            try grow(target, to: depthOf(state, recorded: 1))
            d.items += s.items
          }
        case .tensor: break  // tensor/parameter state (e.g. python attributes) is not kept
        default: throw fail("BUILD on \(target)")
        }
      default:
        throw fail(String(format: "opcode 0x%02X is not allowed in a weights-only load", op))
      }
      if stack.count > 10_000_000 { throw fail("stack too deep") }
    }
  }

  /// A tensor view must lie inside its storage. The sizes, strides and offset come from the file,
  /// so element counts and reach are computed with overflow checks: a crafted value is a named
  /// error, never an arithmetic trap or a view past the storage.
  func checkView(size: [Int], stride: [Int], offset: Int, storage key: String, count: Int) throws {
    guard offset >= 0, size.allSatisfy({ $0 >= 0 }), stride.allSatisfy({ $0 >= 0 }) else {
      throw fail("tensor on storage \(key) has a negative size, stride or offset (size \(size), stride \(stride), offset \(offset))")
    }
    if size.contains(0) { return }  // an empty view reads nothing
    var numel = 1, last = offset
    for (d, s) in zip(size, stride) {
      let n = numel.multipliedReportingOverflow(by: d), reach = (d - 1).multipliedReportingOverflow(by: s)
      let end = last.addingReportingOverflow(reach.partialValue)
      guard !n.overflow, !reach.overflow, !end.overflow else {
        throw fail("tensor on storage \(key) of size \(size), stride \(stride) overflows a 64-bit element count")
      }
      (numel, last) = (n.partialValue, end.partialValue)
    }
    guard last < count else {
      throw fail("tensor of size \(size), stride \(stride), offset \(offset) reaches element \(last) of storage \(key), which holds \(count)")
    }
  }

  func apply(_ fn: PickleValue, _ a: [PickleValue], _ storages: inout [String: Tensor]) throws -> PickleValue {
    guard case .global(let name) = fn else {
      if case .torchDType = fn { throw fail("a dtype is not callable") }
      throw fail("call of a non-callable \(fn)")
    }
    switch name {
    case "collections.OrderedDict":
      return .dict(PickleDict())
    case "argparse.Namespace":
      // Pickled as NEWOBJ with no arguments, then BUILD with its attributes: read as a dict of
      // them (data only; nothing of argparse runs). RADIO's checkpoints keep their `args` so.
      guard a.isEmpty else { throw fail("argparse.Namespace with constructor arguments") }
      return .dict(PickleDict())
    case "torch._utils._rebuild_tensor_v2":
      guard a.count >= 4, case .storage(let dtype, let key, let n) = a[0], case .int(let offset) = a[1],
            case .tuple(let size) = a[2], case .tuple(let stride) = a[3] else { throw fail("bad _rebuild_tensor_v2 arguments") }
      let base: Tensor
      if let cached = storages[key] { base = cached } else {
        base = try loadStorage(dtype, key, n)
        storages[key] = base
      }
      let sz = try size.map { v -> Int in guard case .int(let i) = v else { throw fail("tensor size \(v)") }; return i }
      let st = try stride.map { v -> Int in guard case .int(let i) = v else { throw fail("tensor stride \(v)") }; return i }
      guard sz.count == st.count else { throw fail("size and stride lengths differ") }
      try checkView(size: sz, stride: st, offset: offset, storage: key, count: base.count)
      let t = try base.asStrided(sz, strides: st, offset: offset)
      if a.count > 4, case .bool(true) = a[4], dtype.isFloatingPoint { try t.requiresGrad(true) }
      return .tensor(t)
    case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state", "torch.nn.parameter.Parameter":
      guard let first = a.first, case .tensor = first else { throw fail("parameter without a tensor") }
      return first
    case "torch._tensor._rebuild_from_type_v2":
      guard a.count >= 3, case .global = a[0], case .tuple(let inner) = a[2] else { throw fail("bad _rebuild_from_type_v2") }
      return try apply(a[0] == .global("torch._utils._rebuild_tensor_v2") ? a[0] : .global("torch._utils._rebuild_tensor_v2"), inner, &storages)
    case "torch.Size":
      guard let first = a.first, case .tuple = first else { throw fail("torch.Size without a tuple") }
      return first
    case "torch.device":
      return .device(a.map { v -> String in if case .string(let s) = v { return s }; return v.description }.joined(separator: ":"))
    case "builtins.set", "builtins.frozenset":
      if let first = a.first, case .list = first { return first }
      return .list(PickleList())
    case "builtins.bytearray":
      if let first = a.first, case .bytes = first { return first }
      return .bytes([])
    case "_codecs.encode":
      guard let first = a.first, case .string(let s) = first else { throw fail("_codecs.encode without a string") }
      return .bytes(s.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })  // latin-1
    default:
      if name.hasPrefix("torch."), Unpickler.storageTypes[String(name.dropFirst(6))] != nil {
        throw fail("storage classes are only valid inside persistent ids")
      }
      throw PickleError.refused(file: file, global: name)
    }
  }
}

extension PickleValue: Equatable {
  public static func == (a: PickleValue, b: PickleValue) -> Bool {
    switch (a, b) {
    case (.global(let x), .global(let y)): return x == y
    case (.string(let x), .string(let y)): return x == y
    case (.int(let x), .int(let y)): return x == y
    case (.none, .none): return true
    default: return false
    }
  }
}
