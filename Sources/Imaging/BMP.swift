import Foundation

/// Windows/OS2 bitmaps as Pillow's BmpImagePlugin reads them: 1/4/8-bit palettes (also RLE8/RLE4),
/// 16-bit 5-5-5 or 5-6-5, 24-bit BGR and 32-bit BGRX/BGRA, bottom-up or top-down.
enum BMP {
  static func decode(_ b: [UInt8], name: String, maxPixels: Int) throws -> RGBImage {
    func fail(_ r: String) -> ImageError { .corrupt(path: name, reason: r) }
    func u16(_ o: Int) throws -> Int { guard o + 2 <= b.count else { throw fail("header runs past the end of the file") }; return Int(b[o]) | Int(b[o + 1]) << 8 }
    func u32(_ o: Int) throws -> UInt32 {
      guard o + 4 <= b.count else { throw fail("header runs past the end of the file") }
      return UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }
    let dataOffset = Int(try u32(10))
    let headerSize = Int(try u32(14))
    var width: Int, height: Int, bpp: Int, compression: UInt32 = 0, colorsUsed = 0
    var paletteEntrySize = 4
    if headerSize == 12 {
      width = try u16(18); height = try u16(20); bpp = try u16(24); paletteEntrySize = 3
    } else if headerSize >= 40 {
      width = Int(Int32(bitPattern: try u32(18))); height = Int(Int32(bitPattern: try u32(22)))
      bpp = try u16(28); compression = try u32(30); colorsUsed = Int(try u32(46))
    } else {
      throw ImageError.unsupported(path: name, reason: "BMP header of \(headerSize) bytes")
    }
    let topDown = height < 0
    height = abs(height)
    try checkSize(width, height, name, maxPixels)
    var masks: [UInt32] = []
    if compression == 3 || compression == 6 {
      let at = headerSize >= 52 ? 14 + 40 : 14 + headerSize
      masks = try (0..<(compression == 6 || headerSize >= 56 ? 4 : 3)).map { try u32(at + 4 * $0) }
      // A colour mask must be one run of bits (channel() scales that run to 8 bits); scattered
      // bits would read values past 255. Pillow refuses such layouts too.
      for (c, m) in zip(["red", "green", "blue"], masks) {
        let run = m >> m.trailingZeroBitCount
        guard m == 0 || run & (run &+ 1) == 0 else {
          throw ImageError.unsupported(path: name, reason: "BMP bitfields with a non-contiguous \(c) mask 0x\(String(m, radix: 16, uppercase: true))")
        }
      }
    }
    var palette: [[UInt8]] = []
    if bpp <= 8 {
      let count = colorsUsed > 0 ? min(colorsUsed, 256) : 1 << bpp
      let start = 14 + headerSize + (compression == 3 && headerSize == 40 ? 12 : 0)
      for i in 0..<count {
        let o = start + i * paletteEntrySize
        guard o + 3 <= b.count else { throw fail("palette runs past the end of the file") }
        palette.append([b[o + 2], b[o + 1], b[o]])
      }
    }
    var out = RGBImage(width: width, height: height)
    func put(_ x: Int, _ rowFromBottom: Int, _ rgb: (UInt8, UInt8, UInt8)) {
      let y = topDown ? rowFromBottom : height - 1 - rowFromBottom
      let o = (y * width + x) * 3
      out.pixels[o] = rgb.0; out.pixels[o + 1] = rgb.1; out.pixels[o + 2] = rgb.2
    }
    func pal(_ i: Int) -> (UInt8, UInt8, UInt8) {
      i < palette.count ? (palette[i][0], palette[i][1], palette[i][2]) : (0, 0, 0)
    }
    if compression == 1 || compression == 2 {
      // RLE: unset pixels keep index 0, as Pillow's decoder leaves them.
      let idx0 = pal(0)
      for y in 0..<height { for x in 0..<width { put(x, y, idx0) } }
      var p = dataOffset, x = 0, y = 0
      let four = compression == 2
      func pixel(_ v: Int) { if x < width && y < height { put(x, y, pal(v)) }; x += 1 }
      while p + 1 < b.count {
        let n = Int(b[p]), v = Int(b[p + 1])
        p += 2
        if n > 0 {
          for i in 0..<n { pixel(four ? (i % 2 == 0 ? v >> 4 : v & 15) : v) }
        } else if v == 0 { x = 0; y += 1 }
        else if v == 1 { break }
        else if v == 2 {
          guard p + 1 < b.count else { throw fail("RLE data ends inside a delta") }
          x += Int(b[p]); y += Int(b[p + 1]); p += 2
        } else {
          let count = v
          let bytes = four ? (count + 1) / 2 : count
          guard p + bytes <= b.count else { throw fail("RLE data runs past the end of the file") }
          for i in 0..<count { pixel(four ? (i % 2 == 0 ? Int(b[p + i / 2]) >> 4 : Int(b[p + i / 2]) & 15) : Int(b[p + i])) }
          p += (bytes + 1) & ~1
        }
      }
      return out
    }
    guard compression == 0 || compression == 3 || compression == 6 else {
      throw ImageError.unsupported(path: name, reason: "BMP compression \(compression)")
    }
    // Refused before the row size is computed from it.
    guard [1, 2, 4, 8, 16, 24, 32].contains(bpp) else {
      throw ImageError.unsupported(path: name, reason: "BMP with \(bpp) bits per pixel")
    }
    let stride = ((width * bpp + 31) / 32) * 4
    guard dataOffset + stride * height <= b.count else { throw fail("pixel data runs past the end of the file (truncated)") }
    func channel(_ v: UInt32, _ mask: UInt32) -> UInt8 {
      guard mask != 0 else { return 0 }
      let shift = mask.trailingZeroBitCount
      let bits = (mask >> shift).nonzeroBitCount
      let raw = Int((v & mask) >> shift)
      return bits >= 8 ? UInt8(raw >> (bits - 8)) : UInt8(raw * 255 / ((1 << bits) - 1))
    }
    for row in 0..<height {
      let base = dataOffset + row * stride
      for x in 0..<width {
        switch bpp {
        case 1, 2, 4, 8:
          let bit = x * bpp
          let byte = Int(b[base + bit / 8])
          let idx = (byte >> (8 - bpp - bit % 8)) & ((1 << bpp) - 1)
          put(x, row, pal(idx))
        case 16:
          let v = UInt32(b[base + 2 * x]) | UInt32(b[base + 2 * x + 1]) << 8
          let m = masks.count >= 3 ? masks : [0x7C00, 0x03E0, 0x001F]
          put(x, row, (channel(v, m[0]), channel(v, m[1]), channel(v, m[2])))
        case 24:
          let o = base + 3 * x
          put(x, row, (b[o + 2], b[o + 1], b[o]))
        case 32:
          let o = base + 4 * x
          if masks.count >= 3 {
            let v = UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
            put(x, row, (channel(v, masks[0]), channel(v, masks[1]), channel(v, masks[2])))
          } else {
            put(x, row, (b[o + 2], b[o + 1], b[o]))
          }
        default:
          throw ImageError.unsupported(path: name, reason: "BMP with \(bpp) bits per pixel")
        }
      }
    }
    return out
  }
}
