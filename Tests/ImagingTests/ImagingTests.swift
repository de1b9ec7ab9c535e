import CGzip
import Foundation
import Testing
@testable import Imaging

enum IFx {
  static let dir = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.path
  nonisolated(unsafe) static let index: [String: Any] = {
    try! JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: dir + "/index.json")!) as! [String: Any]
  }()
  static func bytes(_ rel: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: dir + "/" + rel)!) }
  static func floats(_ rel: String) -> [Float] {
    bytes(rel).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
  }
  static func decoded(_ name: String) throws -> RGBImage { try ImageDecoder().decode(file: dir + "/images/" + name) }
}

/// Differences between two equally sized 8-bit buffers: (max |a-b|, fraction identical).
func diff(_ a: [UInt8], _ b: [UInt8]) -> (Int, Double) {
  precondition(a.count == b.count)
  var maxd = 0, same = 0
  for i in a.indices {
    let d = abs(Int(a[i]) - Int(b[i]))
    maxd = max(maxd, d)
    if d == 0 { same += 1 }
  }
  return (maxd, a.isEmpty ? 1 : Double(same) / Double(a.count))
}

@Suite struct DecodingMatchesPillow {
  static let names = (IFx.index["decode"] as! [String: [String: Int]]).keys.sorted()

  @Test(arguments: names)
  func decodedRGBIsIdentical(name: String) throws {
    let info = (IFx.index["decode"] as! [String: [String: Int]])[name]!
    let img = try IFx.decoded(name)
    #expect(img.width == info["width"] && img.height == info["height"], "\(name) size")
    let (maxd, same) = diff(img.pixels, IFx.bytes("expected/\(name).rgb"))
    #expect(maxd == 0, "\(name): max difference \(maxd), \(same * 100)% identical")
  }
}

@Suite struct ResizeMatchesPillow {
  static let cases = (IFx.index["resize"] as! [[String: Any]]).map {
    "\($0["source"]!)|\($0["filter"]!)|\($0["width"]!)|\($0["height"]!)|\($0["expected"]!)"
  }

  @Test(arguments: cases)
  func resizeIsExact(spec: String) throws {
    let p = spec.split(separator: "|").map(String.init)
    let filter: ResampleFilter = ["NEAREST": .nearest, "BOX": .box, "BILINEAR": .bilinear, "HAMMING": .hamming,
                                  "BICUBIC": .bicubic, "LANCZOS": .lanczos][p[1]]!
    let out = try IFx.decoded(p[0]).resized(width: Int(p[2])!, height: Int(p[3])!, filter: filter)
    let (maxd, same) = diff(out.pixels, IFx.bytes("expected/" + p[4]))
    #expect(maxd == 0, "\(p[0]) \(p[1]) \(p[2])x\(p[3]): max difference \(maxd), \(same * 100)% identical")
  }

  @Test func evalCropsMatchBothRoundings() throws {
    for c in IFx.index["crops"] as! [[String: Any]] {
      let size = c["size"] as! Int
      let mode: ImageTransform.Resize = (c["mode"] as! String) == "torchvision" ? .shortestTorchvision(size: size) : .shortestPillow(size: size)
      let t = ImageTransform(resize: mode, filter: .bicubic, mean: [0, 0, 0], std: [1, 1, 1])
      let out = t.resized(try IFx.decoded(c["source"] as! String))
      #expect(out.width == size && out.height == size)
      let (maxd, same) = diff(out.pixels, IFx.bytes("expected/" + (c["expected"] as! String)))
      #expect(maxd == 0, "\(c["source"]!) \(mode): max difference \(maxd), \(same * 100)% identical")
    }
  }

  @Test func siglipProcessorPixelValues() throws {
    for c in IFx.index["siglip"] as! [[String: Any]] {
      let t = ImageTransform(resize: .squash(width: 40, height: 40), filter: .bicubic, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
      let got = t(try IFx.decoded(c["source"] as! String))
      let expected = IFx.floats("expected/" + (c["expected"] as! String))
      #expect(got.count == expected.count)
      let maxd = zip(got, expected).map { abs($0 - $1) }.max() ?? 0
      #expect(maxd <= 1e-6, "\(c["source"]!): max |diff| \(maxd)")
    }
  }
}

@Suite struct BrokenImages {
  func message(_ name: String) -> String {
    do {
      _ = try ImageDecoder().decode(file: IFx.dir + "/bad/" + name)
      return "decoded without error"
    } catch {
      return error.localizedDescription
    }
  }

  @Test func eachGivesOneClearLine() throws {
    for (name, fragment) in [("truncated.jpg", "truncated"), ("truncated.png", "truncated"), ("html.jpg", "not a JPEG"),
                             ("empty.png", "empty file"), ("bomb.png", "pixel limit"), ("bomb.jpg", "pixel limit")] {
      let m = message(name)
      #expect(m.contains(name) && m.contains(fragment), "\(name): \(m)")
      #expect(!m.contains("\n"), "\(name): message spans lines")
    }
    #expect(message("absent.jpg").contains("no such file"))
    // A configurable limit.
    do {
      _ = try ImageDecoder(maxPixels: 1000).decode(file: IFx.dir + "/images/photo_420.jpg")
      Issue.record("limit ignored")
    } catch {
      #expect(error.localizedDescription.contains("1000-pixel limit"))
    }
  }
}

@Suite struct BitfieldBMPs {
  /// A one-row BI_BITFIELDS bitmap: BITMAPINFOHEADER, three colour masks, then the pixels.
  func bmp(bpp: Int, masks: [UInt32], pixels: [UInt32]) -> [UInt8] {
    func le(_ v: Int, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    let stride = (pixels.count * bpp + 31) / 32 * 4
    var row = pixels.flatMap { le(Int($0), bpp / 8) }
    row += [UInt8](repeating: 0, count: stride - row.count)
    let offset = 14 + 40 + 12
    return Array("BM".utf8) + le(offset + row.count, 4) + le(0, 4) + le(offset, 4)
      + le(40, 4) + le(pixels.count, 4) + le(1, 4) + le(1, 2) + le(bpp, 2) + le(3, 4) + le(row.count, 4) + le(0, 16)
      + masks.flatMap { le(Int($0), 4) } + row
  }

  /// Scattered mask bits would scale to values past 255: such bitmaps are refused by name.
  @Test func nonContiguousMasksAreRefused() throws {
    for (bpp, masks, colour) in [(32, [0x00F0_F000, 0x0000_FF00, 0x0000_00FF], "red"), (32, [0x00FF_0000, 0x0000_FF00, 0x8000_0001], "blue"),
                                 (16, [0xF800, 0x0550, 0x001F], "green")] as [(Int, [UInt32], String)] {
      let error = #expect(throws: ImageError.self) {
        try ImageDecoder().decode(bytes: bmp(bpp: bpp, masks: masks, pixels: [0xFFFF_FFFF, 0x1234_5678]), name: "masks.bmp")
      }
      guard case .unsupported(let path, let reason)? = error else { continue }
      #expect(path == "masks.bmp" && reason.contains("non-contiguous \(colour) mask"), "\(reason)")
    }
    // An unsupported bit depth is refused before its row size is used.
    let deep = #expect(throws: ImageError.self) { try ImageDecoder().decode(bytes: bmp(bpp: 64, masks: [0xFF, 0xFF00, 0xFF_0000], pixels: [1]), name: "deep.bmp") }
    #expect(deep == .unsupported(path: "deep.bmp", reason: "BMP with 64 bits per pixel"))
  }

  @Test func contiguousMasksDecode() throws {
    let rgb = try ImageDecoder().decode(bytes: bmp(bpp: 32, masks: [0x00FF_0000, 0x0000_FF00, 0x0000_00FF], pixels: [0x0011_2233, 0xFFFF_FFFF]))
    #expect(rgb.pixels == [0x11, 0x22, 0x33, 255, 255, 255])
    let full = try ImageDecoder().decode(bytes: bmp(bpp: 32, masks: [0xFFFF_FFFF, 0, 0x0000_00FF], pixels: [0x8000_0010]))
    #expect(full.pixels == [0x80, 0, 0x10])
    let rgb565 = try ImageDecoder().decode(bytes: bmp(bpp: 16, masks: [0xF800, 0x07E0, 0x001F], pixels: [0xF800, 0x07FF]))
    #expect(rgb565.pixels == [255, 0, 0, 0, 255, 255])
  }
}

@Suite struct DraftDecoding {
  @Test func matchesPillowDraftMode() throws {
    for c in IFx.index["draft"] as! [[String: Any]] {
      let src = c["source"] as! String
      let img = try ImageDecoder().decode(file: IFx.dir + "/images/" + src, draft: (c["width"] as! Int, c["height"] as! Int))
      #expect(img.width == c["out_width"] as? Int && img.height == c["out_height"] as? Int, "\(src)")
      let (maxd, _) = diff(img.pixels, IFx.bytes("expected/" + (c["expected"] as! String)))
      #expect(maxd == 0, "\(src): max difference \(maxd)")
    }
  }
}

@Suite struct TrainingAugmentation {
  @Test func deterministicPerSeedAndShaped() throws {
    let img = try IFx.decoded("photo_420.jpg")
    let aug = Augmentation(size: (48, 40), scale: [0.3, 1.0], colorJitter: [0.8, 0.4, 0.4, 0.4, 0.1], grayscale: 0.2)
    var r1 = SeededRandom(seed: 9), r2 = SeededRandom(seed: 9), r3 = SeededRandom(seed: 10)
    let a = aug(img, rng: &r1), b = aug(img, rng: &r2), c = aug(img, rng: &r3)
    #expect(a.width == 48 && a.height == 40)
    #expect(a == b)
    #expect(a != c)
  }

  /// What torchvision refuses is named; whatever the values, the pipeline runs (no NaN or huge
  /// side converted to Int, no infinite blend factor, hue kept in [0, 0.5]).
  @Test func invalidParametersAreNamedAndNeverTrap() throws {
    #expect(Augmentation.invalidParameters(scale: [0.4, 1], colorJitter: [0.8, 0.32, 0.32, 0.32, 0.08]).isEmpty)
    #expect(Augmentation.invalidParameters(scale: [0.4, 1], colorJitter: [0.32, 0.32, 0.32, 0.5]).isEmpty)
    #expect(Augmentation.invalidParameters(scale: [0.4, 3], colorJitter: []).isEmpty)  // torchvision allows max > 1
    for (scale, jitter, list, fragment) in [
      ([-1, 1], [], "scale", "needs 0 < min <= max"), ([0, 1], [], "scale", "needs 0 < min <= max"),
      ([0.9, 0.4], [], "scale", "needs 0 < min <= max"), ([], [], "scale", "needs 2 values"), ([0.5], [], "scale", "needs 2 values"),
      ([0.4, 1], [0.8, 0.3, 0.3, 0.3, 0.6], "color_jitter", "hue 0.6 is not in [0, 0.5]"),
      ([0.4, 1], [0.3, 0.3, 0.3, -0.01], "color_jitter", "hue -0.01 is not in [0, 0.5]"),
      ([0.4, 1], [0.8, 0.3, -1, 0.3, 0.1], "color_jitter", "contrast -1.0 is negative"),
      ([0.4, 1], [0.8, 0.3, 0.3, -2, 0.1], "color_jitter", "saturation -2.0 is negative"),
      ([0.4, 1], [-0.5, 0.3, 0.3, 0.3, 0.1], "color_jitter", "probability -0.5 is not in [0, 1]"),
    ] as [([Double], [Double], String, String)] {
      let found = Augmentation.invalidParameters(scale: scale, colorJitter: jitter)
      #expect(found.count == 1 && found[0].list == list && found[0].reason.contains(fragment), "\(scale) \(jitter): \(found)")
    }
    let img = try IFx.decoded("photo_420.jpg")
    for (scale, jitter) in [([-1, 1], [1, 0.3, 0.3, 0.3, 0.1]), ([1e300, 1e300], [1, 1e308, 1e308, 1e308, 1e308]),
                            ([-1e308, 1e308], [1, 0.5, 0.5, 0.5, -1e308]), ([0, 0], [1, 0, 0, 0, 0.5])] as [([Double], [Double])] {
      let aug = Augmentation(size: (24, 20), scale: scale, colorJitter: jitter, grayscale: 0)
      #expect(aug.hue >= 0 && aug.hue <= 0.5)
      for seed in 0..<8 {
        var rng = SeededRandom(seed: UInt64(seed))
        let out = aug(img, rng: &rng)
        #expect(out.width == 24 && out.height == 20)
      }
    }
    // An enormous brightness saturates like any factor above 255 would.
    var one = RGBImage(width: 2, height: 1, pixels: [0, 100, 200, 10, 10, 10])
    Augmentation.blendConstant(&one, 10, factor: 1e300)
    #expect(one.pixels == [0, 255, 255, 10, 10, 10])
  }

  @Test func fullScaleWithoutJitterIsThePlainResize() throws {
    let img = try IFx.decoded("rgb.png")
    let aug = Augmentation(size: (32, 32), scale: [1, 1], colorJitter: [], grayscale: 0)
    #expect(aug.isIdentity)
    var rng = SeededRandom(seed: 1)
    // With scale 1 only the whole image fits the 3/4-4/3 ratio search: the fallback keeps it all.
    let square = img.resized(width: 60, height: 60)
    #expect(aug(square, rng: &rng) == square.resized(width: 32, height: 32, filter: .bicubic))
  }

  @Test func grayscaleAndBlendArithmetic() throws {
    let img = try IFx.decoded("rgb.png")
    let gray = Augmentation(size: (20, 20), scale: [1, 1], colorJitter: [], grayscale: 1.0)
    var rng = SeededRandom(seed: 3)
    let g = gray(img.resized(width: 20, height: 20), rng: &rng)
    for i in 0..<(20 * 20) { #expect(g.pixels[3 * i] == g.pixels[3 * i + 1] && g.pixels[3 * i + 1] == g.pixels[3 * i + 2]) }
    // Pillow's luma: (R·19595 + G·38470 + B·7471 + 32768) >> 16.
    #expect(Augmentation.luma((255, 0, 0)) == 76 && Augmentation.luma((0, 255, 0)) == 150 && Augmentation.luma((0, 0, 255)) == 29)
    // Image.blend truncates toward zero and clips when extrapolating.
    let one = RGBImage(width: 1, height: 1, pixels: [100, 200, 10])
    #expect(Augmentation.blend(one, toward: { _ in (0, 0, 0) }, factor: 1.5).pixels == [150, 255, 15])
    #expect(Augmentation.blend(one, toward: { _ in (0, 0, 0) }, factor: 0.33).pixels == [33, 66, 3])
  }
}

@Suite struct ColourOpsMatchTorchvision {
  @Test func hueBrightnessContrastSaturationGrayscale() throws {
    let size = IFx.index["jitter_size"] as! [Int]
    let src = RGBImage(width: size[0], height: size[1], pixels: IFx.bytes("expected/jitter_src.rgb"))
    for c in IFx.index["jitter"] as! [[String: Any]] {
      let op = c["op"] as! String, v = (c["value"] as! NSNumber).doubleValue
      var out = src
      switch op {
      case "hue": out = Augmentation.shiftHue(src, v)
      case "brightness": Augmentation.blendConstant(&out, 0, factor: v)
      case "contrast": Augmentation.blendConstant(&out, Augmentation.meanLuma(src), factor: v)
      case "saturation": Augmentation.blendLuma(&out, factor: v)
      default:
        for i in 0..<(src.width * src.height) {
          let l = Augmentation.luma((src.pixels[3 * i], src.pixels[3 * i + 1], src.pixels[3 * i + 2]))
          out.pixels[3 * i] = l; out.pixels[3 * i + 1] = l; out.pixels[3 * i + 2] = l
        }
      }
      let (maxd, same) = diff(out.pixels, IFx.bytes("expected/" + (c["expected"] as! String)))
      #expect(maxd == 0, "\(op) \(v): max difference \(maxd), \(same * 100)% identical")
    }
  }

  /// Every 8-bit colour once (a 4096×4096 image of the RGB cube), against the CRC-32 of
  /// torchvision's output: exhaustive for the tabulated HSV arithmetic.
  @Test func hueAndSaturationOverTheWholeColourCube() throws {
    var cube = RGBImage(width: 4096, height: 4096)
    for i in 0..<(1 << 24) {
      cube.pixels[3 * i] = UInt8(i >> 16); cube.pixels[3 * i + 1] = UInt8((i >> 8) & 255); cube.pixels[3 * i + 2] = UInt8(i & 255)
    }
    for c in IFx.index["jitter_cube"] as! [[String: Any]] {
      let op = c["op"] as! String, v = (c["value"] as! NSNumber).doubleValue
      var out = cube
      if op == "hue" { out = Augmentation.shiftHue(cube, v) } else { Augmentation.blendLuma(&out, factor: v) }
      let crc = out.pixels.withUnsafeBufferPointer { UInt(crc32(0, $0.baseAddress, UInt32($0.count))) }
      #expect(crc == (c["crc32"] as! NSNumber).uintValue, "\(op) \(v) differs from torchvision somewhere in the colour cube")
    }
  }
}
