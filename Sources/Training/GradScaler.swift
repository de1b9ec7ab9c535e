import Foundation
import Torch

/// Dynamic loss scaling for fp16 training (torch.amp.GradScaler): the loss is multiplied by
/// `scale` before backward so small fp16 gradients do not flush to zero; gradients are divided by
/// it again before the optimiser. A step whose gradients overflowed is skipped and the scale
/// halved; after `growthInterval` clean steps in a row it doubles.
public final class GradScaler {
  public private(set) var scale: Double
  public let growthFactor: Double
  public let backoffFactor: Double
  public let growthInterval: Int
  /// Clean steps since the last change of scale.
  public private(set) var growthTracker = 0

  public init(initScale: Double = 65536, growthFactor: Double = 2, backoffFactor: Double = 0.5, growthInterval: Int = 2000) {
    scale = initScale
    self.growthFactor = growthFactor
    self.backoffFactor = backoffFactor
    self.growthInterval = growthInterval
  }

  public func scaled(_ loss: Tensor) throws -> Tensor { try loss * scale }

  /// Unscales the gradients in place, runs `step` unless one of them is inf/NaN, then updates the
  /// scale. `beforeStep` sees unscaled gradients (gradient clipping). Returns whether it stepped.
  @discardableResult
  public func step(_ params: [Tensor], beforeStep: () throws -> Void = {}, _ step: () throws -> Void) throws -> Bool {
    // torch computes 1/scale in double and applies it as an fp32 value.
    let inverse = Double(Float(1 / scale))
    var finite = true
    try noGrad {
      for p in params {
        guard let g = p.grad else { continue }
        try g.mul_(inverse)
        if finite, try g.isfinite().logicalNot().sum().item() > 0 { finite = false }
      }
    }
    if finite {
      try beforeStep()
      try step()
      growthTracker += 1
      if growthTracker == growthInterval { scale *= growthFactor; growthTracker = 0 }
    } else {
      scale *= backoffFactor
      growthTracker = 0
    }
    // The scale is an fp32 tensor in torch.
    scale = Double(Float(scale))
    return finite
  }

  /// For checkpoints: Lightning's `native_amp_scaling_state` (GradScaler.state_dict()).
  public var state: [String: Double] {
    ["scale": scale, "growth_factor": growthFactor, "backoff_factor": backoffFactor,
     "growth_interval": Double(growthInterval), "_growth_tracker": Double(growthTracker)]
  }

  public func restore(scale: Double, growthTracker: Int) {
    self.scale = scale
    self.growthTracker = growthTracker
  }
}
