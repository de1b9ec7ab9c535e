import Foundation

/// The first frame of a GIF as Pillow shows it: the frame drawn on a canvas of the logical
/// screen size filled with the transparent index (else index 0), colours from the local or
/// global palette.
enum GIF {
  static func decode(_ b: [UInt8], name: String, maxPixels: Int) throws -> RGBImage {
    func fail(_ r: String) -> ImageError { .corrupt(path: name, reason: r) }
    guard b.count >= 13 else { throw fail("header is truncated") }
    func u16(_ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }
    let sw = u16(6), sh = u16(8)
    try checkSize(sw, sh, name, maxPixels)
    let flags = Int(b[10])
    var p = 13
    var global: [UInt8] = []
    if flags & 0x80 != 0 {
      let n = 3 << ((flags & 7) + 1)
      guard p + n <= b.count else { throw fail("global palette is truncated") }
      global = Array(b[p..<(p + n)])
      p += n
    }
    var transparent: Int? = nil
    while p < b.count {
      let block = b[p]
      p += 1
      if block == 0x21 {  // extension
        guard p < b.count else { throw fail("extension is truncated") }
        let label = b[p]
        p += 1
        var first = true
        while p < b.count {
          let size = Int(b[p]); p += 1
          if size == 0 { break }
          guard p + size <= b.count else { throw fail("extension is truncated") }
          if label == 0xF9 && first && size >= 4 && b[p] & 1 != 0 { transparent = Int(b[p + 3]) }
          first = false
          p += size
        }
      } else if block == 0x2C {
        guard p + 9 <= b.count else { throw fail("image descriptor is truncated") }
        let fx = u16(p), fy = u16(p + 2), fw = u16(p + 4), fh = u16(p + 6), fflags = Int(b[p + 8])
        p += 9
        var palette = global
        if fflags & 0x80 != 0 {
          let n = 3 << ((fflags & 7) + 1)
          guard p + n <= b.count else { throw fail("local palette is truncated") }
          palette = Array(b[p..<(p + n)])
          p += n
        }
        guard p < b.count else { throw fail("image data is missing") }
        let minCode = Int(b[p]); p += 1
        var data: [UInt8] = []
        while p < b.count {
          let size = Int(b[p]); p += 1
          if size == 0 { break }
          guard p + size <= b.count else { throw fail("image data is truncated") }
          data += b[p..<(p + size)]
          p += size
        }
        let indices = try lzw(data, minCode: minCode, count: fw * fh, fail: fail)
        var canvas = [UInt8](repeating: UInt8(transparent ?? 0), count: sw * sh)
        let interlaced = fflags & 0x40 != 0
        var rows: [Int] = Array(0..<fh)
        if interlaced {
          rows = Array(stride(from: 0, to: fh, by: 8)) + Array(stride(from: 4, to: fh, by: 8))
            + Array(stride(from: 2, to: fh, by: 4)) + Array(stride(from: 1, to: fh, by: 2))
        }
        for (i, y) in rows.enumerated() {
          let cy = fy + y
          guard cy < sh else { continue }
          for x in 0..<fw where fx + x < sw {
            let k = i * fw + x
            if k < indices.count { canvas[cy * sw + fx + x] = indices[k] }
          }
        }
        var out = RGBImage(width: sw, height: sh)
        for i in 0..<(sw * sh) {
          let c = Int(canvas[i])
          if palette.isEmpty {
            out.pixels[3 * i] = UInt8(c); out.pixels[3 * i + 1] = UInt8(c); out.pixels[3 * i + 2] = UInt8(c)
          } else if 3 * c + 2 < palette.count {
            out.pixels[3 * i] = palette[3 * c]; out.pixels[3 * i + 1] = palette[3 * c + 1]; out.pixels[3 * i + 2] = palette[3 * c + 2]
          }
        }
        return out
      } else if block == 0x3B {
        break
      } else {
        throw fail("unknown block 0x\(String(block, radix: 16))")
      }
    }
    throw fail("no image frame")
  }

  /// GIF's variable-width LZW.
  static func lzw(_ data: [UInt8], minCode: Int, count: Int, fail: (String) -> ImageError) throws -> [UInt8] {
    guard (2...11).contains(minCode) else { throw fail("LZW minimum code size \(minCode)") }
    let clear = 1 << minCode, end = clear + 1
    var prefix = [Int](repeating: -1, count: 4096)
    var suffix = [UInt8](repeating: 0, count: 4096)
    var length = [Int](repeating: 0, count: 4096)
    for i in 0..<clear { suffix[i] = UInt8(i & 0xFF); length[i] = 1 }
    var next = end + 1, size = minCode + 1
    var out: [UInt8] = []
    out.reserveCapacity(count)
    var bits = 0, acc = 0, pos = 0
    var previous = -1
    var stack = [UInt8](repeating: 0, count: 4096)
    func emit(_ code: Int) -> UInt8 {
      var c = code
      let n = length[code]
      var i = n - 1
      while c >= 0 && i >= 0 { stack[i] = suffix[c]; c = prefix[c]; i -= 1 }
      out.append(contentsOf: stack[0..<n])
      return stack[0]
    }
    while out.count < count {
      while bits < size {
        guard pos < data.count else { return out }  // short data: Pillow leaves the rest as filled
        acc |= Int(data[pos]) << bits
        bits += 8
        pos += 1
      }
      let code = acc & ((1 << size) - 1)
      acc >>= size
      bits -= size
      if code == clear { next = end + 1; size = minCode + 1; previous = -1; continue }
      if code == end { break }
      if previous < 0 {
        guard code < clear else { throw fail("LZW stream starts with code \(code)") }
        _ = emit(code)
        previous = code
        continue
      }
      guard code <= next && code < 4096 else { throw fail("LZW code \(code) out of sequence") }
      // The new entry is the previous string plus the first character of the current one (for
      // code == next, the KwKwK case, that is the previous string's own first character).
      var c = code == next ? previous : code
      while prefix[c] >= 0 { c = prefix[c] }
      let first = suffix[c]
      if next < 4096 {
        prefix[next] = previous; suffix[next] = first; length[next] = length[previous] + 1
        next += 1
      }
      _ = emit(code)
      if next == 1 << size && size < 12 { size += 1 }
      previous = code
    }
    if out.count > count { out.removeLast(out.count - count) }
    return out
  }
}
