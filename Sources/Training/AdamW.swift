import Foundation
import Torch

/// One optimiser parameter group.
public struct ParamGroup {
  public var name: String
  public var params: [(String, Tensor)]
  public var lr: Double
  public var baseLR: Double
  public var weightDecay: Double

  public init(name: String, params: [(String, Tensor)], lr: Double, baseLR: Double, weightDecay: Double) {
    self.name = name
    self.params = params
    self.lr = lr
    self.baseLR = baseLR
    self.weightDecay = weightDecay
  }
}

/// torch.optim.AdamW (no amsgrad): decoupled weight decay, bias-corrected moments, eps added
/// after the square-root bias correction. On CPU the single-tensor path, step by step as
/// PyTorch's reference; on a GPU PyTorch's fused kernel (`fused=True`), one launch per group.
public final class AdamW {
  public var groups: [ParamGroup]
  public let betas: (Double, Double)
  public let eps: Double
  /// Per parameter (by name): step count, first and second moments.
  public private(set) var state: [String: (step: Int, m: Tensor, v: Tensor)] = [:]
  /// Float step counters of the fused kernel, per parameter, on its device.
  private var deviceSteps: [String: Tensor] = [:]
  /// The fused kernel: nil = on GPUs only (CPU keeps the reference loop).
  public let fused: Bool?

  public init(groups: [ParamGroup], betas: (Double, Double), eps: Double, fused: Bool? = nil) {
    self.groups = groups
    self.betas = betas
    self.eps = eps
    self.fused = fused
  }

  public func zeroGrad() throws {
    for g in groups { for (_, p) in g.params { try p.zeroGrad() } }
  }

  public func step() throws {
    try noGrad {
      for g in groups {
        var batch: (names: [String], p: [Tensor], g: [Tensor], m: [Tensor], v: [Tensor], steps: [Tensor]) = ([], [], [], [], [], [])
        for (name, p) in g.params {
          guard let grad = p.grad else { continue }
          // zeros_like keeps the parameter's layout (the fused kernel wants equal strides).
          var s = try state[name] ?? (0, p.zerosLike(), p.zerosLike())
          s.step += 1
          state[name] = s
          if self.fused ?? p.device.isCUDA {
            let st = try deviceSteps[name] ?? Tensor.full([], Double(s.step - 1), device: p.device)
            deviceSteps[name] = st
            batch.names.append(name); batch.p.append(p); batch.g.append(grad); batch.m.append(s.m); batch.v.append(s.v); batch.steps.append(st)
            continue
          }
          try p.mul_(1 - g.lr * g.weightDecay)
          try s.m.lerp_(grad, weight: 1 - betas.0)
          try s.v.mul_(betas.1)
          try s.v.addcmul_(grad, grad, value: 1 - betas.1)
          let bc1 = 1 - Foundation.pow(betas.0, Double(s.step))
          let bc2 = 1 - Foundation.pow(betas.1, Double(s.step))
          let denom = try s.v.sqrt() / bc2.squareRoot() + eps
          try p.addcdiv_(s.m, denom, value: -g.lr / bc1)
        }
        guard !batch.p.isEmpty else { continue }
        let one = try Tensor.ones([], device: batch.p[0].device)
        for st in batch.steps { try st.add_(one) }
        try Fused.adamw(params: batch.p, grads: batch.g, expAvgs: batch.m, expAvgSqs: batch.v, steps: batch.steps,
                        lr: g.lr, betas: betas, weightDecay: g.weightDecay, eps: eps)
      }
    }
  }

  /// Puts back a checkpoint's state for `name`, on that parameter's device.
  public func restore(_ name: String, step: Int, m: Tensor, v: Tensor) throws {
    let device = groups.lazy.flatMap(\.params).first { $0.0 == name }?.1.device ?? .cpu
    state[name] = (step, try m.upload(to: device), try v.upload(to: device))
    deviceSteps[name] = nil
  }
}

/// TAO's per-step learning rate (§3.5): linear warmup over `warmup` steps, then cosine, linear or
/// constant over the remaining `total - warmup` steps.
public func scheduledLR(base: Double, step t: Int, warmup w: Int, total: Int, kind: String) -> Double {
  if t < w { return base * Double(t + 1) / Double(max(w, 1)) }
  let progress = Double(t - w) / Double(max(total - w, 1))
  switch kind {
  case "linear": return base * max(1 - progress, 0)
  case "constant": return base
  default: return base * 0.5 * (1 + Foundation.cos(Double.pi * progress))
  }
}

/// Scales gradients so their global L2 norm is at most `maxNorm` (torch.nn.utils.clip_grad_norm_);
/// returns the norm before clipping.
@discardableResult
public func clipGradNorm(_ params: [Tensor], maxNorm: Double) throws -> Double {
  let grads = params.compactMap(\.grad)
  guard !grads.isEmpty else { return 0 }
  let total = try gradientNorm(params)
  let coef = maxNorm / (total + 1e-6)
  if coef < 1 { try noGrad { for g in grads { try g.mul_(coef) } } }
  return total
}

/// The global L2 norm of the parameters' gradients.
public func gradientNorm(_ params: [Tensor]) throws -> Double {
  let grads = params.compactMap(\.grad)
  guard !grads.isEmpty else { return 0 }
  return try noGrad { try grads.map { try $0.norm().square() }.reduce(try Tensor.zeros([], device: grads[0].device)) { try $0 + $1 }.sqrt().item() }
}
