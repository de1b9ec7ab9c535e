import CGzip
import Foundation

/// Decompresses a gzip file (zlib's inflate with gzip header detection).
func gunzip(_ path: String) throws -> [UInt8] {
  guard let data = FileManager.default.contents(atPath: path) else {
    throw TokenizerError.io(path: path, reason: "cannot read file")
  }
  var input = [UInt8](data)
  var stream = z_stream()
  guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
    throw TokenizerError.malformed(file: path, part: "gzip", reason: "zlib could not start")
  }
  defer { inflateEnd(&stream) }
  var out: [UInt8] = []
  var chunk = [UInt8](repeating: 0, count: 1 << 16)
  var status: Int32 = Z_OK
  input.withUnsafeMutableBufferPointer { inBuf in
    stream.next_in = inBuf.baseAddress
    stream.avail_in = uInt(inBuf.count)
    repeat {
      chunk.withUnsafeMutableBufferPointer { c in
        stream.next_out = c.baseAddress
        stream.avail_out = uInt(c.count)
        status = inflate(&stream, Z_NO_FLUSH)
        out.append(contentsOf: c[0..<(c.count - Int(stream.avail_out))])
      }
    } while status == Z_OK
  }
  guard status == Z_STREAM_END else {
    throw TokenizerError.malformed(file: path, part: "gzip", reason: "corrupt or truncated compressed data")
  }
  return out
}
