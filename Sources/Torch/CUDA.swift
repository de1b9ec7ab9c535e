import CTorch
import Foundation

/// libtorch's CUDA backend, loaded at run time. The binary links only the CPU libraries, so it
/// starts on hosts without NVIDIA libraries; when a GPU is wanted, `load()` preloads the NVIDIA
/// libraries (in the order PyTorch's `_preload_cuda_deps` uses) and dlopens `libtorch_cuda.so`,
/// whose static initialisers register the CUDA kernels, allocator and hooks with the
/// already-loaded libtorch_cpu. libtorch decides once, on first use, whether CUDA exists, and
/// sizes the autograd engine's device queues at the first backward: so this runs before any
/// tensor work, and nothing here asks libtorch about CUDA before it is loaded.
public enum CUDA {
  public struct GPU: Sendable, CustomStringConvertible {
    public let index: Int
    public let name: String
    public let totalMemory: Int
    public let capability: (major: Int, minor: Int)
    public var description: String {
      String(format: "cuda:%d %@, %.1f GiB, compute capability %d.%d", index, name, Double(totalMemory) / 1_073_741_824,
             capability.major, capability.minor)
    }
  }

  /// The GPUs the NVIDIA driver reports (through libcuda.so.1 directly, not libtorch), or why there are none.
  public static func driverGPUs() -> Result<[GPU], CUDAError> {
    var n: Int32 = 0
    if let e = ck_driver_device_count(&n) {
      defer { ck_free(e) }
      return .failure(.noDriver(String(cString: e)))
    }
    var gpus: [GPU] = []
    for i in 0..<Int(n) {
      var name = [CChar](repeating: 0, count: 256)
      var mem = 0, major: Int32 = 0, minor: Int32 = 0
      if let e = ck_driver_device(Int32(i), &name, 256, &mem, &major, &minor) {
        defer { ck_free(e) }
        return .failure(.noDriver(String(cString: e)))
      }
      let label = name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
      gpus.append(GPU(index: i, name: label, totalMemory: mem, capability: (Int(major), Int(minor))))
    }
    return .success(gpus)
  }

  nonisolated(unsafe) private static var loadedFrom: String?
  private static let lock = NSLock()

  /// Where libtorch_cuda.so was loaded from, once `load()` succeeded.
  public static var libraryDirectory: String? { lock.withLock { loadedFrom } }

  /// Loads the CUDA backend (once). libtorch_cuda.so comes from LIBTORCH_DIR/lib, the folder of the
  /// loaded libtorch_cpu.so (.deps/libtorch here, the torch package on a deployed host), or the
  /// `torch` 2.11 package of python3 (CLIPKIT_PYTHON); the NVIDIA libraries from
  /// CLIPKIT_NVIDIA_DIR or the `nvidia/` folder of that site-packages.
  public static func load() throws {
    try lock.withLock {
      if loadedFrom != nil { return }
      // libtorch fixed "no CUDA" at the first tensor work of this process (another job ran here first).
      guard !Tensor.workStarted else {
        throw CUDAError.missing("CUDA must be loaded before any tensor work in a process, and this process has already run some on the CPU; run GPU jobs in their own process")
      }
      let env = ProcessInfo.processInfo.environment
      var torchDirs: [String] = []
      if let d = env["LIBTORCH_DIR"] { torchDirs.append(d + "/lib") }
      if let p = ck_torch_library_dir() { torchDirs.append(String(cString: p)); ck_free(p) }
      var dir = torchDirs.first { FileManager.default.fileExists(atPath: $0 + "/libtorch_cuda.so") }
      if dir == nil, let py = pythonTorchLib(env) { dir = py }
      guard let dir else {
        throw CUDAError.missing("libtorch_cuda.so is in none of \(torchDirs.joined(separator: ", ")) and python3 has no torch \(Torch.version) package "
          + "(install torch==\(Torch.version) for python3, set LIBTORCH_DIR, or set CLIPKIT_DEVICE=cpu)")
      }
      var roots = [dir + "/../../nvidia"]
      if let n = env["CLIPKIT_NVIDIA_DIR"] { roots.insert(n, at: 0) }
      if !FileManager.default.fileExists(atPath: roots.last!), let py = pythonTorchLib(env) { roots.append(py + "/../../nvidia") }
      for name in preloadOrder {
        guard let path = find(name, in: roots), !isLoaded(soname: (path as NSString).lastPathComponent) else { continue }
        try? Torch.loadLibrary(path)  // what fails here fails again, with its reason, in libtorch_cuda's load
      }
      do {
        try Torch.loadLibrary(dir + "/libtorch_cuda.so")
      } catch {
        throw CUDAError.missing("cannot load \(dir)/libtorch_cuda.so (\(oneLineMessage(error))); NVIDIA libraries were looked for in "
          + "\(roots.joined(separator: ", ")) (install torch==\(Torch.version) with its nvidia-* wheels for python3, set CLIPKIT_NVIDIA_DIR, or set CLIPKIT_DEVICE=cpu)")
      }
      guard ck_cuda_available() != 0 else {
        throw CUDAError.missing("libtorch_cuda.so loaded from \(dir) but libtorch sees no CUDA device")
      }
      loadedFrom = dir
    }
  }

  /// The order of torch/__init__.py's _preload_cuda_deps: cublasLt before cublas (so a system
  /// cublasLt is not picked up), nvJitLink before cusparse (which has no rpath to it), nvrtc
  /// before cuDNN (which dlopens it by name).
  static let preloadOrder = ["libcublasLt.so", "libcublas.so", "libcudnn.so", "libnvrtc.so", "libnvrtc-builtins.so", "libcudart.so",
                             "libcupti.so", "libcufft.so", "libcurand.so", "libnvJitLink.so", "libcusparse.so", "libcusparseLt.so",
                             "libcusolver.so", "libnccl.so", "libnvshmem_host.so", "libcufile.so", "libnvToolsExt.so"]

  private static func find(_ name: String, in roots: [String]) -> String? {
    let fm = FileManager.default
    for root in roots {
      for pkg in ((try? fm.contentsOfDirectory(atPath: root)) ?? []).sorted() {
        let lib = "\(root)/\(pkg)/lib"
        guard let files = try? fm.contentsOfDirectory(atPath: lib) else { continue }
        if let f = files.filter({ $0 == name || $0.hasPrefix(name + ".") }).sorted().first { return lib + "/" + f }
      }
    }
    return nil
  }

  private static func isLoaded(soname: String) -> Bool {
    guard let h = dlopen(soname, RTLD_NOW | RTLD_NOLOAD) else { return false }
    dlclose(h)
    return true
  }

  /// torch/lib of python3's torch package when it is this libtorch's version.
  private static func pythonTorchLib(_ env: [String: String]) -> String? {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [env["CLIPKIT_PYTHON"] ?? "python3", "-c", "import os, torch; print(torch.__version__); print(os.path.dirname(torch.__file__))"]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return nil }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    guard p.terminationStatus == 0, lines.count >= 2, lines[0].hasPrefix(Torch.version) else { return nil }
    return lines[1] + "/lib"
  }

  private static func oneLineMessage(_ e: Error) -> String {
    ((e as? LocalizedError)?.errorDescription ?? "\(e)").split(whereSeparator: \.isNewline).joined(separator: " ")
  }

  // MARK: after load

  /// Caching-allocator statistics of `device` in bytes.
  public static func memory(_ device: Int) throws -> (allocated: Int, peakAllocated: Int, reserved: Int, peakReserved: Int) {
    var a: Int64 = 0, pa: Int64 = 0, r: Int64 = 0, pr: Int64 = 0
    try check("cuda memory stats", ck_cuda_memory(Int32(device), &a, &pa, &r, &pr))
    return (Int(a), Int(pa), Int(r), Int(pr))
  }
  public static func resetPeakMemory(_ device: Int) throws { try check("cuda reset peak", ck_cuda_reset_peak(Int32(device))) }
  /// Makes `device` the current GPU (where allocations without a device, streams and contexts go).
  public static func setDevice(_ device: Int) throws { try check("set_device", ck_set_device(Int32(device))) }
}

public enum CUDAError: Error, LocalizedError, Equatable {
  case noDriver(String)
  case missing(String)
  public var errorDescription: String? {
    switch self {
    case .noDriver(let m): return "no NVIDIA driver: \(m)"
    case .missing(let m): return "CUDA: \(m)"
    }
  }
}

/// The attention kernels scaled_dot_product_attention can run.
public enum SDPBackend: Int, Sendable, CustomStringConvertible {
  case math = 0, flash = 1, memoryEfficient = 2, cudnn = 3, other = 4
  public var description: String {
    switch self {
    case .math: return "math"
    case .flash: return "flash"
    case .memoryEfficient: return "memory-efficient"
    case .cudnn: return "cuDNN"
    case .other: return "other"
    }
  }

  /// The kernel SDPA picks for these inputs under the current switches.
  public static func choice(query q: Tensor, key k: Tensor, value v: Tensor, causal: Bool = false) throws -> SDPBackend {
    var b: Int64 = 0
    try check("_fused_sdp_choice", ck_sdp_choice(q.handle, k.handle, v.handle, causal ? 1 : 0, &b))
    return SDPBackend(rawValue: Int(b)) ?? .other
  }

  /// Which fused kernels SDPA may use (math stays as the fallback).
  public static func allow(flash: Bool, memoryEfficient: Bool, cudnn: Bool) throws {
    try check("sdp backends", ck_set_sdp_backends(flash ? 1 : 0, memoryEfficient ? 1 : 0, cudnn ? 1 : 0, 1))
  }
}

extension Torch {
  /// TF32 for float32 matmuls (cuBLAS) and convolutions (cuDNN) on GPUs.
  public static func setTF32(matmul: Bool, cudnn: Bool) throws { try check("tf32", ck_set_tf32(matmul ? 1 : 0, cudnn ? 1 : 0)) }
}
