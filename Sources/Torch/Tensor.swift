import CTorch
import Foundation

/// An error raised inside libtorch (caught in the C++ shim) or by the Swift tensor layer.
public enum TorchError: Error, LocalizedError, Equatable {
  /// libtorch rejected an operation; the message is libtorch's own, prefixed with the op name.
  case torch(op: String, message: String)
  /// A Swift-side argument problem (buffer sizes, element types, unsupported dtype).
  case invalidArgument(String)

  public var errorDescription: String? {
    switch self {
    case .torch(let op, let message): return "\(op): \(message)"
    case .invalidArgument(let m): return m
    }
  }
}

/// Turns a shim result into a Swift throw. Every call into CTorch goes through here.
@inline(__always)
func check(_ op: @autoclosure () -> String, _ err: ck_error?) throws {
  guard let err else { return }
  let message = String(cString: err)
  ck_free(err)
  throw TorchError.torch(op: op(), message: message)
}

public enum DType: Int32, CaseIterable, Sendable, CustomStringConvertible {
  case float32 = 0, float16 = 1, bfloat16 = 2, float64 = 3, int64 = 4, int32 = 5, uint8 = 6,
    bool = 7, int8 = 8, int16 = 9

  public var itemSize: Int {
    switch self {
    case .float32, .int32: return 4
    case .float16, .bfloat16, .int16: return 2
    case .float64, .int64: return 8
    case .uint8, .bool, .int8: return 1
    }
  }
  public var isFloatingPoint: Bool { [.float32, .float16, .bfloat16, .float64].contains(self) }
  public var description: String {
    switch self {
    case .float32: return "float32"
    case .float16: return "float16"
    case .bfloat16: return "bfloat16"
    case .float64: return "float64"
    case .int64: return "int64"
    case .int32: return "int32"
    case .uint8: return "uint8"
    case .bool: return "bool"
    case .int8: return "int8"
    case .int16: return "int16"
    }
  }
}

public enum Device: Equatable, Hashable, Sendable, CustomStringConvertible {
  case cpu
  case cuda(Int)
  /// Shapes and dtypes without storage: builds a model's architecture without memory.
  case meta

  /// Parses "cpu", "cuda", "cuda:N", "meta".
  public init(parsing s: String) throws {
    if s == "cpu" { self = .cpu; return }
    if s == "meta" { self = .meta; return }
    if s == "cuda" { self = .cuda(0); return }
    if s.hasPrefix("cuda:"), let i = Int(s.dropFirst(5)), i >= 0 { self = .cuda(i); return }
    throw TorchError.invalidArgument("unknown device '\(s)' (expected cpu, cuda or cuda:N)")
  }
  var code: (Int32, Int32) {
    switch self {
    case .cpu: return (0, 0)
    case .cuda(let i): return (1, Int32(i))
    case .meta: return (2, 0)
    }
  }
  public var description: String {
    switch self {
    case .cpu: return "cpu"
    case .cuda(let i): return "cuda:\(i)"
    case .meta: return "meta"
    }
  }
  public var isCUDA: Bool { if case .cuda = self { return true } else { return false } }
}

/// Swift element types that map one-to-one onto a tensor dtype.
public protocol TensorElement: Sendable {
  static var dtype: DType { get }
}
extension Float: TensorElement { public static var dtype: DType { .float32 } }
extension Double: TensorElement { public static var dtype: DType { .float64 } }
extension Int64: TensorElement { public static var dtype: DType { .int64 } }
extension Int32: TensorElement { public static var dtype: DType { .int32 } }
extension UInt8: TensorElement { public static var dtype: DType { .uint8 } }
extension Int8: TensorElement { public static var dtype: DType { .int8 } }
extension Int16: TensorElement { public static var dtype: DType { .int16 } }
extension Bool: TensorElement { public static var dtype: DType { .bool } }

/// A libtorch tensor. The handle is a reference-counted `at::Tensor`; copying the Swift
/// reference shares it, as in PyTorch.
public final class Tensor: @unchecked Sendable {
  let handle: ck_tensor

  init(_ handle: ck_tensor) {
    self.handle = handle
    if !Tensor.workStarted { Tensor.workStarted = true }
  }
  /// Set by the first tensor: CUDA can no longer be loaded into this process after that.
  nonisolated(unsafe) static var workStarted = false
  deinit { ck_tensor_free(handle) }

  /// Runs a shim call that produces one tensor.
  static func make(_ op: @autoclosure () -> String, _ body: (UnsafeMutablePointer<ck_tensor?>) -> ck_error?) throws -> Tensor {
    var out: ck_tensor? = nil
    try check(op(), body(&out))
    guard let out else { throw TorchError.torch(op: op(), message: "no result") }
    return Tensor(out)
  }

  // MARK: introspection

  public var shape: [Int] {
    let n = Int(ck_tensor_dim(handle))
    var s = [Int64](repeating: 0, count: n)
    s.withUnsafeMutableBufferPointer { ck_tensor_sizes(handle, $0.baseAddress) }
    return s.map(Int.init)
  }
  public var strides: [Int] {
    let n = Int(ck_tensor_dim(handle))
    var s = [Int64](repeating: 0, count: n)
    s.withUnsafeMutableBufferPointer { ck_tensor_strides(handle, $0.baseAddress) }
    return s.map(Int.init)
  }
  public var rank: Int { Int(ck_tensor_dim(handle)) }
  public var count: Int { Int(ck_tensor_numel(handle)) }
  public var dtype: DType { DType(rawValue: ck_tensor_dtype(handle)) ?? .float32 }
  public var device: Device {
    switch ck_tensor_device_type(handle) {
    case 1: return .cuda(Int(ck_tensor_device_index(handle)))
    case 2: return .meta
    default: return .cpu
    }
  }
  public var isContiguous: Bool { ck_tensor_is_contiguous(handle) != 0 }
  public func size(_ dim: Int) -> Int {
    let s = shape
    return s[dim < 0 ? dim + s.count : dim]
  }

  // MARK: creation

  /// A tensor holding a copy of `values`, shaped `shape` (a 1-D tensor when omitted).
  public convenience init<T: TensorElement>(_ values: [T], shape: [Int]? = nil) throws {
    let shape = shape ?? [values.count]
    let h = try values.withUnsafeBytes { raw in
      try Tensor.rawHandle(raw, shape: shape, dtype: T.dtype)
    }
    self.init(h)
  }

  /// A tensor holding a copy of raw little-endian bytes of `dtype` (used by safetensors/.pth).
  public convenience init(bytes: UnsafeRawBufferPointer, shape: [Int], dtype: DType) throws {
    self.init(try Tensor.rawHandle(bytes, shape: shape, dtype: dtype))
  }

  private static func rawHandle(_ raw: UnsafeRawBufferPointer, shape: [Int], dtype: DType) throws -> ck_tensor {
    let dims = shape.map(Int64.init)
    var out: ck_tensor? = nil
    try dims.withUnsafeBufferPointer { d in
      try check("tensor", ck_from_data(raw.baseAddress, raw.count, d.baseAddress, Int64(d.count), dtype.rawValue, &out))
    }
    guard let out else { throw TorchError.invalidArgument("tensor: no result") }
    return out
  }

  public static func scalar<T: TensorElement>(_ v: T) throws -> Tensor { try Tensor([v], shape: []) }

  public static func full(_ shape: [Int], _ value: Double, dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
    let dims = shape.map(Int64.init)
    let (t, i) = device.code
    return try make("full") { out in dims.withUnsafeBufferPointer { ck_full($0.baseAddress, Int64($0.count), value, dtype.rawValue, t, i, out) } }
  }
  public static func zeros(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
    try full(shape, 0, dtype: dtype, device: device)
  }
  public static func ones(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
    try full(shape, 1, dtype: dtype, device: device)
  }
  public static func empty(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
    let dims = shape.map(Int64.init)
    let (t, i) = device.code
    return try make("empty") { out in dims.withUnsafeBufferPointer { ck_empty($0.baseAddress, Int64($0.count), dtype.rawValue, t, i, out) } }
  }
  /// torch.linspace(start, end, steps), float32.
  public static func linspace(_ start: Double, _ end: Double, steps: Int, device: Device = .cpu) throws -> Tensor {
    let (t, i) = device.code
    return try make("linspace") { ck_linspace(start, end, Int64(steps), t, i, $0) }
  }
  public static func arange(_ start: Double = 0, _ end: Double, step: Double = 1, dtype: DType = .int64, device: Device = .cpu) throws -> Tensor {
    let (t, i) = device.code
    return try make("arange") { ck_arange(start, end, step, dtype.rawValue, t, i, $0) }
  }

  // MARK: reading values back

  /// Copies the elements (in C order) into a Swift array; the dtype must match `T`.
  public func toArray<T: TensorElement>(_: T.Type = T.self) throws -> [T] {
    guard dtype == T.dtype else {
      throw TorchError.invalidArgument("toArray: tensor is \(dtype), asked for \(T.dtype)")
    }
    let n = count
    return try [T](unsafeUninitializedCapacity: n) { buf, initialized in
      try check("toArray", ck_copy_to_buffer(handle, buf.baseAddress, n * T.dtype.itemSize))
      initialized = n
    }
  }
  /// Elements as Float, converting the dtype if needed.
  public func floats() throws -> [Float] {
    try (dtype == .float32 ? self : to(.float32)).toArray(Float.self)
  }
  /// Raw bytes of the elements in C order (host copy).
  public func bytes() throws -> [UInt8] {
    let n = count * dtype.itemSize
    return try [UInt8](unsafeUninitializedCapacity: n) { buf, initialized in
      try check("bytes", ck_copy_to_buffer(handle, buf.baseAddress, n))
      initialized = n
    }
  }
  public func item() throws -> Double {
    var v = 0.0
    try check("item", ck_item_double(handle, &v))
    return v
  }

  // MARK: conversion

  public func to(_ dtype: DType) throws -> Tensor { try to(dtype, device: device) }
  public func to(device: Device) throws -> Tensor { try to(dtype, device: device) }
  /// `nonBlocking`: a copy from pinned host memory to a GPU returns before it finishes (it is
  /// ordered on the device's stream before the kernels that read it).
  public func to(_ dtype: DType, device: Device, nonBlocking: Bool = false) throws -> Tensor {
    let (t, i) = device.code
    return try Tensor.make("to(\(dtype), \(device))") { ck_to(handle, dtype.rawValue, t, i, nonBlocking ? 1 : 0, $0) }
  }
  /// This tensor on `device`: itself when it is already there, else a plain (blocking) copy. For
  /// one-off placement (weights); per-batch data goes through `upload`.
  public func moved(to device: Device) throws -> Tensor { device == self.device ? self : try to(device: device) }

  /// Zeros with this tensor's shape, dtype, device and memory layout.
  public func zerosLike() throws -> Tensor { try Tensor.make("zeros_like") { ck_zeros_like(handle, $0) } }

  /// An uninitialised host tensor in page-locked memory (fill it with `write`, then `upload`).
  public static func emptyPinned(_ shape: [Int], dtype: DType = .float32) throws -> Tensor {
    let dims = shape.map(Int64.init)
    return try make("empty pinned") { out in dims.withUnsafeBufferPointer { ck_empty_pinned($0.baseAddress, Int64($0.count), dtype.rawValue, out) } }
  }
  /// Copies `values` into this contiguous host tensor starting at element `offset` (bounds checked).
  public func write<T: TensorElement>(_ values: [T], at offset: Int) throws {
    guard T.dtype == dtype, offset >= 0 else { throw TorchError.invalidArgument("write: \(T.dtype) values into a \(dtype) tensor at \(offset)") }
    try values.withUnsafeBytes { raw in
      try check("write", ck_write_bytes(handle, offset * dtype.itemSize, raw.baseAddress, raw.count))
    }
  }
  /// A copy in page-locked host memory (what a non-blocking host-to-GPU copy needs).
  public func pinned() throws -> Tensor { try Tensor.make("pin_memory") { ck_pin_memory(handle, $0) } }
  /// This host tensor on `device`: on a GPU through pinned memory and a non-blocking copy, so the
  /// host goes on preparing the next batch while the copy and the kernels run; elsewhere as is.
  public func upload(to device: Device) throws -> Tensor {
    guard device.isCUDA, self.device == .cpu, Tensor.pinnedUploads else { return device == self.device ? self : try to(device: device) }
    return try pinned().to(dtype, device: device, nonBlocking: true)
  }
  /// Whether `upload` goes through page-locked memory (TAO's dataset.pin_memory; set once per job).
  nonisolated(unsafe) public static var pinnedUploads = true
}

extension Tensor: CustomStringConvertible {
  public var description: String { "Tensor(\(shape), \(dtype), \(device))" }
}
