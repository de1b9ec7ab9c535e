import CCodecs
import CTurboJPEG
import CWebP
import Foundation

enum JPEG {
  static func decode(_ bytes: [UInt8], name: String, maxPixels: Int, draft: (Int, Int)? = nil) throws -> RGBImage {
    guard let tj = tjInitDecompress() else { throw ImageError.corrupt(path: name, reason: "libjpeg-turbo could not start") }
    defer { tjDestroy(tj) }
    var w: Int32 = 0, h: Int32 = 0, sub: Int32 = 0, cs: Int32 = 0
    let header = bytes.withUnsafeBufferPointer { tjDecompressHeader3(tj, $0.baseAddress, UInt($0.count), &w, &h, &sub, &cs) }
    guard header == 0 else { throw ImageError.corrupt(path: name, reason: message(tj)) }
    try checkSize(Int(w), Int(h), name, maxPixels)
    if let (dw, dh) = draft, dw > 0, dh > 0 {
      let scale = min(Int(w) / dw, Int(h) / dh)
      let s = [8, 4, 2, 1].first { scale >= $0 } ?? 1
      w = Int32((Int(w) + s - 1) / s)
      h = Int32((Int(h) + s - 1) / s)
    }
    let cmyk = cs == Int32(TJCS_CMYK.rawValue) || cs == Int32(TJCS_YCCK.rawValue)
    let channels = cmyk ? 4 : 3
    var out = [UInt8](repeating: 0, count: Int(w) * Int(h) * channels)
    let rc = bytes.withUnsafeBufferPointer { src in
      out.withUnsafeMutableBufferPointer { dst in
        tjDecompress2(tj, src.baseAddress, UInt(src.count), dst.baseAddress, w, 0, h,
                      Int32(cmyk ? TJPF_CMYK.rawValue : TJPF_RGB.rawValue), TJFLAG_ACCURATEDCT)
      }
    }
    if rc != 0 {
      let msg = message(tj)
      // libjpeg tolerates damaged entropy data with a warning (as Pillow does); running out of
      // data is fatal for Pillow ("image file is truncated"), so it is here.
      if tjGetErrorCode(tj) != Int32(TJERR_WARNING.rawValue) || msg.contains("Premature end") {
        throw ImageError.corrupt(path: name, reason: msg)
      }
    }
    guard cmyk else { return RGBImage(width: Int(w), height: Int(h), pixels: out) }
    // Pillow reads CMYK JPEGs as Adobe-inverted ("CMYK;I") and converts with cmyk2rgb.
    var rgb = [UInt8](repeating: 0, count: Int(w) * Int(h) * 3)
    for i in 0..<(Int(w) * Int(h)) {
      let nk = Int(out[4 * i + 3])  // 255 - (255 - raw K)
      for c in 0..<3 {
        let cv = 255 - Int(out[4 * i + c])
        let t = cv * nk + 128
        rgb[3 * i + c] = UInt8(clamping: nk - (((t >> 8) + t) >> 8))
      }
    }
    return RGBImage(width: Int(w), height: Int(h), pixels: rgb)
  }

  static func message(_ tj: tjhandle) -> String {
    guard let m = tjGetErrorStr2(tj) else { return "unknown libjpeg error" }
    return String(cString: m)
  }
}

enum PNG {
  static func decode(_ bytes: [UInt8], name: String, maxPixels: Int) throws -> RGBImage {
    var out: UnsafeMutablePointer<UInt8>? = nil
    var w: UInt32 = 0, h: UInt32 = 0
    var err = [CChar](repeating: 0, count: 256)
    let rc = bytes.withUnsafeBufferPointer { ck_png_decode_rgb($0.baseAddress, $0.count, UInt64(maxPixels), &out, &w, &h, &err, err.count) }
    guard rc == 0, let out else {
      let msg = String(cString: err)
      if msg.contains("pixel limit") { throw ImageError.corrupt(path: name, reason: msg) }
      throw ImageError.corrupt(path: name, reason: msg.isEmpty ? "libpng failed" : msg)
    }
    defer { ck_codec_free(out) }
    return RGBImage(width: Int(w), height: Int(h), pixels: Array(UnsafeBufferPointer(start: out, count: Int(w) * Int(h) * 3)))
  }
}

enum WebP {
  static func decode(_ bytes: [UInt8], name: String, maxPixels: Int) throws -> RGBImage {
    var w: Int32 = 0, h: Int32 = 0
    let ok = bytes.withUnsafeBufferPointer { WebPGetInfo($0.baseAddress, $0.count, &w, &h) }
    guard ok != 0 else { throw ImageError.corrupt(path: name, reason: "not a valid WebP bitstream") }
    try checkSize(Int(w), Int(h), name, maxPixels)
    var rgba = [UInt8](repeating: 0, count: Int(w) * Int(h) * 4)
    let res = bytes.withUnsafeBufferPointer { src in
      rgba.withUnsafeMutableBufferPointer { dst in
        WebPDecodeRGBAInto(src.baseAddress, src.count, dst.baseAddress, dst.count, w * 4)
      }
    }
    guard res != nil else { throw ImageError.corrupt(path: name, reason: "libwebp could not decode the bitstream") }
    var rgb = [UInt8](repeating: 0, count: Int(w) * Int(h) * 3)
    for i in 0..<(Int(w) * Int(h)) {
      rgb[3 * i] = rgba[4 * i]; rgb[3 * i + 1] = rgba[4 * i + 1]; rgb[3 * i + 2] = rgba[4 * i + 2]
    }
    return RGBImage(width: Int(w), height: Int(h), pixels: rgb)
  }
}

extension RGBImage {
  /// Writes the image as an 8-bit RGB PNG.
  public func writePNG(_ path: String) throws {
    var err = [CChar](repeating: 0, count: 256)
    let rc = pixels.withUnsafeBufferPointer { ck_png_write_rgb(path, $0.baseAddress, UInt32(width), UInt32(height), &err, err.count) }
    guard rc == 0 else { throw ImageError.io(path: path, reason: String(cString: err)) }
  }
}
