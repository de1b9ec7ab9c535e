import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import Testing

@testable import Data
@testable import Remote

/// SigV4 against AWS's published S3 examples ("Signature Calculations for the Authorization
/// Header", Amazon S3 API reference): the same credentials, date and requests give the same
/// canonical request, string to sign and signature, byte for byte.
@Suite struct SigV4Signing {
  let creds = SigV4.Credentials(accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
  let host = ("host", "examplebucket.s3.amazonaws.com")
  let date = "20130524T000000Z"

  @Test func getObjectWithARange() {
    let s = SigV4.sign(method: "GET", path: "/test.txt", query: [],
                       headers: [host, ("range", "bytes=0-9"), ("x-amz-content-sha256", SigV4.emptyPayloadHash), ("x-amz-date", date)],
                       payloadHash: SigV4.emptyPayloadHash, credentials: creds, region: "us-east-1", date: date)
    #expect(s.canonicalRequest == """
      GET
      /test.txt

      host:examplebucket.s3.amazonaws.com
      range:bytes=0-9
      x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
      x-amz-date:20130524T000000Z

      host;range;x-amz-content-sha256;x-amz-date
      e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
      """)
    #expect(s.stringToSign == """
      AWS4-HMAC-SHA256
      20130524T000000Z
      20130524/us-east-1/s3/aws4_request
      7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972
      """)
    #expect(s.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    #expect(s.authorization == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
      + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
  }

  @Test func putObjectWithAnEncodedKeyAndExtraHeaders() {
    // Key `test$file.text`: the $ is percent-encoded once; header names arrive in mixed case.
    let payload = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    let s = SigV4.sign(method: "PUT", path: "/test$file.text", query: [],
                       headers: [("Host", host.1), ("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-date", date),
                                 ("x-amz-storage-class", "REDUCED_REDUNDANCY"), ("X-Amz-Content-SHA256", payload)],
                       payloadHash: payload, credentials: creds, region: "us-east-1", date: date)
    #expect(s.canonicalRequest.hasPrefix("PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\nhost:"))
    #expect(s.signedHeaders == "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class")
    #expect(s.signature == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
  }

  @Test func subresourceAndSortedQueries() {
    let headers = [host, ("x-amz-content-sha256", SigV4.emptyPayloadHash), ("x-amz-date", date)]
    let lifecycle = SigV4.sign(method: "GET", path: "/", query: [("lifecycle", "")], headers: headers,
                               payloadHash: SigV4.emptyPayloadHash, credentials: creds, region: "us-east-1", date: date)
    #expect(lifecycle.canonicalRequest.hasPrefix("GET\n/\nlifecycle=\n"))
    #expect(lifecycle.signature == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
    // Given out of order: the canonical query sorts by name.
    let list = SigV4.sign(method: "GET", path: "/", query: [("prefix", "J"), ("max-keys", "2")], headers: headers,
                          payloadHash: SigV4.emptyPayloadHash, credentials: creds, region: "us-east-1", date: date)
    #expect(list.canonicalRequest.hasPrefix("GET\n/\nmax-keys=2&prefix=J\n"))
    #expect(list.signature == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
  }

  @Test func encodingAndDates() {
    #expect(SigV4.uriEncode("a b/c~d_e.f-g+h=ü", keepSlash: true) == "a%20b/c~d_e.f-g%2Bh%3D%C3%BC")
    #expect(SigV4.uriEncode("a/b", keepSlash: false) == "a%2Fb")
    #expect(SigV4.amzDate(Date(timeIntervalSince1970: 1_369_353_600)) == "20130524T000000Z")
  }
}

@Suite struct RemoteShardNames {
  @Test func s3URLsInTAOsFormDecodeTheirKeys() throws {
    let l = try ShardLocation.parse("s3://AKID:se%2Fcr%2Bet@My-Bucket/train/shard-000.tar?endpoint=http://127.0.0.1:9000&region=eu-west-1")
    guard case .s3(let o) = l else { Issue.record("not s3: \(l)"); return }
    // The bucket keeps its case (TAO's urlparse lower-cases it); the secret is percent-decoded.
    #expect(o.bucket == "My-Bucket" && o.key == "train/shard-000.tar")
    #expect(o.endpoint == "http://127.0.0.1:9000" && o.region == "eu-west-1")
    #expect(o.credentials == SigV4.Credentials(accessKey: "AKID", secretKey: "se/cr+et"))
    #expect(ShardLocation.display("s3://AKID:se%2Fcr%2Bet@My-Bucket/k.tar?region=x") == "s3://My-Bucket/k.tar?region=x")
  }

  @Test func badNamesAreRefusedByName() {
    for (line, fragment) in [("s3://AKID:se/cret@bucket/k.tar", "%2F"), ("s3://bucket/k.tar?foo=1", "unknown query parameter 'foo'"),
                             ("s3://bucket", "no object key"), ("ftp://host/x.tar", "ftp:// scheme"), ("pipe:", "no command")] {
      do {
        _ = try ShardLocation.parse(line)
        Issue.record("\(line) accepted")
      } catch {
        let message = (error as? DataError)?.errorDescription ?? "\(error)"
        #expect(message.contains(fragment), "\(line): \(message)")
        #expect(!message.contains("se/cret"))
      }
    }
  }

  @Test func secretsNeverReachADisplayedName() {
    #expect(ShardLocation.display("https://user:pw@host/a.tar?X-Amz-Signature=abc&X-Amz-Credential=AK%2F1&x=1")
      == "https://host/a.tar?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&x=1")
    #expect(ShardLocation.display("pipe:curl -s https://u:p@h/x.tar") == "pipe:curl -s https://h/x.tar")
  }

  @Test func listsKeepTheirOrderAndExpandBracesOnlyInPaths() throws {
    let dir = NSTemporaryDirectory() + "clipkit-remote-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let list = dir + "/shards.txt"
    try """
      s3://b/z-{1..2}.tar?endpoint=http://h:1/{x}&region=r
      local-{0..1}.tar
      pipe:cat /data/a-{0..1}.tar
      https://h/c.tar
      """.write(toFile: list, atomically: true, encoding: .utf8)
    let shards = try WebDataset.shards(rootDir: nil, listFile: list)
    #expect(shards == ["s3://b/z-1.tar?endpoint=http://h:1/{x}&region=r", "s3://b/z-2.tar?endpoint=http://h:1/{x}&region=r",
                       dir + "/local-0.tar", dir + "/local-1.tar", "pipe:cat /data/a-0.tar", "pipe:cat /data/a-1.tar", "https://h/c.tar"])
  }

  @Test func regionEndpointAndCredentialsResolveLikeTheSDKs() throws {
    let dir = NSTemporaryDirectory() + "clipkit-aws-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try "[default]\naws_access_key_id = DEF\naws_secret_access_key = defsecret\n\n[work]\naws_access_key_id = WORK\naws_secret_access_key = w/s\naws_session_token = tok\n"
      .write(toFile: dir + "/credentials", atomically: true, encoding: .utf8)
    try "[profile work]\nregion = ap-south-1\nendpoint_url = http://minio.local:9000\n".write(toFile: dir + "/config", atomically: true, encoding: .utf8)
    let files = ["AWS_SHARED_CREDENTIALS_FILE": dir + "/credentials", "AWS_CONFIG_FILE": dir + "/config"]
    let work = AWSEnvironment(files.merging(["AWS_PROFILE": "work"]) { a, _ in a })
    #expect(work.credentials() == SigV4.Credentials(accessKey: "WORK", secretKey: "w/s", sessionToken: "tok"))
    #expect(work.region() == "ap-south-1" && work.endpoint() == "http://minio.local:9000")
    let plain = AWSEnvironment(files)
    #expect(plain.credentials()?.accessKey == "DEF" && plain.region() == "us-east-1" && plain.endpoint() == nil)
    let env = AWSEnvironment(files.merging(["AWS_ACCESS_KEY_ID": "ENV", "AWS_SECRET_ACCESS_KEY": "e", "AWS_REGION": "us-west-2",
                                            "AWS_ENDPOINT_URL": "http://all", "AWS_ENDPOINT_URL_S3": "http://s3only"]) { a, _ in a })
    #expect(env.credentials()?.accessKey == "ENV" && env.region() == "us-west-2" && env.endpoint() == "http://s3only")
    #expect(AWSEnvironment(["HOME": dir]).credentials() == nil)

    // Path-style on a custom endpoint, virtual-hosted on AWS (path-style for dotted buckets).
    let custom = S3Request(.init(bucket: "b", key: "d/k 1.tar", endpoint: "127.0.0.1:9000"), aws: AWSEnvironment(["HOME": dir]))
    #expect(custom.url == "https://127.0.0.1:9000/b/d/k%201.tar" && custom.host == "127.0.0.1:9000" && custom.path == "/b/d/k 1.tar")
    #expect(custom.credentials == nil && custom.headers(offset: 5).map(\.0) == ["host", "range"])
    let aws = S3Request(.init(bucket: "b", key: "k.tar", region: "eu-west-1", credentials: .init(accessKey: "A", secretKey: "S", sessionToken: "T")),
                        aws: AWSEnvironment(["HOME": dir]))
    #expect(aws.url == "https://b.s3.eu-west-1.amazonaws.com/k.tar")
    let h = Dictionary(uniqueKeysWithValues: aws.headers(offset: 0, now: Date(timeIntervalSince1970: 1_369_353_600)))
    #expect(h["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD" && h["x-amz-security-token"] == "T" && h["range"] == nil)
    #expect(h["authorization"]?.hasPrefix("AWS4-HMAC-SHA256 Credential=A/20130524/eu-west-1/s3/aws4_request, "
      + "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=") == true)
    #expect(S3Request(.init(bucket: "a.b", key: "k"), aws: AWSEnvironment(["HOME": dir])).url == "https://s3.us-east-1.amazonaws.com/a.b/k")
  }

  @Test func pipeCommandsStreamAndSIGPIPEIsNoError() throws {
    let s = try ShardStreams.open("pipe:printf 'abcdef'", offset: 2)
    #expect(try s.readFully(10) == Array("cdef".utf8))
    let failing = try ShardStreams.open("pipe:printf ab; exit 3")
    #expect(throws: (any Error).self) { _ = try failing.readFully(10) }
    let sigpipe = try ShardStreams.open("pipe:printf ab; exit 141")
    #expect(try sigpipe.readFully(10) == Array("ab".utf8))
  }
}

/// Epoch reads from streamed shards return exactly the local bytes in any order, with one stream
/// per shard when the kept members fit, and still exactly when they do not (then members behind
/// the stream cost new requests).
@Suite struct StreamedEpochReads {
  @Test(arguments: [1 << 30, 1], [0, 4]) func anyOrderGivesTheLocalBytes(cap: Int, streams: Int) throws {
    let dir = Bundle.module.path(forResource: "Fixtures", ofType: nil)! + "/shards"
    let local = [dir + "/shard-000000.tar", dir + "/sub/shard-000001.tar"]
    let piped = local.map { "pipe:cat \($0)" }
    let a = WebDataset.index(local), b = WebDataset.index(piped)
    #expect(b.pairs.count == a.pairs.count && a.pairs.count >= 4)
    #expect(b.pairs.map(\.caption) == a.pairs.map(\.caption))
    // Last member first: everything before it is passed on the way (kept, or not when nothing fits).
    let order = Array(a.pairs.indices.reversed())
    let reads = RemoteReads(capBytes: cap, streams: streams)
    reads.plan(order.map { b.pairs[$0].image })
    for i in order {
      guard case .member(let shard, let offset, let size, let name) = b.pairs[i].image else { Issue.record("not a member"); continue }
      #expect(try reads.read(shard: shard, offset: offset, size: size, name: name) == (try a.pairs[i].image.bytes()))
    }
    if cap > 1 { #expect(reads.opened == 2) } else { #expect(reads.opened > 2) }
  }
}

/// A streamed body is read from the socket only as fast as it is taken: past the queue's limit the
/// connection's reads are held until the reader takes the parts (bounded memory per stream), and a
/// read timeout does not fire while they are held (the reader is busy, the server is not stalled).
@Suite struct ResponseBackpressure {
  /// Counts the reads that reach the socket's end of the pipeline.
  final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = Any
    var reads = 0
    func read(context: ChannelHandlerContext) {
      reads += 1
      context.read()
    }
  }

  @Test func aFullQueueHoldsTheSocketReadsUntilTheReaderTakesThem() throws {
    let queue = ResponseQueue(), counter = ReadCounter()
    let channel = EmbeddedChannel()
    try channel.pipeline.syncOperations.addHandlers([counter, ResponseHandler(queue)])
    try channel.writeInbound(HTTPClientResponsePart.head(HTTPResponseHead(version: .http1_1, status: .partialContent)))
    #expect(try queue.waitHead().status == .partialContent)
    let part = ByteBuffer(repeating: 7, count: 1 << 20)
    for _ in 0..<(queue.limit >> 20) { try channel.writeInbound(HTTPClientResponsePart.body(part)) }
    channel.read()
    #expect(counter.reads == 1)  // at the limit: reading goes on
    try channel.writeInbound(HTTPClientResponsePart.body(part))
    channel.read()
    channel.read()
    #expect(counter.reads == 1)  // over it: held
    channel.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.read)
    let batch = try queue.take()
    #expect(batch?.count == (queue.limit >> 20) + 1 && batch?.allSatisfy { $0 == part } == true)
    #expect(counter.reads == 1)
    channel.embeddedEventLoop.run()
    #expect(counter.reads == 2)  // the held read goes on once the parts are taken
    channel.read()
    #expect(counter.reads == 3)
    try channel.writeInbound(HTTPClientResponsePart.body(part))
    try channel.writeInbound(HTTPClientResponsePart.end(nil))
    #expect(try queue.take()?.count == 1)
    #expect(try queue.take() == nil)  // the end; the idle event while held was no failure
  }

  @Test func aClosedConnectionLetsItsHandlerGo() throws {
    let queue = ResponseQueue()
    weak var gone: ResponseHandler?
    try {
      let channel = EmbeddedChannel()
      let handler = ResponseHandler(queue)
      gone = handler
      try channel.pipeline.syncOperations.addHandler(handler)
      try channel.writeInbound(HTTPClientResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok)))
      try channel.writeInbound(HTTPClientResponsePart.body(ByteBuffer(string: "unread")))
      _ = try channel.finish()
    }()
    #expect(gone == nil)  // (the queue's drain hook held it)
    #expect(try queue.take()?.first.map { String(buffer: $0) } == "unread")
  }

  @Test func aStalledServerFailsTheTransfer() throws {
    let queue = ResponseQueue()
    let channel = EmbeddedChannel()
    try channel.pipeline.syncOperations.addHandler(ResponseHandler(queue))
    try channel.writeInbound(HTTPClientResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok)))
    try channel.writeInbound(HTTPClientResponsePart.body(ByteBuffer(string: "abc")))
    channel.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.read)
    #expect(try queue.take()?.count == 1)
    #expect(throws: Transient.self) { _ = try queue.take() }
  }
}

/// The HTTP client against a server on loopback that misbehaves on purpose (by path): the bytes
/// read from any offset are the object's, whatever the server does that HTTP allows, and what it
/// must not do is refused by name.
@Suite struct HTTPClientAnswers {
  static let object = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }

  /// GET /ok (Range honoured), /full (Range ignored: 200 and the whole object), /shifted (206 from
  /// the wrong byte), /hop (a relative 302 to /ok), /loop (302 to itself), /missing (404, S3's XML).
  final class Handler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      guard case .head(let h) = unwrapInboundIn(data) else { return }
      let o = HTTPClientAnswers.object
      let start = h.headers["range"].first.flatMap { UInt64($0.dropFirst(6).prefix { $0 != "-" }) }.map { Int($0) } ?? 0
      var status = HTTPResponseStatus.ok, body = o[...], headers = HTTPHeaders()
      switch h.uri {
      case "/ok" where start > 0, "/shifted" where start > 0:
        let from = h.uri == "/shifted" ? start - 1 : start
        (status, body) = (.partialContent, o[from...])
        headers.add(name: "content-range", value: "bytes \(from)-\(o.count - 1)/\(o.count)")
      case "/ok", "/full", "/shifted": break
      case "/hop": (status, body) = (.found, []); headers.add(name: "location", value: "ok")
      case "/loop": (status, body) = (.found, []); headers.add(name: "location", value: "/loop")
      default: (status, body) = (.notFound, Array("<Error><Code>NoSuchKey</Code></Error>".utf8)[...])
      }
      headers.add(name: "content-length", value: "\(body.count)")
      context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
      context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
      context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
  }

  func withServer(_ body: (Int) throws -> Void) throws {
    let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .childChannelInitializer { ch in
        ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.configureHTTPServerPipeline(); try ch.pipeline.syncOperations.addHandler(Handler()) }
      }
      .bind(host: "127.0.0.1", port: 0).wait()
    defer { try? channel.close().wait() }
    try body(channel.localAddress!.port!)
  }

  func read(_ port: Int, _ path: String, from offset: UInt64) throws -> [UInt8] {
    let s = HTTPRangeStream(display: path, offset: offset) { off in
      ("http://127.0.0.1:\(port)\(path)", off > 0 ? [("range", "bytes=\(off)-")] : [])
    }
    defer { s.close() }
    return try s.readFully(Self.object.count)
  }

  @Test func rangesRedirectsAndWholeAnswersGiveTheObjectsBytes() throws {
    try withServer { (port: Int) throws in
      for offset: UInt64 in [0, 1, 65_537, 299_999] {
        let want = Array(Self.object[Int(offset)...])
        #expect(try read(port, "/ok", from: offset) == want)
        #expect(try read(port, "/full", from: offset) == want)  // 200 to a Range: the bytes before are skipped
        #expect(try read(port, "/hop", from: offset) == want)   // a relative Location
      }
    }
  }

  @Test func redirectsKeepCredentialsOnTheirHostAndScheme() throws {
    let h = [("authorization", "AWS4-HMAC-SHA256 …"), ("x-amz-security-token", "T"), ("range", "bytes=5-")]
    let from = try HTTPTarget("https://s3.example.com/b/k")
    for (to, kept) in [("https://s3.example.com/b/k2", 3), ("https://cdn.example.com/k", 1), ("http://s3.example.com/b/k", 1),
                       ("https://s3.example.com:8443/b/k", 1)] {
      #expect(HTTPTarget.headers(h, redirectedFrom: from, to: try HTTPTarget(to)).count == kept, "\(to)")
    }
    #expect(HTTPTarget.headers(h, redirectedFrom: from, to: try HTTPTarget("http://cdn.example.com/k")).map(\.0) == ["range"])
  }

  @Test func wrongAnswersAreRefusedByName() throws {
    try withServer { (port: Int) throws in
      func failure(_ path: String, from offset: UInt64) -> String? {
        do { _ = try read(port, path, from: offset); return nil } catch { return "\(error)" }
      }
      #expect(failure("/shifted", from: 10) == "shard /shifted: HTTP 206 (the server sent bytes from 9, not from 10 as asked)")
      #expect(failure("/missing", from: 0) == "shard /missing: HTTP 404 (NoSuchKey)")
      #expect(failure("/loop", from: 0) == "shard /loop: more than 5 redirects")
    }
  }
}
