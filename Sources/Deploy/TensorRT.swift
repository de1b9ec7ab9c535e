import Foundation

/// Building a TensorRT engine with NVIDIA's `trtexec`: one optimisation profile over every input
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

  public init(onnx: String, engine: String, minBatch: Int, optBatch: Int, maxBatch: Int, fixedBatch: Int, fp16: Bool,
              workspaceMB: Int, timingCache: String?, layerPrecisions: [String], verbose: Bool) {
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
  }

  /// trtexec arguments for `inputs` (as the ONNX declares them). Only the batch axis may be
  /// dynamic, as in TAO: any other symbolic axis is refused with its name.
  public func arguments(for inputs: [ONNXInputs.Input]) throws -> [String] {
    guard !inputs.isEmpty else { throw DeployError.input("\(onnx) declares no inputs") }
    guard minBatch >= 1, minBatch <= optBatch, optBatch <= maxBatch else {
      throw DeployError.input("gen_trt_engine.tensorrt batch sizes must satisfy 1 <= min (\(minBatch)) <= opt (\(optBatch)) <= max (\(maxBatch))")
    }
    var dynamic = false
    func shape(_ i: ONNXInputs.Input, batch: Int) throws -> String {
      try i.dims.enumerated().map { k, d -> String in
        switch d {
        case .fixed(let n): return String(n)
        case .symbolic(let s):
          guard k == 0 else { throw DeployError.input("input '\(i.name)' has a dynamic axis \(k) ('\(s)'); only the batch axis may be dynamic") }
          dynamic = true
          return String(batch)
        }
      }.joined(separator: "x")
    }
    var args = ["--onnx=\(onnx)", "--saveEngine=\(engine)", "--memPoolSize=workspace:\(workspaceMB)M"]
    let (lo, opt, hi) = fixedBatch > 0 ? (fixedBatch, fixedBatch, fixedBatch) : (minBatch, optBatch, maxBatch)
    let mins = try inputs.map { "\($0.name):\(try shape($0, batch: lo))" }
    let opts = try inputs.map { "\($0.name):\(try shape($0, batch: opt))" }
    let maxs = try inputs.map { "\($0.name):\(try shape($0, batch: hi))" }
    if dynamic {
      args += ["--minShapes=" + mins.joined(separator: ","), "--optShapes=" + opts.joined(separator: ","),
               "--maxShapes=" + maxs.joined(separator: ",")]
    }
    if fp16 { args.append("--fp16") }
    if let tc = timingCache { args.append("--timingCacheFile=\(tc)") }
    if !layerPrecisions.isEmpty {
      args += ["--precisionConstraints=obey", "--layerPrecisions=" + layerPrecisions.joined(separator: ",")]
    }
    if verbose { args.append("--verbose") }
    return args
  }

  /// `trtexec` from CLIPKIT_TRTEXEC, PATH, or TensorRT's usual install folders; nil when absent.
  public static func findTrtexec(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
    if let p = environment["CLIPKIT_TRTEXEC"], FileManager.default.isExecutableFile(atPath: p) { return p }
    let dirs = (environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/src/tensorrt/bin", "/opt/tensorrt/bin"]
    return dirs.map { $0 + "/trtexec" }.first { FileManager.default.isExecutableFile(atPath: $0) }
  }
}
