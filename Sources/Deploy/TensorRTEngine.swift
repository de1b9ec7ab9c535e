import Foundation

/// A tensor crossing the process boundary: little-endian bytes in row-major order.
public struct HostTensor: Sendable {
  public var dtype: String  // numpy's names: float32, float16, int64, int32, bool
  public var shape: [Int]
  public var data: Data
  public init(dtype: String, shape: [Int], data: Data) {
    self.dtype = dtype
    self.shape = shape
    self.data = data
  }
}

/// A TensorRT engine run by the Python helper (TensorRTPython.swift) in a child process that
/// lives as long as this object. Framing, one request at a time: a JSON line
/// `{"inputs": [{name, dtype, shape}], "outputs": [names]}` then each input's bytes; the reply is
/// `{"outputs": [{name, dtype, shape}]}` then each output's bytes, or `{"error": "..."}`.
public final class TensorRTEngine: @unchecked Sendable {
  public struct IO: Decodable, Sendable {
    public let name: String
    public let dtype: String
    public let shape: [Int]  // -1 = dynamic
    public let min: [Int]?
    public let max: [Int]?
  }
  public enum Backend: String, Sendable { case tensorrt, onnxruntime }

  public let path: String
  public let inputs: [IO]
  public let outputs: [IO]
  private let process: Process
  private let toChild: FileHandle
  private let fromChild: FileHandle
  /// Set when a reply could not be read whole: the stream is out of step, the helper is stopped.
  private var broken: String?

  /// `python`: CLIPKIT_PYTHON, else python3 on PATH.
  public init(path: String, backend: Backend = .tensorrt, gpu: Int = 0,
              environment: [String: String] = ProcessInfo.processInfo.environment) throws {
    guard FileManager.default.fileExists(atPath: path) else { throw DeployError.input("\(path) does not exist") }
    // A helper that dies mid-request must surface as a write error, not kill clipkit.
    signal(SIGPIPE, SIG_IGN)
    self.path = path
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [Self.python(environment), "-c", TensorRTPython.script, "serve", path, backend.rawValue, String(gpu)]
    let stdin = Pipe(), stdout = Pipe()
    p.standardInput = stdin
    p.standardOutput = stdout
    do { try p.run() } catch { throw DeployError.input("cannot start \(Self.python(environment)) for TensorRT: \(error)") }
    process = p
    toChild = stdin.fileHandleForWriting
    fromChild = stdout.fileHandleForReading
    struct Hello: Decodable { let inputs: [IO]?; let outputs: [IO]?; let error: String? }
    let hello = try Self.decode(Hello.self, try Self.readLine(fromChild, p, path: path), path: path)
    if let e = hello.error { throw DeployError.input(Self.explain(e, path: path, environment: environment)) }
    inputs = hello.inputs ?? []
    outputs = hello.outputs ?? []
  }

  deinit {
    // Closing both ends ends the helper's loop, even one blocked writing a reply nobody reads.
    try? toChild.close()
    try? fromChild.close()
    if process.isRunning { process.terminate() }
    process.waitUntilExit()
  }

  static func python(_ env: [String: String]) -> String {
    if let p = env["CLIPKIT_PYTHON"], !p.isEmpty { return p }
    return "python3"
  }

  /// Missing TensorRT (or a Python without it) is the common failure: say what to install.
  static func explain(_ error: String, path: String, environment: [String: String]) -> String {
    if error.hasPrefix("ImportError") || error.hasPrefix("ModuleNotFoundError") {
      guard error.contains("tensorrt") else {
        return "\(path): the TensorRT helper needs numpy (and torch or libcudart for GPU buffers) beside TensorRT's Python package; \(python(environment)) failed: \(error)"
      }
      return "TensorRT was not found: running \(path) needs TensorRT's Python package, which \(python(environment)) cannot import (\(error)); "
        + "install it (pip install tensorrt) on a machine with an NVIDIA GPU, or set CLIPKIT_PYTHON to a Python that has it"
    }
    return "\(path): \(error)"
  }

  /// Runs the engine on `feeds` (by input name) and returns the `outputs` asked for.
  public func run(_ feeds: [String: HostTensor], outputs wanted: [String]) throws -> [String: HostTensor] {
    struct Meta: Codable { let name: String; let dtype: String; let shape: [Int] }
    struct Request: Encodable { let inputs: [Meta]; let outputs: [String] }
    struct Reply: Decodable { let outputs: [Meta]?; let error: String? }
    if let broken { throw DeployError.input("\(path): the TensorRT helper was stopped after an earlier error (\(broken))") }
    let order = feeds.keys.sorted()
    for (k, t) in feeds {
      guard let size = Self.itemSize[t.dtype], Self.byteCount(t.shape, size) == t.data.count else {
        throw DeployError.input("\(path): input \(k) holds \(t.data.count) bytes, not \(t.shape) of \(t.dtype)")
      }
    }
    let sorted = order.compactMap { k in feeds[k].map { (k, $0) } }
    let req = Request(inputs: sorted.map { Meta(name: $0.0, dtype: $0.1.dtype, shape: $0.1.shape) }, outputs: wanted)
    var message = try JSONEncoder().encode(req)
    message.append(0x0A)
    for (_, t) in sorted { message.append(t.data) }
    // A framing failure leaves the stream out of step: stop the helper for good.
    func fail(_ why: String) -> DeployError {
      broken = why
      if process.isRunning { process.terminate() }
      return DeployError.input(why.hasPrefix(path) ? why : "\(path): \(why)")
    }
    do { try toChild.write(contentsOf: message) } catch { throw fail("the TensorRT helper stopped (\(error))") }
    let line: Data
    do { line = try Self.readLine(fromChild, process, path: path) } catch { throw fail("\(error.localizedDescription)") }
    guard let reply = try? JSONDecoder().decode(Reply.self, from: line) else {
      throw fail("unreadable reply from the TensorRT helper: \(String(decoding: line.prefix(200), as: UTF8.self))")
    }
    if let e = reply.error { throw DeployError.input("\(path): \(e)") }  // reported by the helper, which is still in step
    var result: [String: HostTensor] = [:]
    for m in reply.outputs ?? [] {
      guard let size = Self.itemSize[m.dtype] else { throw fail("output \(m.name) has unsupported type \(m.dtype)") }
      // The helper's shape sets how many bytes follow: checked before anything is read.
      guard let bytes = Self.byteCount(m.shape, size) else { throw fail("output \(m.name) has an invalid shape \(m.shape)") }
      do { result[m.name] = HostTensor(dtype: m.dtype, shape: m.shape, data: try read(bytes)) } catch {
        throw fail("\(error.localizedDescription)")
      }
    }
    // The stream is in step (every output announced was read), so only this request fails.
    if let missing = wanted.first(where: { result[$0] == nil }) {
      throw DeployError.input("\(path): the TensorRT helper's reply has no output '\(missing)' (it sent \(result.keys.sorted()))")
    }
    return result
  }

  public static let itemSize: [String: Int] = ["float32": 4, "float16": 2, "int64": 8, "int32": 4, "bool": 1, "uint8": 1, "int8": 1]

  /// Bytes of a tensor of `shape`: nil for a negative dimension or a count past Int.max.
  static func byteCount(_ shape: [Int], _ itemSize: Int) -> Int? {
    var n = itemSize
    for d in shape {
      guard d >= 0 else { return nil }
      let (m, overflow) = n.multipliedReportingOverflow(by: d)
      guard !overflow else { return nil }
      n = m
    }
    return n
  }

  private static func decode<T: Decodable>(_: T.Type, _ line: Data, path: String) throws -> T {
    do { return try JSONDecoder().decode(T.self, from: line) } catch {
      throw DeployError.input("\(path): unreadable reply from the TensorRT helper: \(String(decoding: line.prefix(200), as: UTF8.self))")
    }
  }

  private static func readLine(_ fromChild: FileHandle, _ process: Process, path: String) throws -> Data {
    var line = Data()
    while true {
      guard let b = try fromChild.read(upToCount: 1), let c = b.first else {
        process.waitUntilExit()
        throw DeployError.input("\(path): the TensorRT helper exited (status \(process.terminationStatus)) without a reply; its messages are above")
      }
      if c == 0x0A { return line }
      line.append(c)
    }
  }

  private func read(_ n: Int) throws -> Data {
    // Reserved and read in bounded steps: n comes from the reply, the bytes may never come.
    var d = Data(capacity: min(n, 1 << 26))
    while d.count < n {
      guard let chunk = try fromChild.read(upToCount: min(n - d.count, 1 << 20)), !chunk.isEmpty else {
        throw DeployError.input("\(path): the TensorRT helper's reply was cut short")
      }
      d.append(chunk)
    }
    return d
  }
}
