import CTorch

/// libtorch's multi-tensor kernels: one launch for a whole list of tensors (what keeps a GPU busy
/// where a per-tensor loop would launch thousands of tiny kernels per step).
public enum Fused {
  private static func withHandles<R>(_ lists: [[Tensor]], _ body: ([UnsafePointer<ck_tensor?>?]) throws -> R) rethrows -> R {
    let hs: [[ck_tensor?]] = lists.map { $0.map { $0.handle } }
    func nest(_ i: Int, _ acc: [UnsafePointer<ck_tensor?>?]) throws -> R {
      if i == hs.count { return try body(acc) }
      return try hs[i].withUnsafeBufferPointer { try nest(i + 1, acc + [$0.baseAddress]) }
    }
    return try nest(0, [])
  }

  /// torch.optim.AdamW(fused=True): updates `params` in place from `grads`, the moments and the
  /// (already incremented) float step counters, all on one device.
  public static func adamw(params: [Tensor], grads: [Tensor], expAvgs: [Tensor], expAvgSqs: [Tensor], steps: [Tensor],
                           lr: Double, betas: (Double, Double), weightDecay: Double, eps: Double) throws {
    let n = params.count
    guard [grads.count, expAvgs.count, expAvgSqs.count, steps.count].allSatisfy({ $0 == n }) else {
      throw TorchError.invalidArgument("fused adamw: list lengths differ")
    }
    try withHandles([params, grads, expAvgs, expAvgSqs, steps]) { h in
      try check("_fused_adamw_", ck_fused_adamw(h[0], h[1], h[2], h[3], h[4], Int64(n), lr, betas.0, betas.1, weightDecay, eps))
    }
  }

  /// GradScaler's unscale: grads *= invScale in place; foundInf becomes 1 if any is inf or NaN.
  public static func unscale(_ grads: [Tensor], foundInf: Tensor, invScale: Tensor) throws {
    try withHandles([grads]) { h in
      try check("_amp_foreach_non_finite_check_and_unscale_", ck_amp_unscale(h[0], Int64(grads.count), foundInf.handle, invScale.handle))
    }
  }

  /// GradScaler's update: back off on inf, grow after `interval` clean steps (in place).
  public static func updateScale(_ scale: Tensor, growthTracker: Tensor, foundInf: Tensor, growth: Double, backoff: Double,
                                 interval: Int) throws {
    try check("_amp_update_scale_", ck_amp_update_scale(scale.handle, growthTracker.handle, foundInf.handle, growth, backoff, Int64(interval)))
  }
}
