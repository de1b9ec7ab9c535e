import Foundation

/// Building a TensorRT engine with NVIDIA's `trtexec` or its Python package: one optimisation profile over every input
/// (batch axis min/opt/max from the spec, other axes as the ONNX fixes them), fp32/fp16,
/// workspace, timing cache, per-layer precisions.
public struct TensorRTBuild: Sendable {
  public var onnx: String
  public var engine: String
  public var minBatch, optBatch, maxBatch: Int
  /// > 0: a fixed batch instead of the min/opt/max range.
  public var fixedBatch: Int
  public var fp16: Bool
  public var workspaceMB: Int
  public var timingCache: String?
  public var layerPrecisions: [String]
  public var verbose: Bool
  /// CUDA device the engine is built on (gen_trt_engine.gpu_id); engines are tuned for that GPU.
  public var gpu: Int

  public init(onnx: String, engine: String, minBatch: Int, optBatch: Int, maxBatch: Int, fixedBatch: Int, fp16: Bool,
              workspaceMB: Int, timingCache: String?, layerPrecisions: [String], verbose: Bool, gpu: Int = 0) {
    self.onnx = onnx
    self.engine = engine
    self.minBatch = minBatch
    self.optBatch = optBatch
    self.maxBatch = maxBatch
    self.fixedBatch = fixedBatch
    self.fp16 = fp16
    self.workspaceMB = workspaceMB
    self.timingCache = timingCache
    self.layerPrecisions = layerPrecisions
    self.verbose = verbose
    self.gpu = gpu
  }

  /// The optimisation profile: min/opt/max shape of every input, or nil when no axis is dynamic.
  /// Only the batch axis may be dynamic, as in TAO: any other symbolic axis is refused by name.
  public func profile(for inputs: [ONNXInputs.Input]) throws -> [(name: String, min: [Int], opt: [Int], max: [Int])]? {
    guard !inputs.isEmpty else { throw DeployError.input("\(onnx) declares no inputs") }
    guard minBatch >= 1, minBatch <= optBatch, optBatch <= maxBatch else {
      throw DeployError.input("gen_trt_engine.tensorrt batch sizes must satisfy 1 <= min (\(minBatch)) <= opt (\(optBatch)) <= max (\(maxBatch))")
    }
    var dynamic = false
    func shape(_ i: ONNXInputs.Input, batch: Int) throws -> [Int] {
      try i.dims.enumerated().map { k, d -> Int in
        switch d {
        case .fixed(let n): return n
        case .symbolic(let s):
          guard k == 0 else { throw DeployError.input("input '\(i.name)' has a dynamic axis \(k) ('\(s)'); only the batch axis may be dynamic") }
          dynamic = true
          return batch
        }
      }
    }
    let (lo, opt, hi) = fixedBatch > 0 ? (fixedBatch, fixedBatch, fixedBatch) : (minBatch, optBatch, maxBatch)
    let p = try inputs.map { (name: $0.name, min: try shape($0, batch: lo), opt: try shape($0, batch: opt), max: try shape($0, batch: hi)) }
    return dynamic ? p : nil
  }

  /// trtexec arguments for `inputs` (as the ONNX declares them). `precisionFlags`: whether this
  /// TensorRT still has `--fp16` and per-layer precisions (removed in 11, where the graph's own
  /// types decide and gen_trt_engine converts the graph instead).
  public func arguments(for inputs: [ONNXInputs.Input], precisionFlags: Bool = true) throws -> [String] {
    var args = ["--onnx=\(onnx)", "--saveEngine=\(engine)", "--memPoolSize=workspace:\(workspaceMB)M"]
    if let p = try profile(for: inputs) {
      func spec(_ pick: ((name: String, min: [Int], opt: [Int], max: [Int])) -> [Int]) -> String {
        p.map { "\($0.name):" + pick($0).map(String.init).joined(separator: "x") }.joined(separator: ",")
      }
      args += ["--minShapes=" + spec(\.min), "--optShapes=" + spec(\.opt), "--maxShapes=" + spec(\.max)]
    }
    if fp16 && precisionFlags { args.append("--fp16") }
    if let tc = timingCache { args.append("--timingCacheFile=\(tc)") }
    if !layerPrecisions.isEmpty && precisionFlags {
      args += ["--precisionConstraints=obey", "--layerPrecisions=" + layerPrecisions.joined(separator: ",")]
    }
    if verbose { args.append("--verbose") }
    if gpu != 0 { args.append("--device=\(gpu)") }
    return args
  }

  /// The same build for the Python helper's `build` command (JSON).
  public func pythonConfig(for inputs: [ONNXInputs.Input], precisionFlags: Bool) throws -> String {
    let profile = try self.profile(for: inputs)?.map { ["name": $0.name, "min": $0.min, "opt": $0.opt, "max": $0.max] as [String: Any] } ?? []
    let layers = precisionFlags ? layerPrecisions.map { e -> [String] in
      guard let c = e.lastIndex(of: ":") else { return [e, "fp32"] }
      return [String(e[..<c]), String(e[e.index(after: c)...]).lowercased()]
    } : []
    let cfg: [String: Any] = ["onnx": onnx, "engine": engine, "workspace_mb": workspaceMB, "profile": profile, "fp16": fp16 && precisionFlags,
                              "layer_precisions": layers, "timing_cache": timingCache ?? NSNull(), "verbose": verbose]
    return String(decoding: try JSONSerialization.data(withJSONObject: cfg, options: [.sortedKeys]), as: UTF8.self)
  }

  /// `trtexec` from CLIPKIT_TRTEXEC, PATH, or TensorRT's usual install folders; nil when absent.
  public static func findTrtexec(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
    if let p = environment["CLIPKIT_TRTEXEC"], FileManager.default.isExecutableFile(atPath: p) { return p }
    let dirs = (environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/src/tensorrt/bin", "/opt/tensorrt/bin"]
    return dirs.map { $0 + "/trtexec" }.first { FileManager.default.isExecutableFile(atPath: $0) }
  }
}

/// Which TensorRT builds the engine: `trtexec` where it is installed, else TensorRT's Python
/// package through the helper; and whether that TensorRT has the weak-typing precision flags.
public enum TensorRTBuilder: Sendable {
  case trtexec(String, precisionFlags: Bool)
  case python(String, version: String, precisionFlags: Bool)

  public var precisionFlags: Bool {
    switch self {
    case .trtexec(_, let f), .python(_, _, let f): return f
    }
  }

  public static func find(environment env: [String: String] = ProcessInfo.processInfo.environment) throws -> TensorRTBuilder {
    if let t = TensorRTBuild.findTrtexec(environment: env) {
      // TensorRT 11's trtexec no longer lists --fp16.
      let help = (try? run(t, ["--help"])) ?? ""
      return .trtexec(t, precisionFlags: help.contains("--fp16"))
    }
    let python = TensorRTEngine.python(env)
    struct Probe: Decodable { let version: String?; let precision_flags: Bool?; let error: String? }
    // Library warnings may share the output: the reply is whichever line decodes.
    if let out = try? run("/usr/bin/env", [python, "-c", TensorRTPython.script, "probe"]),
       let p = out.split(separator: "\n").reversed().lazy.compactMap({ try? JSONDecoder().decode(Probe.self, from: Data($0.utf8)) }).first,
       let v = p.version {
      return .python(python, version: v, precisionFlags: p.precision_flags ?? false)
    }
    throw DeployError.input("TensorRT was not found: gen_trt_engine needs NVIDIA TensorRT on a machine with an NVIDIA GPU, either trtexec "
      + "(on PATH, in /usr/src/tensorrt/bin, or named by CLIPKIT_TRTEXEC) or its Python package (pip install tensorrt; "
      + "CLIPKIT_PYTHON names the Python, now \(python))")
  }

  /// Builds `build` (whose `onnx` may be the converted graph) and returns the builder's output.
  public func build(_ build: TensorRTBuild, inputs: [ONNXInputs.Input]) throws {
    switch self {
    case .trtexec(let t, let flags):
      let args = try build.arguments(for: inputs, precisionFlags: flags)
      print("Running \(t) " + args.joined(separator: " "))
      let status = try Self.passthrough(t, args)
      guard status == 0, FileManager.default.fileExists(atPath: build.engine) else {
        throw DeployError.input("trtexec failed (exit \(status)); no engine was written to \(build.engine)")
      }
    case .python(let python, let version, let flags):
      print("Building with TensorRT \(version) (Python package, \(python))")
      // The helper's replies are its stdout; TensorRT's log goes to stderr, shown as it comes.
      let p = Process(), pipe = Pipe()
      p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
      p.arguments = [python, "-c", TensorRTPython.script, "build", try build.pythonConfig(for: inputs, precisionFlags: flags)]
      p.environment = TensorRTBuilder.environment(selecting: build.gpu)
      p.standardOutput = pipe
      try p.run()
      let reply = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      p.waitUntilExit()
      struct Reply: Decodable { let error: String? }
      let last = reply.split(separator: "\n").last.map(String.init) ?? ""
      if let e = (try? JSONDecoder().decode(Reply.self, from: Data(last.utf8)))?.error { throw DeployError.input(e) }
      guard p.terminationStatus == 0, FileManager.default.fileExists(atPath: build.engine) else {
        throw DeployError.input("TensorRT's builder failed (exit \(p.terminationStatus)); no engine was written to \(build.engine)")
      }
    }
  }

  /// The helper's environment with only CUDA device `gpu` visible (TensorRT's Python builder uses
  /// the current device): the gpu-th entry of an existing CUDA_VISIBLE_DEVICES, as CUDA numbers them.
  static func environment(selecting gpu: Int, _ env: [String: String] = ProcessInfo.processInfo.environment) -> [String: String] {
    var e = env
    guard gpu != 0 || env["CUDA_VISIBLE_DEVICES"] != nil else { return e }
    let visible = env["CUDA_VISIBLE_DEVICES"]?.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
    e["CUDA_VISIBLE_DEVICES"] = visible.flatMap { gpu < $0.count ? $0[gpu] : nil } ?? String(gpu)
    return e
  }

  /// Runs a tool with its output shown as it comes.
  static func passthrough(_ exe: String, _ args: [String]) throws -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    try p.run()
    p.waitUntilExit()
    return p.terminationStatus
  }

  /// Runs a tool and returns its stdout and stderr together.
  static func run(_ exe: String, _ args: [String]) throws -> String {
    let p = Process(), pipe = Pipe()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
  }
}
