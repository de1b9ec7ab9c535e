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
  /// legacy form with p = 0.8, anything else disables jitter). `invalidParameters` names values
  /// torchvision refuses; callers report them. Here hue is kept within torchvision's [0, 0.5]
  /// (a wider range would overflow the random draw) and any value is safe to run.
  public init(size: (Int, Int), scale: [Double], colorJitter: [Double], grayscale: Double) {
    self.size = size
    self.scale = scale.count == 2 ? (scale[0], scale[1]) : (1, 1)
    var j = colorJitter
    if j.count == 4 { j = [0.8] + j }
    if j.count == 5 {
      (jitterProbability, brightness, contrast, saturation, hue) = (j[0], j[1], j[2], j[3], min(max(j[4], 0), 0.5))
    } else {
      (jitterProbability, brightness, contrast, saturation, hue) = (0, 0, 0, 0, 0)
    }
    self.grayscale = grayscale
  }

  public var isIdentity: Bool { scale == (1, 1) && jitterProbability == 0 && grayscale == 0 }

  /// What torchvision (RandomResizedCrop, ColorJitter) refuses in the spec's lists, as
  /// (list, reason) pairs: `scale` needs two values with 0 < min ≤ max; jitter needs a probability
  /// in [0, 1], brightness, contrast and saturation ≥ 0 and hue in [0, 0.5].
  public static func invalidParameters(scale: [Double], colorJitter: [Double]) -> [(list: String, reason: String)] {
    var out: [(String, String)] = []
    if scale.count != 2 {
      out.append(("scale", "needs 2 values [min, max], got \(scale.count)"))
    } else if !(scale[0] > 0 && scale[0] <= scale[1]) {
      out.append(("scale", "needs 0 < min <= max, got [\(scale[0]), \(scale[1])]"))
    }
    let j = colorJitter.count == 4 ? [0.8] + colorJitter : colorJitter
    if j.count == 5 {
      if !(0...1).contains(j[0]) { out.append(("color_jitter", "probability \(j[0]) is not in [0, 1]")) }
      for (i, name) in [(1, "brightness"), (2, "contrast"), (3, "saturation")] where j[i] < 0 {
        out.append(("color_jitter", "\(name) \(j[i]) is negative"))
      }
      if !(0...0.5).contains(j[4]) { out.append(("color_jitter", "hue \(j[4]) is not in [0, 0.5]")) }
    }
    return out
  }

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
      // Compared as doubles before any Int conversion: a scale outside (0, 1] gives NaN or huge sides.
      let wd = (target * aspect).squareRoot().rounded(.toNearestOrEven)
      let hd = (target / aspect).squareRoot().rounded(.toNearestOrEven)
      if wd > 0 && hd > 0 && wd <= Double(W) && hd <= Double(H) {
        let (w, h) = (Int(wd), Int(hd))
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
      return UInt8(min(max(v, 0), 255))  // truncation, as Pillow; clamping without branches
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
    return UInt8(min(max(v, 0), 255))  // truncation, as Pillow; clamping without branches
  }
  /// The factor as a finite Float: past Float's range it would be infinite, and ∞ × 0 is NaN.
  /// Any factor above 255 already saturates every pixel that differs, so the result is the same.
  static func finiteFactor(_ factor: Double) -> Float { Float(min(factor, 1e38)) }
  /// Image.blend toward a flat grey (brightness: black; contrast: the mean luma).
  static func blendConstant(_ img: inout RGBImage, _ level: UInt8, factor: Double) {
    let f = finiteFactor(factor)
    var table = [UInt8](repeating: 0, count: 256)
    for v in 0..<256 { table[v] = mix(level, UInt8(v), f) }
    img.pixels.withUnsafeMutableBufferPointer { p in
      table.withUnsafeBufferPointer { t in for i in 0..<p.count { p[i] = t[Int(p[i])] } }
    }
  }
  /// Image.blend toward the image's own grayscale (saturation).
  static func blendLuma(_ img: inout RGBImage, factor: Double) {
    let f = finiteFactor(factor)
    img.pixels.withUnsafeMutableBufferPointer { p in
      for i in 0..<(p.count / 3) {
        let l = luma((p[3 * i], p[3 * i + 1], p[3 * i + 2]))
        p[3 * i] = mix(l, p[3 * i], f); p[3 * i + 1] = mix(l, p[3 * i + 1], f); p[3 * i + 2] = mix(l, p[3 * i + 2], f)
      }
    }
  }

  /// torchvision's adjust_hue on a PIL image: to Pillow's 8-bit HSV, hue channel shifted by
  /// factor·255 with uint8 wrap-around, back to RGB. Exactly Pillow's rgb2hsv/hsv2rgb arithmetic,
  /// through tables built once from that arithmetic (`HSVTables`).
  static func shiftHue(_ img: RGBImage, _ factor: Double) -> RGBImage {
    var out = img
    let shift = UInt8(truncatingIfNeeded: Int((factor * 255).rounded(.towardZero)))
    let t = HSVTables.shared
    img.pixels.withUnsafeBufferPointer { src in
      out.pixels.withUnsafeMutableBufferPointer { dst in
        t.hue.withUnsafeBufferPointer { hueT in
        t.sat.withUnsafeBufferPointer { satT in
        t.p.withUnsafeBufferPointer { pT in
        t.qt.withUnsafeBufferPointer { qtT in
        t.order.withUnsafeBufferPointer { orderT in
          // Branch-free (pixel data makes branches unpredictable): a grey pixel has s = 0, for which
          // the tables give p = u = v, so it comes out unchanged without a test.
          for i in 0..<(img.width * img.height) {
            let r = Int(src[3 * i]), g = Int(src[3 * i + 1]), b = Int(src[3 * i + 2])
            let maxc = max(r, g, b), minc = min(r, g, b)
            let cr = maxc - minc, mid = r + g + b - maxc - minc
            // Which channel is max (Pillow tests r, then g) and which is min select the sub-table;
            // the middle channel's distance from max is the index within it.
            let maxIdx = r == maxc ? 0 : g == maxc ? 1 : 2
            let minLast = maxIdx == 2 ? g == minc : b == minc
            let sub = 2 * maxIdx + (minLast ? 0 : 1)
            let h = Int(hueT[(sub << 16) | (cr << 8) | (maxc - mid)] &+ shift)
            let s = Int(satT[(cr << 8) | maxc])
            let p = Int(pT[(s << 8) | maxc])
            // Each sector needs exactly one of q and t: round(v · factor), half away from zero.
            let x = Double(maxc) * qtT[(s << 8) | h]
            let xi = Int(x)
            let u = xi + (x - Double(xi) >= 0.5 ? 1 : 0)
            // The sector orders (v, u, p) into (r, g, b): byte shifts per output channel.
            let vup = maxc | (u << 8) | (p << 16)
            let order = Int(orderT[h])
            dst[3 * i] = UInt8(truncatingIfNeeded: vup >> (order & 0x1F))
            dst[3 * i + 1] = UInt8(truncatingIfNeeded: vup >> ((order >> 5) & 0x1F))
            dst[3 * i + 2] = UInt8(truncatingIfNeeded: vup >> (order >> 10))
          }
        }}}}}
      }
    }
    return out
  }
}

/// Pillow's 8-bit HSV conversions (Convert.c rgb2hsv/hsv2rgb, C's float/double mix included),
/// tabulated: every pixel's result depends only on small integer differences, so the tables are
/// exact and spare the per-pixel divisions and libm rounding.
struct HSVTables: Sendable {
  /// [sub (which channel is max/min, see shiftHue)][max − min][max − middle] → 8-bit hue.
  var hue = [UInt8](repeating: 0, count: 6 << 16)
  /// [max − min][max] → 8-bit saturation.
  var sat = [UInt8](repeating: 0, count: 1 << 16)
  /// [s][v] → p = round(v · (1 − s/255)).
  var p = [UInt8](repeating: 0, count: 1 << 16)
  /// [s][h] → the factor of q (odd sectors) or t (even sectors).
  var qt = [Double](repeating: 0, count: 1 << 16)
  /// [h] → for r, g, b the bit shift (0, 8, 16) that picks v, u or p (5 bits each).
  var order = [UInt16](repeating: 0, count: 256)

  static let shared = HSVTables()

  init() {
    for sub in 0..<6 {
      for cr in 1..<256 {
        for d in 0...cr {
          // A pixel with this ordering, range and middle distance (only differences matter).
          let top = 255, low = 255 - cr, midv = 255 - d
          let (r, g, b): (Int, Int, Int)
          switch sub {
          case 0: (r, g, b) = (top, midv, low)
          case 1: (r, g, b) = (top, low, midv)
          case 2: (r, g, b) = (midv, top, low)
          case 3: (r, g, b) = (low, top, midv)
          case 4: (r, g, b) = (midv, low, top)
          default: (r, g, b) = (low, midv, top)
          }
          hue[(sub << 16) | (cr << 8) | d] = HSVTables.pillowHue(UInt8(r), UInt8(g), UInt8(b))
        }
      }
    }
    for cr in 1..<256 {
      for maxc in cr..<256 {
        let s = Float(cr) / Float(maxc)
        sat[(cr << 8) | maxc] = UInt8(min(255, max(0, Int(Double(s) * 255))))
      }
    }
    for h in 0..<256 {
      let h6 = Double(h) * 6 / 255
      let k = Int(h6)
      // hsv2rgb's sectors: (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q), with u = q or t.
      let picks = [(0, 1, 2), (1, 0, 2), (2, 0, 1), (2, 1, 0), (1, 2, 0), (0, 2, 1)][k % 6]
      order[h] = UInt16(8 * picks.0 | (8 * picks.1) << 5 | (8 * picks.2) << 10)
      let f = Float(h6 - Double(k))
      for s in 0..<256 {
        let fs = Float(Double(s) / 255)
        qt[(s << 8) | h] = k % 2 == 1 ? 1 - Double(fs * f) : 1 - Double(fs) * (1 - Double(f))
        if h == 0 {
          for v in 0..<256 { p[(s << 8) | v] = UInt8(min(255, Int((Double(v) * (1 - Double(fs))).rounded()))) }
        }
      }
    }
  }

  /// rgb2hsv's hue for a pixel whose max and min differ.
  static func pillowHue(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> UInt8 {
    let maxc = max(r, g, b), minc = min(r, g, b)
    let cr = Float(maxc - minc)
    let rc = Float(maxc - r) / cr, gc = Float(maxc - g) / cr, bc = Float(maxc - b) / cr
    let h: Float = r == maxc ? bc - gc : g == maxc ? Float(2 + Double(rc) - Double(bc)) : Float(4 + Double(gc) - Double(rc))
    var hd = Double(h) / 6 + 1
    hd -= Double(Int(hd))
    return UInt8(min(255, max(0, Int(Double(Float(hd)) * 255))))
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
