import CTorch
import Foundation

/// Process-wide libtorch settings and facts.
public enum Torch {
  /// The libtorch version compiled in (e.g. "2.11.0").
  public static var version: String { String(cString: ck_torch_version()) }

  /// Intra-op threads used by CPU kernels.
  public static var threads: Int {
    get { Int(ck_get_num_threads()) }
    set { ck_set_num_threads(Int32(newValue)) }
  }

  /// Makes freed tensor memory stay in the process for reuse rather than going back to the kernel
  /// (a loop that allocates the same sizes each step then stops paying page faults and zeroing).
  /// Resident memory stays at its peak; call once, at startup.
  public static func keepFreedMemory() { ck_keep_freed_memory() }

  /// Seeds libtorch's default generators (CPU and, when loaded, CUDA).
  public static func manualSeed(_ seed: UInt64) throws {
    try check("manual_seed", ck_manual_seed(seed, CUDA.libraryDirectory == nil ? 0 : 1))
  }
  /// libtorch's global switches back to their defaults (no deterministic algorithms, no cuDNN
  /// autotuner, every SDPA kernel): each job starts from them, even after another job ran in this process.
  public static func resetGlobalSettings() throws { try setCuDNN(benchmark: false, deterministic: false) }

  /// TAO's `train.cudnn`: deterministic ⇒ `torch.use_deterministic_algorithms(True, warn_only=True)`
  /// and cuBLAS's fixed workspace (which must be set before CUDA starts); benchmark ⇒ cuDNN's
  /// autotuner.
  public static func setCuDNN(benchmark: Bool, deterministic: Bool) throws {
    if deterministic { setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 0) }
    try check("set_deterministic", ck_set_deterministic(deterministic ? 1 : 0, 1))
    try check("set_cudnn_benchmark", ck_set_cudnn_benchmark(benchmark ? 1 : 0))
    // TAO's deterministic mode also keeps attention on the math kernel (the fused ones are not
    // deterministic in their backward).
    try SDPBackend.allow(flash: !deterministic, memoryEfficient: !deterministic, cudnn: !deterministic)
  }
  /// (deterministic algorithms on, cuDNN benchmark on) as libtorch holds them now.
  public static var cudnnSettings: (deterministic: Bool, benchmark: Bool) { (ck_deterministic() != 0, ck_cudnn_benchmark() != 0) }

  /// Whether a CUDA backend is loaded and sees a device.
  /// (Asking libtorch before `CUDA.load()` would switch CUDA off for the process: it is not asked.)
  public static var cudaAvailable: Bool { cudaDeviceCount > 0 }
  public static var cudaDeviceCount: Int { CUDA.libraryDirectory == nil ? 0 : Int(ck_cuda_device_count()) }

  /// Loads a shared library into the global namespace (for example libtorch_cuda.so, which
  /// registers the CUDA backend with the already-loaded libtorch_cpu).
  public static func loadLibrary(_ path: String) throws { try check("load \(path)", ck_load_library(path)) }

  public static func synchronize(_ device: Device) throws {
    if case .cuda(let i) = device { try check("cuda synchronize", ck_cuda_synchronize(Int32(i))) }
  }
}

/// A seeded CPU random generator, independent of the global one.
public final class Generator: @unchecked Sendable {
  let handle: ck_generator

  public init(seed: UInt64) throws {
    var g: ck_generator? = nil
    try check("generator", ck_generator_new(seed, &g))
    handle = g!
  }
  deinit { ck_generator_free(handle) }

  /// The full generator state (a uint8 tensor), for exact resume.
  public func state() throws -> Tensor { try Tensor.make("generator state") { ck_generator_get_state(handle, $0) } }
  public func setState(_ s: Tensor) throws { try check("generator set_state", ck_generator_set_state(handle, s.handle)) }
}

extension Tensor {
  /// Uniform samples in [0, 1).
  public static func rand(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu, generator: Generator? = nil) throws -> Tensor {
    try random(0, shape, dtype, device, generator)
  }
  /// Standard normal samples.
  /// In place: uniform values in [from, to) from the default generator (`Tensor.uniform_`).
  public func uniform_(_ from: Double, _ to: Double) throws { try check("uniform_", ck_uniform_(handle, from, to)) }
  /// A tensor of `shape` with `like`'s dtype and device, each element 1 with probability p
  /// (`torch.empty(...).bernoulli_(p)`, the default generator).
  public static func bernoulli(like: Tensor, _ shape: [Int], p: Double) throws -> Tensor {
    let s = shape.map(Int64.init)
    return try make("bernoulli") { out in s.withUnsafeBufferPointer { ck_bernoulli(like.handle, $0.baseAddress, Int64(s.count), p, out) } }
  }
  public static func randn(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu, generator: Generator? = nil) throws -> Tensor {
    try random(1, shape, dtype, device, generator)
  }
  private static func random(_ kind: Int32, _ shape: [Int], _ dtype: DType, _ device: Device, _ g: Generator?) throws -> Tensor {
    let dims = shape.map(Int64.init)
    let (t, i) = device.code
    return try make(kind == 0 ? "rand" : "randn") { out in
      dims.withUnsafeBufferPointer { ck_rand(kind, $0.baseAddress, Int64($0.count), dtype.rawValue, t, i, g?.handle, out) }
    }
  }
  /// Integers uniform in [low, high).
  public static func randint(_ low: Int, _ high: Int, _ shape: [Int], device: Device = .cpu, generator: Generator? = nil) throws -> Tensor {
    let dims = shape.map(Int64.init)
    let (t, i) = device.code
    return try make("randint") { out in
      dims.withUnsafeBufferPointer { ck_randint(Int64(low), Int64(high), $0.baseAddress, Int64($0.count), t, i, generator?.handle, out) }
    }
  }
  /// A random permutation of 0..<n.
  public static func randperm(_ n: Int, device: Device = .cpu, generator: Generator? = nil) throws -> Tensor {
    let (t, i) = device.code
    return try make("randperm") { ck_randperm(Int64(n), t, i, generator?.handle, $0) }
  }
}
