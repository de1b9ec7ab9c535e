import CTorch

// Swift surface of the shim's op tables. Everything throws: libtorch checks shapes, dtypes and
// devices, and its message comes back as TorchError.torch.

enum UnaryOp: Int32 {
  case neg, exp, log, sqrt, rsqrt, abs, sigmoid, tanh, relu, geluErf, geluTanh, logSigmoid, sin,
    cos, floor, ceil, round, logicalNot, sign, square, contiguous, clone, detach, erf, log1p,
    reciprocal, isnan, isfinite, silu
}
enum BinaryOp: Int32 {
  case add, sub, mul, div, pow, maximum, minimum, eq, ne, lt, le, gt, ge, logicalAnd, logicalOr,
    matmul, remainder, atan2, floorDivide
  static let rsubScalar: Int32 = 100
}
public enum Reduction: Int32 { case sum, mean, amax, amin, logsumexp, norm2, variance, std, any, all, prod }

extension Tensor {
  func unary(_ op: UnaryOp) throws -> Tensor {
    try Tensor.make("\(op)") { ck_unary(op.rawValue, handle, $0) }
  }
  func binary(_ op: BinaryOp, _ other: Tensor) throws -> Tensor {
    try Tensor.make("\(op)") { ck_binary(op.rawValue, handle, other.handle, $0) }
  }
  func binary(_ op: BinaryOp, _ s: Double) throws -> Tensor {
    try Tensor.make("\(op)") { ck_binary_scalar(op.rawValue, handle, s, $0) }
  }

  // MARK: elementwise

  public func neg() throws -> Tensor { try unary(.neg) }
  public func exp() throws -> Tensor { try unary(.exp) }
  public func log() throws -> Tensor { try unary(.log) }
  public func sqrt() throws -> Tensor { try unary(.sqrt) }
  public func rsqrt() throws -> Tensor { try unary(.rsqrt) }
  public func abs() throws -> Tensor { try unary(.abs) }
  public func sigmoid() throws -> Tensor { try unary(.sigmoid) }
  public func tanh() throws -> Tensor { try unary(.tanh) }
  public func relu() throws -> Tensor { try unary(.relu) }
  public func silu() throws -> Tensor { try unary(.silu) }
  /// GELU; `approximate: true` is the tanh form (`gelu_pytorch_tanh`).
  public func gelu(approximate: Bool = false) throws -> Tensor { try unary(approximate ? .geluTanh : .geluErf) }
  public func logSigmoid() throws -> Tensor { try unary(.logSigmoid) }
  public func sin() throws -> Tensor { try unary(.sin) }
  public func cos() throws -> Tensor { try unary(.cos) }
  public func floor() throws -> Tensor { try unary(.floor) }
  public func ceil() throws -> Tensor { try unary(.ceil) }
  public func round() throws -> Tensor { try unary(.round) }
  public func logicalNot() throws -> Tensor { try unary(.logicalNot) }
  public func sign() throws -> Tensor { try unary(.sign) }
  public func square() throws -> Tensor { try unary(.square) }
  public func erf() throws -> Tensor { try unary(.erf) }
  public func log1p() throws -> Tensor { try unary(.log1p) }
  public func reciprocal() throws -> Tensor { try unary(.reciprocal) }
  public func isnan() throws -> Tensor { try unary(.isnan) }
  public func isfinite() throws -> Tensor { try unary(.isfinite) }
  public func contiguous() throws -> Tensor { try unary(.contiguous) }
  public func clone() throws -> Tensor { try unary(.clone) }
  /// Same storage, cut from the autograd graph.
  public func detach() throws -> Tensor { try unary(.detach) }

  public func pow(_ e: Double) throws -> Tensor { try binary(.pow, e) }
  public func pow(_ e: Tensor) throws -> Tensor { try binary(.pow, e) }
  public func maximum(_ o: Tensor) throws -> Tensor { try binary(.maximum, o) }
  public func minimum(_ o: Tensor) throws -> Tensor { try binary(.minimum, o) }
  public func matmul(_ o: Tensor) throws -> Tensor { try binary(.matmul, o) }
  public func remainder(_ o: Double) throws -> Tensor { try binary(.remainder, o) }
  public func floorDivide(_ o: Double) throws -> Tensor { try binary(.floorDivide, o) }
  public func atan2(_ o: Tensor) throws -> Tensor { try binary(.atan2, o) }
  public func eq(_ o: Tensor) throws -> Tensor { try binary(.eq, o) }
  public func eq(_ s: Double) throws -> Tensor { try binary(.eq, s) }
  public func ne(_ o: Tensor) throws -> Tensor { try binary(.ne, o) }
  public func ne(_ s: Double) throws -> Tensor { try binary(.ne, s) }
  public func lt(_ o: Tensor) throws -> Tensor { try binary(.lt, o) }
  public func lt(_ s: Double) throws -> Tensor { try binary(.lt, s) }
  public func le(_ o: Tensor) throws -> Tensor { try binary(.le, o) }
  public func le(_ s: Double) throws -> Tensor { try binary(.le, s) }
  public func gt(_ o: Tensor) throws -> Tensor { try binary(.gt, o) }
  public func gt(_ s: Double) throws -> Tensor { try binary(.gt, s) }
  public func ge(_ o: Tensor) throws -> Tensor { try binary(.ge, o) }
  public func ge(_ s: Double) throws -> Tensor { try binary(.ge, s) }
  public func logicalAnd(_ o: Tensor) throws -> Tensor { try binary(.logicalAnd, o) }
  public func logicalOr(_ o: Tensor) throws -> Tensor { try binary(.logicalOr, o) }

  public func clamp(min: Double? = nil, max: Double? = nil) throws -> Tensor {
    try Tensor.make("clamp") { ck_clamp(handle, min == nil ? 0 : 1, min ?? 0, max == nil ? 0 : 1, max ?? 0, $0) }
  }
  public func maskedFill(_ mask: Tensor, _ value: Double) throws -> Tensor {
    try Tensor.make("masked_fill") { ck_masked_fill(handle, mask.handle, value, $0) }
  }
  public static func `where`(_ cond: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
    try make("where") { ck_where(cond.handle, a.handle, b.handle, $0) }
  }

  // MARK: reductions

  /// Reduces over `dims` (every dimension when empty).
  public func reduce(_ op: Reduction, dims: [Int] = [], keepDim: Bool = false) throws -> Tensor {
    let d = dims.map(Int64.init)
    return try Tensor.make("\(op)") { out in
      d.withUnsafeBufferPointer { ck_reduce(op.rawValue, handle, $0.baseAddress, Int64($0.count), keepDim ? 1 : 0, out) }
    }
  }
  public func sum(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(.sum, dims: dims, keepDim: keepDim) }
  public func mean(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(.mean, dims: dims, keepDim: keepDim) }
  public func amax(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(.amax, dims: dims, keepDim: keepDim) }
  public func amin(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(.amin, dims: dims, keepDim: keepDim) }
  public func logsumexp(dims: [Int], keepDim: Bool = false) throws -> Tensor { try reduce(.logsumexp, dims: dims, keepDim: keepDim) }
  /// Euclidean norm over `dims`.
  public func norm(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(.norm2, dims: dims, keepDim: keepDim) }
  public func argmax(dim: Int, keepDim: Bool = false) throws -> Tensor {
    try Tensor.make("argmax") { ck_arg_reduce(0, handle, Int64(dim), keepDim ? 1 : 0, $0) }
  }
  public func argmin(dim: Int, keepDim: Bool = false) throws -> Tensor {
    try Tensor.make("argmin") { ck_arg_reduce(1, handle, Int64(dim), keepDim ? 1 : 0, $0) }
  }
  public func cumsum(dim: Int) throws -> Tensor { try Tensor.make("cumsum") { ck_cumsum(handle, Int64(dim), $0) } }

  /// x / max(‖x‖₂, eps) over `dim`, as torch.nn.functional.normalize.
  public func l2Normalized(dim: Int = -1, eps: Double = 1e-12) throws -> Tensor {
    try self / (try norm(dims: [dim], keepDim: true).clamp(min: eps))
  }

  // MARK: sorting

  public func sort(dim: Int = -1, descending: Bool = false, stable: Bool = false) throws -> (values: Tensor, indices: Tensor) {
    var v: ck_tensor? = nil, i: ck_tensor? = nil
    try check("sort", ck_sort(handle, Int64(dim), descending ? 1 : 0, stable ? 1 : 0, &v, &i))
    return (Tensor(v!), Tensor(i!))
  }
  public func argsort(dim: Int = -1, descending: Bool = false, stable: Bool = false) throws -> Tensor {
    try sort(dim: dim, descending: descending, stable: stable).indices
  }
  public func topk(_ k: Int, dim: Int = -1, largest: Bool = true, sorted: Bool = true) throws -> (values: Tensor, indices: Tensor) {
    var v: ck_tensor? = nil, i: ck_tensor? = nil
    try check("topk", ck_topk(handle, Int64(k), Int64(dim), largest ? 1 : 0, sorted ? 1 : 0, &v, &i))
    return (Tensor(v!), Tensor(i!))
  }

  // MARK: shape and indexing

  public func reshape(_ shape: [Int]) throws -> Tensor {
    let s = shape.map(Int64.init)
    return try Tensor.make("reshape \(self.shape) -> \(shape)") { out in s.withUnsafeBufferPointer { ck_reshape(handle, $0.baseAddress, Int64($0.count), out) } }
  }
  public func permute(_ dims: [Int]) throws -> Tensor {
    let s = dims.map(Int64.init)
    return try Tensor.make("permute") { out in s.withUnsafeBufferPointer { ck_permute(handle, $0.baseAddress, Int64($0.count), out) } }
  }
  public func transpose(_ d0: Int, _ d1: Int) throws -> Tensor {
    try Tensor.make("transpose") { ck_transpose(handle, Int64(d0), Int64(d1), $0) }
  }
  public func expand(_ shape: [Int]) throws -> Tensor {
    let s = shape.map(Int64.init)
    return try Tensor.make("expand") { out in s.withUnsafeBufferPointer { ck_expand(handle, $0.baseAddress, Int64($0.count), out) } }
  }
  public func squeeze(_ dim: Int) throws -> Tensor { try Tensor.make("squeeze") { ck_squeeze(handle, Int64(dim), $0) } }
  public func unsqueeze(_ dim: Int) throws -> Tensor { try Tensor.make("unsqueeze") { ck_unsqueeze(handle, Int64(dim), $0) } }
  public func flatten(start: Int = 0, end: Int = -1) throws -> Tensor {
    try Tensor.make("flatten") { ck_flatten(handle, Int64(start), Int64(end), $0) }
  }
  public static func cat(_ ts: [Tensor], dim: Int = 0) throws -> Tensor {
    let hs: [ck_tensor?] = ts.map { $0.handle }
    return try make("cat") { out in hs.withUnsafeBufferPointer { ck_cat($0.baseAddress, Int64($0.count), Int64(dim), out) } }
  }
  public static func stack(_ ts: [Tensor], dim: Int = 0) throws -> Tensor {
    let hs: [ck_tensor?] = ts.map { $0.handle }
    return try make("stack") { out in hs.withUnsafeBufferPointer { ck_stack($0.baseAddress, Int64($0.count), Int64(dim), out) } }
  }
  /// Splits into pieces of the given sizes along `dim`.
  public func split(_ sizes: [Int], dim: Int = 0) throws -> [Tensor] {
    let s = sizes.map(Int64.init)
    var outs = [ck_tensor?](repeating: nil, count: sizes.count)
    try s.withUnsafeBufferPointer { sp in
      try outs.withUnsafeMutableBufferPointer { op in
        try check("split", ck_split(handle, sp.baseAddress, Int64(sp.count), Int64(dim), op.baseAddress))
      }
    }
    return outs.map { Tensor($0!) }
  }
  /// Splits into `n` equal pieces along `dim`.
  public func chunk(_ n: Int, dim: Int = 0) throws -> [Tensor] {
    let total = size(dim)
    guard n > 0, total % n == 0 else {
      throw TorchError.invalidArgument("chunk: dimension \(dim) of size \(total) does not split into \(n)")
    }
    return try split(Array(repeating: total / n, count: n), dim: dim)
  }
  public func narrow(dim: Int, start: Int, length: Int) throws -> Tensor {
    try Tensor.make("narrow") { ck_narrow(handle, Int64(dim), Int64(start), Int64(length), $0) }
  }
  public func slice(dim: Int, start: Int = 0, end: Int = Int.max, step: Int = 1) throws -> Tensor {
    try Tensor.make("slice") { ck_slice(handle, Int64(dim), Int64(start), Int64(clamping: end), Int64(step), $0) }
  }
  public func select(dim: Int, index: Int) throws -> Tensor {
    try Tensor.make("select") { ck_select(handle, Int64(dim), Int64(index), $0) }
  }
  public func indexSelect(dim: Int, index: Tensor) throws -> Tensor {
    try Tensor.make("index_select") { ck_index_select(handle, Int64(dim), index.handle, $0) }
  }
  public func gather(dim: Int, index: Tensor) throws -> Tensor {
    try Tensor.make("gather") { ck_gather(handle, Int64(dim), index.handle, $0) }
  }
  public func repeated(_ repeats: [Int]) throws -> Tensor {
    let r = repeats.map(Int64.init)
    return try Tensor.make("repeat") { out in r.withUnsafeBufferPointer { ck_repeat(handle, $0.baseAddress, Int64($0.count), out) } }
  }
  /// A view with explicit sizes, strides and offset into this (contiguous, 1-D) tensor's storage;
  /// refuses views that reach past the storage.
  public func asStrided(_ size: [Int], strides: [Int], offset: Int) throws -> Tensor {
    let a = size.map(Int64.init), b = strides.map(Int64.init)
    return try Tensor.make("as_strided") { out in
      a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
        ck_as_strided(handle, ap.baseAddress, bp.baseAddress, Int64(ap.count), Int64(offset), out)
      } }
    }
  }
  public func tril(_ diagonal: Int = 0) throws -> Tensor { try Tensor.make("tril") { ck_tril(handle, Int64(diagonal), $0) } }
  /// Constant padding; `pad` lists (before, after) pairs starting from the last dimension.
  public func pad(_ pad: [Int], value: Double = 0) throws -> Tensor {
    let p = pad.map(Int64.init)
    return try Tensor.make("pad") { out in p.withUnsafeBufferPointer { ck_pad(handle, $0.baseAddress, Int64($0.count), value, out) } }
  }
}

// MARK: operators (throwing: use with `try`)

public func + (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.add, b) }
public func - (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.sub, b) }
public func * (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.mul, b) }
public func / (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.div, b) }
public func + (a: Tensor, b: Double) throws -> Tensor { try a.binary(.add, b) }
public func - (a: Tensor, b: Double) throws -> Tensor { try a.binary(.sub, b) }
public func * (a: Tensor, b: Double) throws -> Tensor { try a.binary(.mul, b) }
public func / (a: Tensor, b: Double) throws -> Tensor { try a.binary(.div, b) }
public func + (a: Double, b: Tensor) throws -> Tensor { try b.binary(.add, a) }
public func * (a: Double, b: Tensor) throws -> Tensor { try b.binary(.mul, a) }
public func - (a: Double, b: Tensor) throws -> Tensor {
  try Tensor.make("rsub") { ck_binary_scalar(BinaryOp.rsubScalar, b.handle, a, $0) }
}
public prefix func - (a: Tensor) throws -> Tensor { try a.neg() }
