import Data
import Foundation

/// Remote shard reading for the Data module: http(s):// and s3:// streams on AsyncHTTPClient,
/// S3 requests signed with SigV4.
public enum RemoteShards {
  /// Attempts per transfer (the first and four retries), and the first backoff; CLIPKIT_S3_ATTEMPTS
  /// and CLIPKIT_S3_BACKOFF_MS change them (tests shorten the waits).
  static var attempts: Int { max(5, Int(ProcessInfo.processInfo.environment["CLIPKIT_S3_ATTEMPTS"] ?? "") ?? 5) }
  static var backoff: Double { (Double(ProcessInfo.processInfo.environment["CLIPKIT_S3_BACKOFF_MS"] ?? "") ?? 500) / 1000 }

  /// Lets `ShardStreams.open` reach the network (idempotent).
  public static func install() {
    guard ShardStreams.network == nil else { return }
    ShardStreams.network = { location, display, offset in
      switch location {
      case .http(let url, let basic):
        return HTTPRangeStream(display: display, offset: offset) { off in
          var h: [(String, String)] = off > 0 ? [("range", "bytes=\(off)-")] : []
          if let basic { h.append(("authorization", "Basic \(basic)")) }
          return (url, h)
        }
      case .s3(let o):
        let req = S3Request(o, aws: AWSEnvironment())
        return HTTPRangeStream(display: display, offset: offset) { off in (req.url, req.headers(offset: off)) }
      case .file, .pipe:
        throw DataError.input("shard \(display): not a network location")
      }
    }
  }
}

/// A ready-to-send S3 GET: the URL (path-style for custom endpoints, virtual-hosted for AWS), the
/// host, the canonical path and what signs it.
public struct S3Request: Sendable {
  public let url: String
  public let host: String
  public let path: String
  public let region: String
  public let credentials: AWSCredentials?

  public init(_ o: ShardLocation.S3Object, aws: AWSEnvironment) {
    region = o.region ?? aws.region()
    credentials = o.credentials ?? aws.credentials()
    if var e = o.endpoint ?? aws.endpoint() {
      if !e.contains("://") { e = "https://" + e }
      while e.hasSuffix("/") { e.removeLast() }
      let afterScheme = e[e.range(of: "://")!.upperBound...]
      host = String(afterScheme.prefix { $0 != "/" })
      let base = String(afterScheme.drop { $0 != "/" })
      path = base + "/" + o.bucket + "/" + o.key
      url = e + "/" + SigV4.uriEncode(o.bucket, keepSlash: false) + "/" + SigV4.uriEncode(o.key, keepSlash: true)
    } else if o.bucket.contains(".") {
      // A dotted bucket breaks the wildcard TLS certificate of the virtual host: path-style.
      host = "s3.\(region).amazonaws.com"
      path = "/" + o.bucket + "/" + o.key
      url = "https://\(host)/" + SigV4.uriEncode(o.bucket, keepSlash: false) + "/" + SigV4.uriEncode(o.key, keepSlash: true)
    } else {
      host = "\(o.bucket).s3.\(region).amazonaws.com"
      path = "/" + o.key
      url = "https://\(host)/" + SigV4.uriEncode(o.key, keepSlash: true)
    }
  }

  /// Headers for a GET from byte `offset` (signed when there are credentials).
  public func headers(offset: UInt64, now: Date = Date()) -> [(String, String)] {
    var h: [(String, String)] = [("host", host)]
    if offset > 0 { h.append(("range", "bytes=\(offset)-")) }
    guard let c = credentials else { return h }
    let date = SigV4.amzDate(now)
    h += [("x-amz-content-sha256", SigV4.unsignedPayload), ("x-amz-date", date)]
    if let t = c.sessionToken { h.append(("x-amz-security-token", t)) }
    let signed = SigV4.sign(method: "GET", path: path, query: [], headers: h, payloadHash: SigV4.unsignedPayload, credentials: c,
                            region: region, date: date)
    h.append(("authorization", signed.authorization))
    return h
  }
}
