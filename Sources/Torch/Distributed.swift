import CTorch
import Dispatch

/// A c10d process group: ranks that run the same program and exchange tensors. Gloo over TCP
/// (CPU tensors), rendezvous through a TCPStore as torchrun's. Every collective blocks until all
/// ranks took part, or fails after the group's timeout (a rank that died makes the others fail,
/// not hang).
public final class ProcessGroup: @unchecked Sendable {
  let handle: ck_pg
  public let rank: Int
  public let worldSize: Int
  /// Where the group's tensors live: CPU for Gloo, the rank's GPU for NCCL.
  public let device: Device

  /// Joins the Gloo group of `worldSize` ranks whose store listens at host:port (rank 0 hosts it,
  /// unless `storeClientOnly`: torchrun's agent already does). Gloo's network interface is
  /// GLOO_SOCKET_IFNAME's, else the one the host name resolves to, as in PyTorch.
  public convenience init(gloo host: String, port: Int, rank: Int, worldSize: Int, storeClientOnly: Bool = false, timeoutSeconds: Double) throws {
    try self.init(backend: "gloo", host: host, port: port, rank: rank, worldSize: worldSize, storeClientOnly: storeClientOnly,
                  timeoutSeconds: timeoutSeconds, device: .cpu)
  }

  /// The NCCL group of the ranks' GPUs (CUDA loaded, `gpu` this rank's device, made current first).
  public convenience init(nccl host: String, port: Int, rank: Int, worldSize: Int, storeClientOnly: Bool = false, timeoutSeconds: Double,
                          gpu: Int) throws {
    try CUDA.setDevice(gpu)
    try self.init(backend: "nccl", host: host, port: port, rank: rank, worldSize: worldSize, storeClientOnly: storeClientOnly,
                  timeoutSeconds: timeoutSeconds, device: .cuda(gpu))
  }

  private init(backend: String, host: String, port: Int, rank: Int, worldSize: Int, storeClientOnly: Bool, timeoutSeconds: Double,
               device: Device) throws {
    guard timeoutSeconds.isFinite, timeoutSeconds > 0, timeoutSeconds <= 1e7 else {
      throw TorchError.invalidArgument("process group timeout \(timeoutSeconds) s: expected 0 < seconds ≤ 10⁷")
    }
    var h: ck_pg? = nil
    let make = backend == "nccl" ? ck_pg_nccl : ck_pg_gloo
    try check("init_process_group(\(backend), \(host):\(port), rank \(rank) of \(worldSize))",
              make(host, Int32(port), Int32(rank), Int32(worldSize), storeClientOnly ? 1 : 0, Int64(timeoutSeconds * 1000), &h))
    handle = h!
    self.rank = rank
    self.worldSize = worldSize
    self.device = device
  }
  deinit { ck_pg_free(handle) }

  /// Sums the tensor across ranks, in place.
  public func allReduce(_ t: Tensor) throws {
    let hs: [ck_tensor?] = [t.handle]
    try hs.withUnsafeBufferPointer { try check("all_reduce", ck_pg_allreduce(handle, $0.baseAddress, 1)) }
  }
  /// Copies root's tensor into every rank's, in place.
  public func broadcast(_ t: Tensor, root: Int = 0) throws { try check("broadcast", ck_pg_broadcast(handle, t.handle, Int32(root))) }
  /// Every rank's tensor stacked along dim 0, in rank order (no gradient).
  public func allGather(_ t: Tensor) throws -> Tensor { try Tensor.make("all_gather") { ck_pg_allgather(handle, t.handle, $0) } }
  /// `allGather` whose backward gives each rank the sum over ranks of its slice's gradient.
  public func allGatherWithGrad(_ t: Tensor) throws -> Tensor {
    try Tensor.make("all_gather (autograd)") { ck_all_gather_with_grad(handle, t.handle, $0) }
  }
  public func barrier() throws { try check("barrier", ck_pg_barrier(handle)) }
  /// Sends `t` to rank `to` and returns what rank `from` sent (same shape); the backward sends
  /// the gradient back the other way. Every rank must call it in the same order.
  public func neighbourExchange(_ t: Tensor, to: Int, from: Int) throws -> Tensor {
    try Tensor.make("neighbour exchange") { ck_neighbour_exchange(handle, Int32(to), Int32(from), t.handle, $0) }
  }
  /// The sum over ranks, with the sum of gradients as its backward.
  public func allReduceWithGrad(_ t: Tensor) throws -> Tensor {
    try Tensor.make("all_reduce (autograd)") { ck_all_reduce_with_grad(handle, t.handle, $0) }
  }

  /// Every rank's bytes (any length), in rank order: a length, then the bytes, broadcast from each
  /// rank in turn (uint8 tensors on the group's device).
  public func allGatherBytes(_ bytes: [UInt8]) throws -> [[UInt8]] {
    try (0..<worldSize).map { r in
      let size = try Tensor([Int64(r == rank ? bytes.count : 0)]).moved(to: device)
      try broadcast(size, root: r)
      let n = Int(try size.item())
      guard n > 0 else { return [] }
      let data = try Tensor(r == rank ? bytes : [UInt8](repeating: 0, count: n)).moved(to: device)
      try broadcast(data, root: r)
      return r == rank ? bytes : try data.moved(to: .cpu).bytes()
    }
  }

  /// Copies rank `root`'s values of every tensor into every rank's (DDP's start: identical replicas).
  public func broadcast(_ tensors: [Tensor], root: Int = 0) throws {
    try noGrad { for t in tensors { try broadcast(t, root: root) } }
  }
}

/// Averages the parameters' gradients across ranks as DistributedDataParallel does, overlapped with
/// backward: buckets of about `bucketBytes` (per dtype and device, parameters in reverse order)
/// start their all-reduce from post-accumulate-grad hooks as soon as backward has filled them.
/// Call `prepare()` before each backward and `finish()` after it.
public final class GradientReducer: @unchecked Sendable {
  let handle: ck_reducer
  let group: ProcessGroup
  /// Wall time spent in `finish()` so far: the all-reduce time backward did not hide.
  public private(set) var exposedSeconds = 0.0
  /// Steps whose buckets were reduced again after backward (a gradient accumulated after its
  /// bucket had started); each costs a second all-reduce.
  public private(set) var redoneSteps = 0
  /// Buckets whose all-reduce backward started (overlapped), and all buckets, over the steps so far.
  public private(set) var overlappedBuckets = 0, reducedBuckets = 0
  public var bucketCount: Int { Int(ck_reducer_buckets(handle)) }

  /// `params`: the trainable leaves (requires_grad), in model order.
  public init(_ group: ProcessGroup, params: [Tensor], bucketBytes: Int = 25 << 20) throws {
    var h: ck_reducer? = nil
    let hs: [ck_tensor?] = params.map(\.handle)
    try hs.withUnsafeBufferPointer { try check("gradient reducer", ck_reducer_new(group.handle, $0.baseAddress, Int64(hs.count), Int64(bucketBytes), &h)) }
    handle = h!
    self.group = group
  }
  deinit { ck_reducer_free(handle) }

  public func prepare() throws { try check("gradient reducer prepare", ck_reducer_prepare(handle)) }

  /// Waits for the buckets, divides by the world size and writes the averages into the gradients.
  public func finish() throws {
    let start = DispatchTime.now().uptimeNanoseconds
    defer { exposedSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
    var redone: Int32 = 0
    var early: Int64 = 0
    try check("gradient all-reduce", ck_reducer_finish(handle, &redone, &early))
    if redone != 0 { redoneSteps += 1 }
    overlappedBuckets += Int(early)
    reducedBuckets += bucketCount
  }
}
