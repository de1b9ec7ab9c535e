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
        case 0 where brightness > 0: out = Augmentation.blend(out, toward: { _ in (0, 0, 0) }, factor: bf)
        case 1 where contrast > 0:
          let mean = Augmentation.meanLuma(out)
          out = Augmentation.blend(out, toward: { _ in (mean, mean, mean) }, factor: cf)
        case 2 where saturation > 0:
          out = Augmentation.blend(out, toward: { p in let l = Augmentation.luma(p); return (l, l, l) }, factor: sf)
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
    for i in 0..<(img.width * img.height) { sum += Int(luma((img.pixels[3 * i], img.pixels[3 * i + 1], img.pixels[3 * i + 2]))) }
    return UInt8(min(255, Int(Double(sum) / Double(max(img.width * img.height, 1)) + 0.5)))
  }
  /// Image.blend(degenerate, img, factor) with Pillow's truncation and clipping.
  static func blend(_ img: RGBImage, toward degenerate: ((UInt8, UInt8, UInt8)) -> (UInt8, UInt8, UInt8), factor: Double) -> RGBImage {
    var out = img
    for i in 0..<(img.width * img.height) {
      let p = (img.pixels[3 * i], img.pixels[3 * i + 1], img.pixels[3 * i + 2])
      let d = degenerate(p)
      for (c, (a, b)) in [(d.0, p.0), (d.1, p.1), (d.2, p.2)].enumerated() {
        let v = Double(a) + factor * (Double(b) - Double(a))
        out.pixels[3 * i + c] = v <= 0 ? 0 : v >= 255 ? 255 : UInt8(v)
      }
    }
    return out
  }
  /// torchvision's adjust_hue on a PIL image: hue channel of HSV shifted by factor·255 (uint8 wrap).
  static func shiftHue(_ img: RGBImage, _ factor: Double) -> RGBImage {
    var out = img
    let shift = Int(UInt8(truncatingIfNeeded: Int((factor * 255).rounded(.towardZero))))
    for i in 0..<(img.width * img.height) {
      let r = Double(img.pixels[3 * i]) / 255, g = Double(img.pixels[3 * i + 1]) / 255, b = Double(img.pixels[3 * i + 2]) / 255
      let mx = max(r, g, b), mn = min(r, g, b)
      let v = mx, s = mx == 0 ? 0 : (mx - mn) / mx
      var h = 0.0
      if mx != mn {
        let rc = (mx - r) / (mx - mn), gc = (mx - g) / (mx - mn), bc = (mx - b) / (mx - mn)
        h = r == mx ? bc - gc : g == mx ? 2 + rc - bc : 4 + gc - rc
        h = (h / 6).truncatingRemainder(dividingBy: 1)
        if h < 0 { h += 1 }
      }
      let hu = (Int(h * 255) + shift) & 0xFF
      let hh = Double(hu) / 255
      let k = Int(hh * 6) % 6
      let f = hh * 6 - Double(Int(hh * 6))
      let p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f))
      let (rr, gg, bb): (Double, Double, Double) = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][k]
      out.pixels[3 * i] = UInt8(min(255, max(0, (rr * 255).rounded())))
      out.pixels[3 * i + 1] = UInt8(min(255, max(0, (gg * 255).rounded())))
      out.pixels[3 * i + 2] = UInt8(min(255, max(0, (bb * 255).rounded())))
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
