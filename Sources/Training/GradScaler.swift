import Foundation
import Torch

/// Dynamic loss scaling for fp16 training (torch.amp.GradScaler): the loss is multiplied by
/// `scale` before backward so small fp16 gradients do not flush to zero; gradients are divided by
/// it again before the optimiser. A step whose gradients overflowed is skipped and the scale
/// halved; after `growthInterval` clean steps in a row it doubles. The scale and its tracker are
/// tensors on the loss's device, updated by libtorch's `_amp_*` kernels as in PyTorch.
public final class GradScaler {
  public let growthFactor: Double
  public let backoffFactor: Double
  public let growthInterval: Int
  private var initial: (scale: Double, tracker: Int)
  private var scaleTensor: Tensor?
  private var tracker: Tensor?

  public init(initScale: Double = 65536, growthFactor: Double = 2, backoffFactor: Double = 0.5, growthInterval: Int = 2000) {
    initial = (initScale, 0)
    self.growthFactor = growthFactor
    self.backoffFactor = backoffFactor
    self.growthInterval = growthInterval
  }

  /// The current scale (reading it waits for the device).
  public var scale: Double { (try? scaleTensor?.item()) ?? Double(Float(initial.scale)) }
  /// Clean steps since the last change of scale.
  public var growthTracker: Int { (try? tracker?.item()).map { Int($0) } ?? initial.tracker }

  private func state(on device: Device) throws -> (Tensor, Tensor) {
    if let s = scaleTensor, let t = tracker, s.device == device { return (s, t) }
    let s = try Tensor.full([], scale, device: device)
    let t = try Tensor.full([], Double(growthTracker), dtype: .int32, device: device)
    (scaleTensor, tracker) = (s, t)
    return (s, t)
  }

  public func scaled(_ loss: Tensor) throws -> Tensor { try loss * state(on: loss.device).0 }

  /// Unscales the gradients in place, runs `step` unless one of them is inf/NaN, then updates the
  /// scale. `beforeStep` sees unscaled gradients (gradient clipping). Returns whether it stepped.
  @discardableResult
  public func step(_ params: [Tensor], beforeStep: () throws -> Void = {}, _ step: () throws -> Void) throws -> Bool {
    let grads = params.compactMap(\.grad)
    let device = grads.first?.device ?? scaleTensor?.device ?? .cpu
    let (s, t) = try state(on: device)
    let foundInf = try Tensor.zeros([1], device: device)
    try noGrad {
      // torch computes 1/scale in double and applies it as an fp32 value.
      let inverse = try s.to(.float64).reciprocal().to(.float32)
      // The kernel takes one device's gradients of one dtype at a time.
      for group in Dictionary(grouping: grads, by: { $0.dtype }).values {
        try Fused.unscale(group, foundInf: foundInf, invScale: inverse)
      }
    }
    let finite = try foundInf.item() == 0
    if finite {
      try beforeStep()
      try step()
    }
    try noGrad { try Fused.updateScale(s, growthTracker: t, foundInf: foundInf, growth: growthFactor, backoff: backoffFactor, interval: growthInterval) }
    return finite
  }

  /// For checkpoints: Lightning's `native_amp_scaling_state` (GradScaler.state_dict()).
  public var state: [String: Double] {
    ["scale": scale, "growth_factor": growthFactor, "backoff_factor": backoffFactor,
     "growth_interval": Double(growthInterval), "_growth_tracker": Double(growthTracker)]
  }

  public func restore(scale: Double, growthTracker: Int) {
    initial = (scale, growthTracker)
    scaleTensor = nil
    tracker = nil
  }
}
