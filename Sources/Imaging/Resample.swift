import Foundation

/// Pillow's resampling filters (`Image.Resampling`).
public enum ResampleFilter: Int, Sendable, CaseIterable {
  case nearest = 0, lanczos = 1, bilinear = 2, bicubic = 3, box = 4, hamming = 5

  /// Pillow's integer codes (PIL.Image.Resampling values), as preprocessor_config.json stores them.
  public init?(pillowCode: Int) { self.init(rawValue: pillowCode) }

  var support: Double {
    switch self {
    case .nearest, .box: return 0.5
    case .bilinear, .hamming: return 1
    case .bicubic: return 2
    case .lanczos: return 3
    }
  }

  func weight(_ v: Double) -> Double {
    var x = v
    switch self {
    case .nearest, .box:
      return x > -0.5 && x <= 0.5 ? 1 : 0
    case .bilinear:
      if x < 0 { x = -x }
      return x < 1 ? 1 - x : 0
    case .hamming:
      if x < 0 { x = -x }
      if x == 0 { return 1 }
      if x >= 1 { return 0 }
      x *= .pi
      return Foundation.sin(x) / x * (0.54 + 0.46 * Foundation.cos(x))
    case .bicubic:
      let a = -0.5
      if x < 0 { x = -x }
      if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
      if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
      return 0
    case .lanczos:
      func sinc(_ t: Double) -> Double {
        if t == 0 { return 1 }
        let p = t * .pi
        return Foundation.sin(p) / p
      }
      return -3 <= x && x < 3 ? sinc(x) * sinc(x / 3) : 0
    }
  }
}

/// Pillow's two-pass convolution resize for 8-bit images (Resample.c): per output pixel a window
/// of filter weights normalised to sum 1, quantised to 22-bit fixed point, horizontal pass into an
/// 8-bit intermediate, then vertical pass, rounding and clipping exactly as Pillow does.
enum Resampler {
  static let precisionBits = 32 - 8 - 2

  struct Coefficients {
    var ksize: Int
    var bounds: [Int]      // (start, count) per output pixel
    var weights: [Int32]   // ksize per output pixel
  }

  static func coefficients(inSize: Int, in0: Double, in1: Double, outSize: Int, filter: ResampleFilter) -> Coefficients {
    let scale = (in1 - in0) / Double(outSize)
    let filterScale = max(scale, 1)
    let support = filter.support * filterScale
    let ksize = Int(Foundation.ceil(support)) * 2 + 1
    var bounds = [Int](repeating: 0, count: outSize * 2)
    var weights = [Int32](repeating: 0, count: outSize * ksize)
    var k = [Double](repeating: 0, count: ksize)
    for xx in 0..<outSize {
      let center = in0 + (Double(xx) + 0.5) * scale
      let ss = 1 / filterScale
      var xmin = Int(center - support + 0.5)
      if xmin < 0 { xmin = 0 }
      var xmax = Int(center + support + 0.5)
      if xmax > inSize { xmax = inSize }
      xmax -= xmin
      var ww = 0.0
      for x in 0..<max(xmax, 0) {
        let w = filter.weight((Double(x + xmin) - center + 0.5) * ss)
        k[x] = w
        ww += w
      }
      for x in 0..<ksize {
        var w = x < xmax ? k[x] : 0
        if x < xmax && ww != 0 { w /= ww }
        let f = w * Double(1 << precisionBits)
        weights[xx * ksize + x] = Int32(w < 0 ? Int(-0.5 + f) : Int(0.5 + f))
      }
      bounds[2 * xx] = xmin
      bounds[2 * xx + 1] = max(xmax, 0)
    }
    return Coefficients(ksize: ksize, bounds: bounds, weights: weights)
  }

  @inline(__always)
  static func clip8(_ v: Int32) -> UInt8 {
    if v >= Int32(1 << precisionBits) << 8 { return 255 }
    if v <= 0 { return 0 }
    return UInt8(truncatingIfNeeded: v >> Int32(precisionBits))
  }

  static func resize(_ image: RGBImage, width: Int, height: Int, filter: ResampleFilter,
                     box: (Double, Double, Double, Double)? = nil) -> RGBImage {
    let b = box ?? (0, 0, Double(image.width), Double(image.height))
    if filter == .nearest { return nearest(image, width: width, height: height, box: b) }
    let needH = width != image.width || b.0 != 0 || b.2 != Double(width)
    let needV = height != image.height || b.1 != 0 || b.3 != Double(height)
    let h = coefficients(inSize: image.width, in0: b.0, in1: b.2, outSize: width, filter: filter)
    var v = coefficients(inSize: image.height, in0: b.1, in1: b.3, outSize: height, filter: filter)
    let yFirst = v.bounds[0]
    let yLast = v.bounds[height * 2 - 2] + v.bounds[height * 2 - 1]
    var current = image
    if needH {
      for i in 0..<height { v.bounds[2 * i] -= yFirst }
      current = horizontal(image, width: width, rows: yFirst..<yLast, h)
    }
    if needV { current = vertical(current, height: height, v) }
    return current
  }

  static func horizontal(_ src: RGBImage, width: Int, rows: Range<Int>, _ c: Coefficients) -> RGBImage {
    var out = [UInt8](repeating: 0, count: width * rows.count * 3)
    let half = Int32(1 << (precisionBits - 1))
    src.pixels.withUnsafeBufferPointer { inp in
      out.withUnsafeMutableBufferPointer { o in
        c.weights.withUnsafeBufferPointer { kw in
          c.bounds.withUnsafeBufferPointer { bounds in
            // A pixel is read as 4 bytes (RGB + the next pixel's R, weighted and then dropped), so the
            // three channels go through one SIMD multiply-add; the buffer's last pixel is read bytewise.
            let lastWord = inp.count - 4
            for (yy, y) in rows.enumerated() {
              let rowStart = y * src.width * 3
              var orow = o.baseAddress! + yy * width * 3
              var k = kw.baseAddress!
              for xx in 0..<width {
                let n = bounds[2 * xx + 1]
                var at = rowStart + bounds[2 * xx] * 3
                var s = SIMD4<Int32>(repeating: half)
                if at + 3 * (n - 1) <= lastWord {
                  // Two accumulators halve the add chain the loop waits on.
                  var s2 = SIMD4<Int32>(repeating: 0)
                  let base = UnsafeRawPointer(inp.baseAddress! + at)
                  var x = 0
                  while x + 1 < n {
                    s &+= SIMD4<Int32>(truncatingIfNeeded: base.loadUnaligned(fromByteOffset: 3 * x, as: SIMD4<UInt8>.self)) &* k[x]
                    s2 &+= SIMD4<Int32>(truncatingIfNeeded: base.loadUnaligned(fromByteOffset: 3 * x + 3, as: SIMD4<UInt8>.self)) &* k[x + 1]
                    x += 2
                  }
                  if x < n { s &+= SIMD4<Int32>(truncatingIfNeeded: base.loadUnaligned(fromByteOffset: 3 * x, as: SIMD4<UInt8>.self)) &* k[x] }
                  s &+= s2
                } else {
                  for x in 0..<n {
                    let w = k[x]
                    s[0] &+= Int32(inp[at]) &* w; s[1] &+= Int32(inp[at + 1]) &* w; s[2] &+= Int32(inp[at + 2]) &* w
                    at += 3
                  }
                }
                orow[0] = clip8(s[0])
                orow[1] = clip8(s[1])
                orow[2] = clip8(s[2])
                orow += 3
                k += c.ksize
              }
            }
          }
        }
      }
    }
    return RGBImage(width: width, height: rows.count, pixels: out)
  }

  static func vertical(_ src: RGBImage, height: Int, _ c: Coefficients) -> RGBImage {
    let w3 = src.width * 3
    var out = [UInt8](repeating: 0, count: w3 * height)
    let half = Int32(1 << (precisionBits - 1))
    var acc = [Int32](repeating: 0, count: w3)
    src.pixels.withUnsafeBufferPointer { inp in
      out.withUnsafeMutableBufferPointer { o in
        c.weights.withUnsafeBufferPointer { kw in
          acc.withUnsafeMutableBufferPointer { a in
            for yy in 0..<height {
              let ymin = c.bounds[2 * yy], n = c.bounds[2 * yy + 1]
              let k = kw.baseAddress! + yy * c.ksize
              for i in 0..<w3 { a[i] = half }
              for y in 0..<n {
                let w = k[y]
                let row = inp.baseAddress! + (y + ymin) * w3
                for i in 0..<w3 { a[i] &+= Int32(row[i]) &* w }
              }
              let orow = o.baseAddress! + yy * w3
              for i in 0..<w3 { orow[i] = clip8(a[i]) }
            }
          }
        }
      }
    }
    return RGBImage(width: src.width, height: height, pixels: out)
  }

  /// Pillow's NEAREST resize: an affine scale with per-axis source coordinates accumulated in
  /// double precision (ImagingScaleAffine).
  static func nearest(_ src: RGBImage, width: Int, height: Int, box: (Double, Double, Double, Double)) -> RGBImage {
    let a0 = (box.2 - box.0) / Double(width), a4 = (box.3 - box.1) / Double(height)
    var xs = [Int](repeating: -1, count: width)
    var xo = box.0 + a0 * 0.5
    for x in 0..<width {
      let xin = xo < 0 ? -1 : Int(xo)
      if xin >= 0 && xin < src.width { xs[x] = xin }
      xo += a0
    }
    var out = RGBImage(width: width, height: height)
    var yo = box.1 + a4 * 0.5
    for y in 0..<height {
      let yin = yo < 0 ? -1 : Int(yo)
      yo += a4
      guard yin >= 0 && yin < src.height else { continue }
      for x in 0..<width where xs[x] >= 0 {
        let s = (yin * src.width + xs[x]) * 3, d = (y * width + x) * 3
        out.pixels[d] = src.pixels[s]; out.pixels[d + 1] = src.pixels[s + 1]; out.pixels[d + 2] = src.pixels[s + 2]
      }
    }
    return out
  }
}

extension RGBImage {
  /// `PIL.Image.resize((width, height), filter, box)` for an RGB image.
  public func resized(width: Int, height: Int, filter: ResampleFilter = .bicubic,
                      box: (Double, Double, Double, Double)? = nil) -> RGBImage {
    if width == self.width && height == self.height && box == nil { return self }
    return Resampler.resize(self, width: width, height: height, filter: filter, box: box)
  }

  /// `PIL.Image.crop((left, top, left + width, top + height))`: areas outside are black.
  public func cropped(left: Int, top: Int, width: Int, height: Int) -> RGBImage {
    var out = RGBImage(width: width, height: height)
    for y in 0..<height {
      let sy = top + y
      guard sy >= 0 && sy < self.height else { continue }
      for x in 0..<width {
        let sx = left + x
        guard sx >= 0 && sx < self.width else { continue }
        let s = (sy * self.width + sx) * 3, d = (y * width + x) * 3
        out.pixels[d] = pixels[s]; out.pixels[d + 1] = pixels[s + 1]; out.pixels[d + 2] = pixels[s + 2]
      }
    }
    return out
  }
}
