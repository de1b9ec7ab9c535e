import Crypto
import Data
import Foundation

/// AWS Signature Version 4 for S3 requests (header form). S3 paths are encoded once (no double
/// encoding, unlike other services); the payload hash is sent as `x-amz-content-sha256`.
public enum SigV4 {
  public typealias Credentials = AWSCredentials

  public static let unsignedPayload = "UNSIGNED-PAYLOAD"
  public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

  /// The three stages of a signature, kept apart so each can be checked against AWS's examples.
  public struct Signed: Sendable {
    public let canonicalRequest: String
    public let stringToSign: String
    public let signature: String
    public let signedHeaders: String
    public let authorization: String
  }

  /// RFC 3986 unreserved characters stay; everything else is %XX (upper-case hex) per UTF-8 byte.
  /// `keepSlash` keeps `/` (S3 object paths); query names and values encode it.
  public static func uriEncode(_ s: String, keepSlash: Bool) -> String {
    var out = ""
    for b in s.utf8 {
      switch b {
      case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
           UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
        out.unicodeScalars.append(Unicode.Scalar(b))
      case UInt8(ascii: "/") where keepSlash:
        out.append("/")
      default:
        out += "%" + String(b, radix: 16, uppercase: true).leftPadded(to: 2)
      }
    }
    return out
  }

  /// Signs a request. `path` is the decoded object path (`/bucket/key` or `/key`); `query` holds
  /// decoded names and values; `headers` must include `host` and `x-amz-date` (and may include
  /// `range`, `x-amz-content-sha256`, `x-amz-security-token`); every header given is signed.
  public static func sign(method: String, path: String, query: [(String, String)], headers: [(String, String)],
                          payloadHash: String, credentials: Credentials, region: String, service: String = "s3",
                          date: String) -> Signed {
    let encoded: [(String, String)] = query.map { (uriEncode($0.0, keepSlash: false), uriEncode($0.1, keepSlash: false)) }
    let sortedQuery = encoded.sorted { (a: (String, String), b: (String, String)) -> Bool in a.0 != b.0 ? a.0 < b.0 : a.1 < b.1 }
    let canonicalQuery = sortedQuery.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    // Header names lower-cased, values trimmed with inner runs of spaces folded; sorted by name.
    var byName: [String: [String]] = [:]
    for (n, v) in headers {
      let folded = v.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
      byName[n.lowercased(), default: []].append(folded)
    }
    let names = byName.keys.sorted()
    let canonicalHeaders = names.map { "\($0):\(byName[$0]!.joined(separator: ","))\n" }.joined()
    let signedHeaders = names.joined(separator: ";")
    let canonicalURI: String = uriEncode(path.isEmpty ? "/" : path, keepSlash: true)
    let lines: [String] = [method, canonicalURI, canonicalQuery, canonicalHeaders, signedHeaders, payloadHash]
    let canonical = lines.joined(separator: "\n")
    let day = String(date.prefix(8))
    let scope = "\(day)/\(region)/\(service)/aws4_request"
    let stringToSign = ["AWS4-HMAC-SHA256", date, scope, hex(SHA256.hash(data: Data(canonical.utf8)))].joined(separator: "\n")
    var key = SymmetricKey(data: Data(("AWS4" + credentials.secretKey).utf8))
    for part in [day, region, service, "aws4_request"] {
      key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
    }
    let signature = hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
    let auth = "AWS4-HMAC-SHA256 Credential=\(credentials.accessKey)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
    return Signed(canonicalRequest: canonical, stringToSign: stringToSign, signature: signature, signedHeaders: signedHeaders,
                  authorization: auth)
  }

  /// ISO 8601 basic format (`20130524T000000Z`) in UTC.
  public static func amzDate(_ d: Date) -> String {
    var t = time_t(d.timeIntervalSince1970)
    var tm = tm()
    gmtime_r(&t, &tm)
    return String(format: "%04d%02d%02dT%02d%02d%02dZ", Int(tm.tm_year) + 1900, Int(tm.tm_mon) + 1, Int(tm.tm_mday),
                  Int(tm.tm_hour), Int(tm.tm_min), Int(tm.tm_sec))
  }

  static func hex<D: Sequence>(_ d: D) -> String where D.Element == UInt8 {
    d.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
  }
}

extension String {
  func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
