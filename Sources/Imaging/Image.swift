import Foundation

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (what Pillow's `convert("RGB")` holds).
public struct RGBImage: Sendable, Equatable {
  public var width: Int
  public var height: Int
  public var pixels: [UInt8]

  public init(width: Int, height: Int, pixels: [UInt8]) {
    precondition(pixels.count == width * height * 3, "pixel buffer does not match \(width)x\(height)")
    self.width = width
    self.height = height
    self.pixels = pixels
  }
  public init(width: Int, height: Int, fill: UInt8 = 0) {
    self.init(width: width, height: height, pixels: [UInt8](repeating: fill, count: width * height * 3))
  }
}

public enum ImageError: Error, LocalizedError, Equatable {
  case io(path: String, reason: String)
  case unsupported(path: String, reason: String)
  case corrupt(path: String, reason: String)
  case tooLarge(path: String, width: Int, height: Int, limit: Int)

  public var errorDescription: String? {
    switch self {
    case .io(let p, let r): return "\(p): \(r)"
    case .unsupported(let p, let r): return "\(p): unsupported image: \(r)"
    case .corrupt(let p, let r): return "\(p): corrupt or truncated image: \(r)"
    case .tooLarge(let p, let w, let h, let l):
      return "\(p): image is \(w)x\(h) = \(w * h) pixels, over the \(l)-pixel limit (decompression bomb?)"
    }
  }
}

/// Decodes image files to RGB exactly as `PIL.Image.open(path).convert("RGB")` does, for JPEG
/// (libjpeg-turbo, accurate DCT, fancy upsampling, CMYK/YCCK as Pillow inverts Adobe CMYK), PNG
/// (libpng), WebP (libwebp), BMP and GIF (first frame).
public struct ImageDecoder: Sendable {
  /// Refuse images with more pixels than this before decoding them (Pillow raises at
  /// 2 × MAX_IMAGE_PIXELS = 178,956,970).
  public var maxPixels: Int

  public init(maxPixels: Int = 178_956_970) { self.maxPixels = maxPixels }

  public enum Format: String, Sendable { case jpeg, png, webp, bmp, gif }

  public static func format(of bytes: [UInt8]) -> Format? {
    if bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF { return .jpeg }
    if bytes.count >= 8 && bytes[0..<8].elementsEqual([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
    if bytes.count >= 12 && bytes[0..<4].elementsEqual(Array("RIFF".utf8)) && bytes[8..<12].elementsEqual(Array("WEBP".utf8)) { return .webp }
    if bytes.count >= 2 && bytes[0] == 0x42 && bytes[1] == 0x4D { return .bmp }
    if bytes.count >= 6 && (bytes[0..<6].elementsEqual(Array("GIF87a".utf8)) || bytes[0..<6].elementsEqual(Array("GIF89a".utf8))) { return .gif }
    return nil
  }

  /// `draft`: for JPEG, decode at the largest DCT scale (1/2, 1/4, 1/8) that keeps both sides at
  /// least this size, exactly as Pillow's `Image.draft("RGB", size)` does; other formats ignore it.
  public func decode(file path: String, draft: (Int, Int)? = nil) throws -> RGBImage {
    guard let data = FileManager.default.contents(atPath: path) else {
      var isDir: ObjCBool = false
      let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
      throw ImageError.io(path: path, reason: !exists ? "no such file" : isDir.boolValue ? "is a directory" : "cannot read file")
    }
    return try decode(bytes: [UInt8](data), name: path, draft: draft)
  }

  public func decode(bytes: [UInt8], name: String = "image", draft: (Int, Int)? = nil) throws -> RGBImage {
    guard let f = ImageDecoder.format(of: bytes) else {
      throw ImageError.unsupported(path: name, reason: bytes.isEmpty ? "empty file" : "not a JPEG, PNG, WebP, BMP or GIF file")
    }
    switch f {
    case .jpeg: return try JPEG.decode(bytes, name: name, maxPixels: maxPixels, draft: draft)
    case .png: return try PNG.decode(bytes, name: name, maxPixels: maxPixels)
    case .webp: return try WebP.decode(bytes, name: name, maxPixels: maxPixels)
    case .bmp: return try BMP.decode(bytes, name: name, maxPixels: maxPixels)
    case .gif: return try GIF.decode(bytes, name: name, maxPixels: maxPixels)
    }
  }
}

func checkSize(_ w: Int, _ h: Int, _ name: String, _ maxPixels: Int) throws {
  guard w > 0, h > 0 else { throw ImageError.corrupt(path: name, reason: "size \(w)x\(h)") }
  if w.multipliedReportingOverflow(by: h).partialValue > maxPixels || w > 1 << 24 || h > 1 << 24 {
    throw ImageError.tooLarge(path: name, width: w, height: h, limit: maxPixels)
  }
}
