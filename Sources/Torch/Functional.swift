import CTorch
import Foundation

/// Neural-network functions (torch.nn.functional counterparts).
public enum F {
  public static func linear(_ x: Tensor, _ w: Tensor, _ b: Tensor? = nil) throws -> Tensor {
    try Tensor.make("linear \(x.shape) x \(w.shape)") { ck_linear(x.handle, w.handle, b?.handle, $0) }
  }
  public static func conv2d(_ x: Tensor, _ w: Tensor, _ b: Tensor? = nil, stride: (Int, Int) = (1, 1),
                            padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1) throws -> Tensor {
    let s = [Int64(stride.0), Int64(stride.1)], p = [Int64(padding.0), Int64(padding.1)]
    let d = [Int64(dilation.0), Int64(dilation.1)]
    return try Tensor.make("conv2d \(x.shape) * \(w.shape)") { out in
      ck_conv2d(x.handle, w.handle, b?.handle, s, p, d, Int64(groups), out)
    }
  }
  public static func layerNorm(_ x: Tensor, shape: [Int], weight: Tensor?, bias: Tensor?, eps: Double) throws -> Tensor {
    let s = shape.map(Int64.init)
    return try Tensor.make("layer_norm") { out in
      s.withUnsafeBufferPointer { ck_layer_norm(x.handle, $0.baseAddress, Int64($0.count), weight?.handle, bias?.handle, eps, out) }
    }
  }
  public static func softmax(_ x: Tensor, dim: Int) throws -> Tensor {
    try Tensor.make("softmax") { ck_softmax(x.handle, Int64(dim), 0, $0) }
  }
  public static func logSoftmax(_ x: Tensor, dim: Int) throws -> Tensor {
    try Tensor.make("log_softmax") { ck_softmax(x.handle, Int64(dim), 1, $0) }
  }
  /// Scaled dot-product attention on [B, H, L, D] tensors. `mask` is boolean (true = attend) or
  /// additive float; `scale` nil means 1/sqrt(D).
  public static func scaledDotProductAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, mask: Tensor? = nil,
                                               dropout: Double = 0, isCausal: Bool = false, scale: Double? = nil) throws -> Tensor {
    try Tensor.make("scaled_dot_product_attention") {
      ck_sdpa(q.handle, k.handle, v.handle, mask?.handle, dropout, isCausal ? 1 : 0, scale ?? .nan, $0)
    }
  }
  public static func embedding(_ ids: Tensor, weight: Tensor) throws -> Tensor {
    try Tensor.make("embedding") { ck_embedding(weight.handle, ids.handle, $0) }
  }
  public enum LossReduction: Int32 { case none = 0, mean = 1, sum = 2 }
  /// Cross-entropy of logits [N, C] against class indices [N] (int64).
  public static func crossEntropy(_ logits: Tensor, _ target: Tensor, reduction: LossReduction = .mean,
                                  labelSmoothing: Double = 0) throws -> Tensor {
    try Tensor.make("cross_entropy") { ck_cross_entropy(logits.handle, target.handle, reduction.rawValue, labelSmoothing, $0) }
  }
  public enum InterpolationMode: Int32 { case nearest = 0, bilinear = 1, bicubic = 2 }
  /// Resizes an NCHW tensor to (height, width), like F.interpolate(size=...).
  public static func interpolate(_ x: Tensor, size: (Int, Int), mode: InterpolationMode,
                                 alignCorners: Bool = false, antialias: Bool = false) throws -> Tensor {
    try Tensor.make("interpolate") {
      ck_interpolate(x.handle, Int64(size.0), Int64(size.1), mode.rawValue, alignCorners ? 1 : 0, antialias ? 1 : 0, $0)
    }
  }
  /// `F.interpolate(x, scale_factor=scales)`: output size floor(input·scale), sampling by the
  /// given scales (not the rounded sizes), as PyTorch does without recompute_scale_factor.
  public static func interpolate(_ x: Tensor, scales: (Double, Double), mode: InterpolationMode, alignCorners: Bool = false) throws -> Tensor {
    let (h, w) = (Int((Double(x.size(2)) * scales.0).rounded(.down)), Int((Double(x.size(3)) * scales.1).rounded(.down)))
    return try Tensor.make("interpolate") {
      ck_interpolate_scaled(x.handle, Int64(h), Int64(w), mode.rawValue, alignCorners ? 1 : 0, 0, scales.0, scales.1, $0)
    }
  }
  /// `F.grid_sample(x, grid, mode, padding_mode='zeros', align_corners)`: x [N, C, H, W] sampled at
  /// grid [N, Ho, Wo, 2] (x, y in [-1, 1]).
  public static func gridSample(_ x: Tensor, grid: Tensor, mode: InterpolationMode = .bilinear, alignCorners: Bool) throws -> Tensor {
    // at::grid_sampler numbers its modes bilinear 0, nearest 1, bicubic 2.
    let m: Int32 = mode == .bilinear ? 0 : mode == .nearest ? 1 : 2
    return try Tensor.make("grid_sample") { ck_grid_sample(x.handle, grid.handle, m, 0, alignCorners ? 1 : 0, $0) }
  }
  public static func dropout(_ x: Tensor, p: Double, training: Bool) throws -> Tensor {
    if !training || p == 0 { return x }
    return try Tensor.make("dropout") { ck_dropout(x.handle, p, 1, $0) }
  }
}
