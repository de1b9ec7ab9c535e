import Foundation

/// Training augmentation as open_clip/TAO build it (§8): RandomResizedCrop (bicubic, ratio 3/4–4/3)
/// → with probability p ColorJitter (brightness, contrast, saturation, hue in a random order, with
/// torchvision's factor ranges and Pillow's ImageEnhance arithmetic) → grayscale with probability.
public struct Augmentation: Sendable {
  public var size: (Int, Int)
  public var scale: (Double, Double)
  public var jitterProbability: Double
  public var brightness, contrast, saturation, hue: Double
  public var grayscale: Double

  /// From the spec's `dataset.augmentation` lists (TAO's parsing: `[p, b, c, s, h]`, the 4-value
  /// legacy form with p = 0.8, anything else disables jitter).
  public init(size: (Int, Int), scale: [Double], colorJitter: [Double], grayscale: Double) {
    self.size = size
    self.scale = scale.count == 2 ? (scale[0], scale[1]) : (1, 1)
    var j = colorJitter
    if j.count == 4 { j = [0.8] + j }
    if j.count == 5 {
      (jitterProbability, brightness, contrast, saturation, hue) = (j[0], j[1], j[2], j[3], j[4])
    } else {
      (jitterProbability, brightness, contrast, saturation, hue) = (0, 0, 0, 0, 0)
    }
    self.grayscale = grayscale
  }

  public var isIdentity: Bool { scale == (1, 1) && jitterProbability == 0 && grayscale == 0 }

  /// Applies the pipeline with random draws from `rng` (uniform doubles in [0, 1)).
  public func callAsFunction(_ img: RGBImage, rng: inout some RandomNumberGenerator) -> RGBImage {
    func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * Double.random(in: 0..<1, using: &rng) }
    // RandomResizedCrop.get_params
    let (W, H) = (img.width, img.height)
    let area = Double(W * H)
    var box: (Int, Int, Int, Int)? = nil  // left, top, w, h
    for _ in 0..<10 {
      let target = area * uniform(scale.0, scale.1)
      let aspect = Foundation.exp(uniform(Foundation.log(3.0 / 4), Foundation.log(4.0 / 3)))
      let w = Int((target * aspect).squareRoot().rounded(.toNearestOrEven))
      let h = Int((target / aspect).squareRoot().rounded(.toNearestOrEven))
      if w > 0 && h > 0 && w <= W && h <= H {
        box = (Int.random(in: 0...(W - w), using: &rng), Int.random(in: 0...(H - h), using: &rng), w, h)
        break
      }
    }
    if box == nil {
      let ratio = Double(W) / Double(H)
      var (w, h) = (W, H)
      if ratio < 3.0 / 4 { h = Int((Double(w) / (3.0 / 4)).rounded(.toNearestOrEven)) }
      else if ratio > 4.0 / 3 { w = Int((Double(h) * 4 / 3).rounded(.toNearestOrEven)) }
      box = ((W - w) / 2, (H - h) / 2, w, h)
    }
    let b = box!
    var out = img.resized(width: size.0, height: size.1, filter: .bicubic,
                          box: (Double(b.0), Double(b.1), Double(b.0 + b.2), Double(b.1 + b.3)))
    if jitterProbability > 0 && Double.random(in: 0..<1, using: &rng) < jitterProbability {
      var ops = [0, 1, 2, 3]
      ops.shuffle(using: &rng)
      let bf = uniform(max(0, 1 - brightness), 1 + brightness)
      let cf = uniform(max(0, 1 - contrast), 1 + contrast)
      let sf = uniform(max(0, 1 - saturation), 1 + saturation)
      let hf = uniform(-hue, hue)
      for op in ops {
        switch op {
        case 0 where brightness > 0: Augmentation.blendConstant(&out, 0, factor: bf)
        case 1 where contrast > 0: Augmentation.blendConstant(&out, Augmentation.meanLuma(out), factor: cf)
        case 2 where saturation > 0: Augmentation.blendLuma(&out, factor: sf)
        case 3 where hue > 0: out = Augmentation.shiftHue(out, hf)
        default: break
        }
      }
    }
    if grayscale > 0 && Double.random(in: 0..<1, using: &rng) < grayscale {
      for i in 0..<(out.width * out.height) {
        let l = Augmentation.luma((out.pixels[3 * i], out.pixels[3 * i + 1], out.pixels[3 * i + 2]))
        out.pixels[3 * i] = l; out.pixels[3 * i + 1] = l; out.pixels[3 * i + 2] = l
      }
    }
    return out
  }

  /// Pillow's RGB → L (ITU-R 601-2 luma, 16-bit fixed point).
  static func luma(_ p: (UInt8, UInt8, UInt8)) -> UInt8 {
    let r: Int = Int(p.0) * 19595, g: Int = Int(p.1) * 38470, b: Int = Int(p.2) * 7471
    return UInt8((r + g + b + 0x8000) >> 16)
  }
  /// ImageEnhance.Contrast's grey level: int(mean of L + 0.5).
  static func meanLuma(_ img: RGBImage) -> UInt8 {
    var sum = 0
    img.pixels.withUnsafeBufferPointer { p in
      for i in 0..<(img.width * img.height) {
        sum += Int(luma((p[3 * i], p[3 * i + 1], p[3 * i + 2])))
      }
    }
    return UInt8(min(255, Int(Double(sum) / Double(max(img.width * img.height, 1)) + 0.5)))
  }
  /// Image.blend(degenerate, img, factor) with Pillow's truncation and clipping.
  static func blend(_ img: RGBImage, toward degenerate: ((UInt8, UInt8, UInt8)) -> (UInt8, UInt8, UInt8), factor: Double) -> RGBImage {
    var out = img
    @inline(__always) func mix(_ a: UInt8, _ b: UInt8) -> UInt8 {
      let v = Double(a) + factor * (Double(b) - Double(a))
      return v <= 0 ? 0 : v >= 255 ? 255 : UInt8(v)
    }
    img.pixels.withUnsafeBufferPointer { src in
      out.pixels.withUnsafeMutableBufferPointer { dst in
        for i in 0..<(img.width * img.height) {
          let p = (src[3 * i], src[3 * i + 1], src[3 * i + 2])
          let d = degenerate(p)
          dst[3 * i] = mix(d.0, p.0); dst[3 * i + 1] = mix(d.1, p.1); dst[3 * i + 2] = mix(d.2, p.2)
        }
      }
    }
    return out
  }
  @inline(__always) static func mix(_ a: UInt8, _ b: UInt8, _ factor: Float) -> UInt8 {
    let v = Float(a) + factor * (Float(b) - Float(a))
    return v <= 0 ? 0 : v >= 255 ? 255 : UInt8(v)
  }
  /// Image.blend toward a flat grey (brightness: black; contrast: the mean luma).
  static func blendConstant(_ img: inout RGBImage, _ level: UInt8, factor: Double) {
    let f = Float(factor)
    var table = [UInt8](repeating: 0, count: 256)
    for v in 0..<256 { table[v] = mix(level, UInt8(v), f) }
    img.pixels.withUnsafeMutableBufferPointer { p in
      table.withUnsafeBufferPointer { t in for i in 0..<p.count { p[i] = t[Int(p[i])] } }
    }
  }
  /// Image.blend toward the image's own grayscale (saturation).
  static func blendLuma(_ img: inout RGBImage, factor: Double) {
    let f = Float(factor)
    img.pixels.withUnsafeMutableBufferPointer { p in
      for i in 0..<(p.count / 3) {
        let l = luma((p[3 * i], p[3 * i + 1], p[3 * i + 2]))
        p[3 * i] = mix(l, p[3 * i], f); p[3 * i + 1] = mix(l, p[3 * i + 1], f); p[3 * i + 2] = mix(l, p[3 * i + 2], f)
      }
    }
  }

  /// torchvision's adjust_hue on a PIL image: to Pillow's 8-bit HSV, hue channel shifted by
  /// factor·255 with uint8 wrap-around, back to RGB (Pillow's rgb2hsv/hsv2rgb arithmetic).
  static func shiftHue(_ img: RGBImage, _ factor: Double) -> RGBImage {
    var out = img
    let shift = UInt8(truncatingIfNeeded: Int((factor * 255).rounded(.towardZero)))
    img.pixels.withUnsafeBufferPointer { src in
      out.pixels.withUnsafeMutableBufferPointer { dst in
        for i in 0..<(img.width * img.height) {
          let r = src[3 * i], g = src[3 * i + 1], b = src[3 * i + 2]
          let maxc = max(r, g, b), minc = min(r, g, b)
          if maxc == minc { continue }  // s = 0: hue has no effect, v = r = g = b
          let cr = Float(maxc - minc)
          let sat = cr / Float(maxc)
          let rc = Float(maxc - r) / cr, gc = Float(maxc - g) / cr, bc = Float(maxc - b) / cr
          // C's float/double mix, as Pillow's rgb2hsv evaluates it.
          let hraw: Float = r == maxc ? bc - gc : g == maxc ? Float(2 + Double(rc) - Double(bc)) : Float(4 + Double(gc) - Double(rc))
          var hd = Double(hraw) / 6 + 1
          hd -= Double(Int(hd))
          let hf = Float(hd)
          let uh = UInt8(min(255, max(0, Int(Double(hf) * 255)))) &+ shift
          let us = UInt8(min(255, max(0, Int(Double(sat) * 255))))
          // hsv2rgb
          if us == 0 { dst[3 * i] = maxc; dst[3 * i + 1] = maxc; dst[3 * i + 2] = maxc; continue }
          let h6 = Double(uh) * 6 / 255
          let k = Int(h6)
          let f = Float(h6 - Double(k))
          let fs = Float(Double(us) / 255)
          let v = Double(maxc)
          let p = UInt8(min(255, Int((v * (1 - Double(fs))).rounded())))
          let q = UInt8(min(255, Int((v * (1 - Double(fs * f))).rounded())))
          let t = UInt8(min(255, Int((v * (1 - Double(fs) * (1 - Double(f)))).rounded())))
          let (rr, gg, bb): (UInt8, UInt8, UInt8)
          switch k % 6 {
          case 0: (rr, gg, bb) = (maxc, t, p)
          case 1: (rr, gg, bb) = (q, maxc, p)
          case 2: (rr, gg, bb) = (p, maxc, t)
          case 3: (rr, gg, bb) = (p, q, maxc)
          case 4: (rr, gg, bb) = (t, p, maxc)
          default: (rr, gg, bb) = (maxc, p, q)
          }
          dst[3 * i] = rr; dst[3 * i + 1] = gg; dst[3 * i + 2] = bb
        }
      }
    }
    return out
  }
}

/// SplitMix64: small, fast and deterministic per seed (augmentation draws per sample).
public struct SeededRandom: RandomNumberGenerator, Sendable {
  var state: UInt64
  public init(seed: UInt64) { state = seed }
  public mutating func next() -> UInt64 {
    state &+= 0x9E3779B97F4A7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
    return z ^ (z >> 31)
  }
}

extension ImageTransform {
  /// Scale and normalise an already-sized image (after augmentation).
  public func normalizedOnly(_ img: RGBImage) -> [Float] { normalized(img) }
}
