import CTorch
import Foundation

// Autograd, grad mode and autocast. libtorch keeps grad mode and autocast state per thread, so
// these scopes affect only the calling thread.

extension Tensor {
  public var requiresGrad: Bool { ck_tensor_requires_grad(handle) != 0 }

  /// Marks a leaf tensor as trainable (or not). Returns self for chaining.
  @discardableResult
  public func requiresGrad(_ flag: Bool) throws -> Tensor {
    try check("requires_grad", ck_set_requires_grad(handle, flag ? 1 : 0))
    return self
  }
  /// Back-propagates from this tensor (a scalar unless `gradient` is given).
  public func backward(_ gradient: Tensor? = nil, retainGraph: Bool = false) throws {
    try check("backward", ck_backward(handle, gradient?.handle, retainGraph ? 1 : 0))
  }
  /// The accumulated gradient, nil when none has been computed.
  public var grad: Tensor? {
    var out: ck_tensor? = nil
    guard ck_grad(handle, &out) == nil, let out else { return nil }
    return Tensor(out)
  }
  /// Drops the accumulated gradient (PyTorch's zero_grad(set_to_none=True)).
  public func zeroGrad() throws { try check("zero_grad", ck_zero_grad(handle)) }

  // In-place updates, for optimizers and weight loading (run them under `noGrad`).
  public func add_(_ other: Tensor, alpha: Double = 1) throws { try check("add_", ck_add_(handle, other.handle, alpha)) }
  public func mul_(_ s: Double) throws { try check("mul_", ck_mul_scalar_(handle, s)) }
  public func mul_(_ other: Tensor) throws { try check("mul_", ck_mul_(handle, other.handle)) }
  public func addcmul_(_ t1: Tensor, _ t2: Tensor, value: Double = 1) throws {
    try check("addcmul_", ck_addcmul_(handle, t1.handle, t2.handle, value))
  }
  public func addcdiv_(_ t1: Tensor, _ t2: Tensor, value: Double = 1) throws {
    try check("addcdiv_", ck_addcdiv_(handle, t1.handle, t2.handle, value))
  }
  public func lerp_(_ end: Tensor, weight: Double) throws { try check("lerp_", ck_lerp_(handle, end.handle, weight)) }
  public func copy_(_ src: Tensor) throws { try check("copy_ \(src.shape) -> \(shape)", ck_copy_(handle, src.handle)) }
  public func fill_(_ v: Double) throws { try check("fill_", ck_fill_(handle, v)) }
  public func clamp_(min: Double? = nil, max: Double? = nil) throws {
    try check("clamp_", ck_clamp_(handle, min == nil ? 0 : 1, min ?? 0, max == nil ? 0 : 1, max ?? 0))
  }
}

/// Whether operations on this thread record autograd history.
public var isGradEnabled: Bool { ck_grad_enabled() != 0 }

/// Runs `body` with gradient recording off (torch.no_grad()).
public func noGrad<R>(_ body: () throws -> R) rethrows -> R {
  try withGradMode(false, body)
}
/// Runs `body` with gradient recording set to `enabled`, restoring the previous mode after.
public func withGradMode<R>(_ enabled: Bool, _ body: () throws -> R) rethrows -> R {
  let previous = ck_grad_enabled()
  ck_set_grad_enabled(enabled ? 1 : 0)
  defer { ck_set_grad_enabled(previous) }
  return try body()
}

/// Runs `body` under automatic mixed precision on `device` (torch.autocast): eligible ops such as
/// matmul and linear run in `dtype` (float16 or bfloat16), precision-sensitive ones in float32.
public func autocast<R>(_ device: Device = .cpu, dtype: DType = .bfloat16, enabled: Bool = true,
                        _ body: () throws -> R) throws -> R {
  let type = device.code.0
  let wasEnabled = ck_autocast_enabled(type)
  let previousDType = ck_autocast_dtype(type)
  try check("autocast", ck_autocast_set(type, enabled ? 1 : 0, dtype.rawValue))
  ck_autocast_enter()
  defer {
    ck_autocast_exit()
    _ = ck_autocast_set(type, wasEnabled, previousDType >= 0 ? previousDType : dtype.rawValue).map { ck_free($0) }
  }
  return try body()
}

public var isAutocastEnabled: Bool { ck_autocast_enabled(0) != 0 }

/// Activation checkpointing. `run(x, block)` computes `block(x)` without keeping its intermediate
/// activations; the backward pass runs the block again with gradients on (PyTorch's reentrant
/// checkpoint). The scope keeps the blocks alive: hold it until backward has run (a model keeps the
/// scope of its latest forward). Blocks must be deterministic.
public final class CheckpointScope {
  private var boxes: [CheckpointBox] = []
  public init() {}

  /// Runs `layers` in order on `x`; with `checkpointing` (and gradients on), each layer through a
  /// fresh scope stored in `scope`, which keeps it alive until the next forward, by when backward
  /// has run. Encoder stacks of every family use this.
  public static func runLayers<L>(_ layers: [L], _ x: Tensor, checkpointing: Bool, scope: inout CheckpointScope?,
                                  _ apply: @escaping (L, Tensor) throws -> Tensor) throws -> Tensor {
    var h = x
    guard checkpointing && isGradEnabled else {
      for layer in layers { h = try apply(layer, h) }
      return h
    }
    let s = CheckpointScope()
    scope = s
    for layer in layers { h = try s.run(h) { try apply(layer, $0) } }
    return h
  }

  public func run(_ x: Tensor, _ block: @escaping (Tensor) throws -> Tensor) throws -> Tensor {
    let box = CheckpointBox(block)
    boxes.append(box)
    let ctx = Unmanaged.passUnretained(box).toOpaque()
    var out: ck_tensor? = nil
    try check("checkpoint", ck_checkpoint({ ctx, input, out in
      let box = Unmanaged<CheckpointBox>.fromOpaque(ctx!).takeUnretainedValue()
      do {
        var copy: ck_tensor? = nil
        if let e = ck_shallow_copy(input, &copy) { return e }
        let y = try box.block(Tensor(copy!))
        var result: ck_tensor? = nil
        if let e = ck_shallow_copy(y.handle, &result) { return e }
        out?.pointee = result
        return nil
      } catch {
        return strdup(error.localizedDescription)
      }
    }, ctx, x.handle, &out))
    return Tensor(out!)
  }
}

final class CheckpointBox {
  let block: (Tensor) throws -> Tensor
  init(_ b: @escaping (Tensor) throws -> Tensor) { block = b }
}
