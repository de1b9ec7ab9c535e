import Foundation

/// Where a shard's bytes come from: a local file, an S3 object, an HTTP(S) URL, or the standard
/// output of a `pipe:` command (webdataset's convention). Parsed from a shard-list line after brace
/// expansion; `display` is the form every log and error uses (no user-info, no signature).
public enum ShardLocation: Sendable, Hashable {
  case file(String)
  case s3(S3Object)
  case http(url: String, basicAuth: String?)
  case pipe(command: String)

  public struct S3Object: Sendable, Hashable {
    public var bucket: String
    public var key: String
    /// `endpoint=` from the URL (a full URL; no scheme means https), else resolved from the environment.
    public var endpoint: String?
    public var region: String?
    public var credentials: AWSCredentials?
    public init(bucket: String, key: String, endpoint: String? = nil, region: String? = nil, credentials: AWSCredentials? = nil) {
      (self.bucket, self.key, self.endpoint, self.region, self.credentials) = (bucket, key, endpoint, region, credentials)
    }
  }

  public static func isRemote(_ s: String) -> Bool {
    s.hasPrefix("pipe:") || (s.contains("://") && !s.hasPrefix("file://"))
  }

  /// Parses one (brace-expanded) shard name.
  public static func parse(_ s: String) throws -> ShardLocation {
    if s.hasPrefix("pipe:") {
      let cmd = String(s.dropFirst(5)).trimmingCharacters(in: .whitespaces)
      guard !cmd.isEmpty else { throw DataError.input("shard 'pipe:' has no command") }
      return .pipe(command: cmd)
    }
    if s.hasPrefix("file://") { return .file(String(s.dropFirst(7))) }
    guard let schemeEnd = s.range(of: "://") else { return .file(s) }
    let scheme = s[..<schemeEnd.lowerBound].lowercased()
    let rest = s[schemeEnd.upperBound...]
    let (beforeQuery, query) = rest.firstIndex(of: "?").map { (rest[..<$0], String(rest[rest.index(after: $0)...])) } ?? (rest, "")
    // RFC 3986: the authority ends at the first "/"; user-info is what precedes its last "@".
    let authorityEnd = beforeQuery.firstIndex(of: "/") ?? beforeQuery.endIndex
    let authority = beforeQuery[..<authorityEnd]
    let path = String(beforeQuery[authorityEnd...])
    var userInfo: (String, String)? = nil
    var host = String(authority)
    if let at = authority.lastIndex(of: "@") {
      let info = authority[..<at]
      host = String(authority[authority.index(after: at)...])
      let parts = info.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map { String($0).removingPercentEncoding ?? String($0) }
      userInfo = (parts[0], parts.count > 1 ? parts[1] : "")
    } else if authority.contains(":") && beforeQuery[authorityEnd...].contains("@") && scheme == "s3" {
      // s3://KEY:SECRET/WITH/SLASH@bucket/…: a raw "/" ended the authority inside the secret.
      throw DataError.input("shard \(display(s)): the URL's secret key seems to contain '/'; write it percent-encoded as %2F")
    }
    switch scheme {
    case "s3":
      guard !host.isEmpty else { throw DataError.input("shard \(display(s)): no bucket") }
      let key = String(path.drop { $0 == "/" })
      guard !key.isEmpty else { throw DataError.input("shard \(display(s)): no object key after the bucket") }
      var obj = S3Object(bucket: host, key: key.removingPercentEncoding ?? key)
      for item in query.split(separator: "&") {
        let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        let name = String(kv[0]), value = kv.count > 1 ? (String(kv[1]).removingPercentEncoding ?? String(kv[1])) : ""
        switch name {
        case "endpoint": obj.endpoint = value
        case "region": obj.region = value
        default: throw DataError.input("shard \(display(s)): unknown query parameter '\(name)' (s3:// URLs take endpoint= and region=)")
        }
      }
      if let (id, secret) = userInfo {
        guard !id.isEmpty, !secret.isEmpty else {
          throw DataError.input("shard \(display(s)): user-info must be ACCESS_KEY:SECRET_KEY (percent-encoded)")
        }
        obj.credentials = AWSCredentials(accessKey: id, secretKey: secret)
      }
      return .s3(obj)
    case "http", "https":
      let clean = scheme + "://" + host + path + (query.isEmpty ? "" : "?" + query)
      let basic = userInfo.map { Data("\($0.0):\($0.1)".utf8).base64EncodedString() }
      return .http(url: clean, basicAuth: basic)
    default:
      throw DataError.input("shard \(display(s)): the \(scheme):// scheme is not read (s3://, http://, https://, pipe: and local paths are)")
    }
  }

  /// A shard name fit for logs: URL user-info removed, presigned-URL secrets masked.
  public static func display(_ s: String) -> String {
    var out = s
    // user-info of every URL in the string (a pipe: command may hold one too), up to the last "@"
    // before the query: a secret with a raw "/" is masked whole too.
    while let r = out.range(of: #"://[^\s?]*@"#, options: .regularExpression) {
      out.replaceSubrange(r, with: "://")
    }
    for name in ["X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "Signature", "AWSAccessKeyId"] {
      while let r = out.range(of: "([?&]\(name)=)[^&\\s]+", options: [.regularExpression, .caseInsensitive]),
            !out[r].hasSuffix("=REDACTED") {
        let eq = out[r].firstIndex(of: "=")!
        out.replaceSubrange(out.index(after: eq)..<r.upperBound, with: "REDACTED")
      }
    }
    return out
  }
}

/// An access key, its secret and an optional session token.
public struct AWSCredentials: Sendable, Hashable {
  public var accessKey: String
  public var secretKey: String
  public var sessionToken: String?
  public init(accessKey: String, secretKey: String, sessionToken: String? = nil) {
    (self.accessKey, self.secretKey, self.sessionToken) = (accessKey, secretKey, sessionToken)
  }
}

/// The AWS settings a request needs that the URL may not give, resolved as the AWS SDKs do:
/// environment, then the shared credentials/config files for AWS_PROFILE.
public struct AWSEnvironment: Sendable {
  public let environment: [String: String]
  /// The AWS_PROFILE's settings from the shared files, read once (not on every lookup).
  let profileSettings: [String: String]
  public init(_ environment: [String: String] = ProcessInfo.processInfo.environment) {
    self.environment = environment
    profileSettings = Self.profile(environment)
  }

  /// `[section]` → key → value of an AWS INI file (comments and blank lines skipped).
  static func ini(_ path: String) -> [String: [String: String]] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
    var out: [String: [String: String]] = [:]
    var section = ""
    for raw in text.components(separatedBy: .newlines) {
      let line = raw.trimmingCharacters(in: .whitespaces)
      if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
      if line.hasPrefix("[") && line.hasSuffix("]") {
        section = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
        continue
      }
      guard let eq = line.firstIndex(of: "=") else { continue }
      out[section, default: [:]][line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()] =
        line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
    }
    return out
  }

  /// The profile's settings: the credentials file's `[name]` over the config file's `[profile name]`
  /// (`[default]` for the default profile).
  static func profile(_ environment: [String: String]) -> [String: String] {
    let home = environment["HOME"] ?? NSHomeDirectory()
    let name = environment["AWS_PROFILE"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
    let creds = ini(environment["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials")
    let config = ini(environment["AWS_CONFIG_FILE"] ?? home + "/.aws/config")
    var out = config[name == "default" ? "default" : "profile \(name)"] ?? [:]
    out.merge(creds[name] ?? [:]) { _, c in c }
    return out
  }

  public func credentials() -> AWSCredentials? {
    if let id = environment["AWS_ACCESS_KEY_ID"], let secret = environment["AWS_SECRET_ACCESS_KEY"], !id.isEmpty, !secret.isEmpty {
      return AWSCredentials(accessKey: id, secretKey: secret, sessionToken: environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 })
    }
    let p = profileSettings
    if let id = p["aws_access_key_id"], let secret = p["aws_secret_access_key"], !id.isEmpty, !secret.isEmpty {
      return AWSCredentials(accessKey: id, secretKey: secret, sessionToken: p["aws_session_token"])
    }
    return nil
  }

  public func region() -> String {
    for k in ["AWS_REGION", "AWS_DEFAULT_REGION"] { if let r = environment[k], !r.isEmpty { return r } }
    return profileSettings["region"] ?? "us-east-1"
  }

  public func endpoint() -> String? {
    for k in ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"] { if let e = environment[k], !e.isEmpty { return e } }
    return profileSettings["endpoint_url"]
  }
}
