import Foundation

/// Eval-time image preprocessing of the CLIP families: resize (squash, or shortest side then
/// centre crop with the rounding of a given reference), then scale and normalise to a CHW float
/// array.
public struct ImageTransform: Sendable {
  public enum Resize: Sendable, Equatable {
    /// Resize both sides to exactly (width, height): SigLIP's processor.
    case squash(width: Int, height: Int)
    /// Shortest side to `size`, long side and crop offsets rounded like torchvision
    /// (`int(size * long / short)`, `int(round((h - size) / 2))`): open_clip / TAO PyTorch.
    case shortestTorchvision(size: Int)
    /// Shortest side to `size`, long side `round(long * size / short)`, offsets `(w - size) // 2`:
    /// TAO Deploy's Pillow preprocessing.
    case shortestPillow(size: Int)
  }

  public var resize: Resize
  public var filter: ResampleFilter
  public var mean: [Double]
  public var std: [Double]
  public var rescale: Double

  public init(resize: Resize, filter: ResampleFilter, mean: [Double], std: [Double], rescale: Double = 1.0 / 255) {
    self.resize = resize
    self.filter = filter
    self.mean = mean
    self.std = std
    self.rescale = rescale
  }

  /// Output (height, width).
  public var outputSize: (Int, Int) {
    switch resize {
    case .squash(let w, let h): return (h, w)
    case .shortestTorchvision(let s), .shortestPillow(let s): return (s, s)
    }
  }

  /// The resized and cropped 8-bit image.
  public func resized(_ img: RGBImage) -> RGBImage {
    switch resize {
    case .squash(let w, let h):
      return img.resized(width: w, height: h, filter: filter)
    case .shortestTorchvision(let size):
      let (w, h) = img.width <= img.height
        ? (size, Int(Double(size) * Double(img.height) / Double(img.width)))
        : (Int(Double(size) * Double(img.width) / Double(img.height)), size)
      let r = img.resized(width: w, height: h, filter: filter)
      let top = Int((Double(h - size) / 2).rounded(.toNearestOrEven))
      let left = Int((Double(w - size) / 2).rounded(.toNearestOrEven))
      return r.cropped(left: left, top: top, width: size, height: size)
    case .shortestPillow(let size):
      let (w, h) = img.width <= img.height
        ? (size, Int((Double(img.height) * Double(size) / Double(img.width)).rounded(.toNearestOrEven)))
        : (Int((Double(img.width) * Double(size) / Double(img.height)).rounded(.toNearestOrEven)), size)
      let r = img.resized(width: w, height: h, filter: filter)
      return r.cropped(left: (w - size) / 2, top: (h - size) / 2, width: size, height: size)
    }
  }

  /// CHW float32 values: `float32(v * rescale)` then `(x - mean) / std` in float32, as the Hugging
  /// Face processors compute them.
  public func normalized(_ img: RGBImage) -> [Float] {
    let n = img.width * img.height
    var out = [Float](repeating: 0, count: 3 * n)
    let m = mean.map(Float.init), s = std.map(Float.init)
    img.pixels.withUnsafeBufferPointer { p in
      out.withUnsafeMutableBufferPointer { o in
        for c in 0..<3 {
          let base = c * n
          for i in 0..<n {
            let x = Float(Double(p[3 * i + c]) * rescale)
            o[base + i] = (x - m[c]) / s[c]
          }
        }
      }
    }
    return out
  }

  public func callAsFunction(_ img: RGBImage) -> [Float] { normalized(resized(img)) }
}

/// SigLIP 2 NaFlex preprocessing (Siglip2ImageProcessor): resize so the patch grid fits
/// `maxNumPatches` (binary search on a scale, sides rounded up to whole patches), scale and
/// normalise, cut into patches flattened in (row, column, channel) order, and zero-pad to
/// `maxNumPatches` with a mask.
public struct NaFlexTransform: Sendable {
  public var patchSize: Int
  public var maxNumPatches: Int
  public var filter: ResampleFilter
  public var mean: [Double]
  public var std: [Double]
  public var rescale: Double

  public init(patchSize: Int, maxNumPatches: Int, filter: ResampleFilter, mean: [Double], std: [Double], rescale: Double = 1.0 / 255) {
    self.patchSize = patchSize
    self.maxNumPatches = maxNumPatches
    self.filter = filter
    self.mean = mean
    self.std = std
    self.rescale = rescale
  }

  /// transformers' get_image_size_for_max_num_patches, in the same floating-point steps.
  public func targetSize(height: Int, width: Int) -> (Int, Int) {
    let p = Double(patchSize)
    func scaled(_ s: Double, _ size: Int) -> Int { max(patchSize, Int((Double(size) * s / p).rounded(.up) * p)) }
    let eps = 1e-5
    var lo = eps / 10, hi = 100.0
    while hi - lo >= eps {
      let s = (lo + hi) / 2
      let n = (Double(scaled(s, height)) / p) * (Double(scaled(s, width)) / p)
      if n <= Double(maxNumPatches) { lo = s } else { hi = s }
    }
    return (scaled(lo, height), scaled(lo, width))
  }

  /// (patches [maxNumPatches × 3·P·P], mask [maxNumPatches], (grid rows, grid columns)).
  public func callAsFunction(_ img: RGBImage) -> (patches: [Float], mask: [Int64], shape: (Int, Int)) {
    let (h, w) = targetSize(height: img.height, width: img.width)
    let r = img.resized(width: w, height: h, filter: filter)
    let chw = ImageTransform(resize: .squash(width: w, height: h), filter: filter, mean: mean, std: std, rescale: rescale).normalized(r)
    let P = patchSize, gh = h / P, gw = w / P, dim = 3 * P * P
    var patches = [Float](repeating: 0, count: maxNumPatches * dim)
    var mask = [Int64](repeating: 0, count: maxNumPatches)
    for py in 0..<gh {
      for px in 0..<gw {
        let n = py * gw + px
        mask[n] = 1
        var o = n * dim
        for y in 0..<P {
          for x in 0..<P {
            for c in 0..<3 {
              patches[o] = chw[c * h * w + (py * P + y) * w + px * P + x]
              o += 1
            }
          }
        }
      }
    }
    return (patches, mask, (gh, gw))
  }
}
