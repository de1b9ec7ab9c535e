import Foundation
import Spec
import Torch
import Training

/// A data-parallel launch as torchrun describes it to each process (RANK, WORLD_SIZE, LOCAL_RANK,
/// MASTER_ADDR, MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE), or as Lightning's multi-node launch
/// does with one process per node (NODE_RANK, MASTER_ADDR, MASTER_PORT and train.num_nodes).
struct DistributedLaunch: Sendable {
  let rank: Int
  let worldSize: Int
  let localRank: Int
  let masterAddr: String
  let masterPort: Int
  /// torchrun's agent hosts the store: every rank, rank 0 included, is a client.
  let agentStore: Bool

  /// nil: one process without launch variables.
  static func from(_ env: [String: String], numNodes: Int, numGpus: Int) throws -> DistributedLaunch? {
    func int(_ k: String) throws -> Int? {
      guard let v = env[k], !v.isEmpty else { return nil }
      guard let i = Int(v), i >= 0 else { throw ActionError.input("\(k)=\(v): expected a whole number ≥ 0") }
      return i
    }
    let port = try int("MASTER_PORT") ?? 29500
    guard port > 0 && port < 65536 else { throw ActionError.input("MASTER_PORT=\(port): expected 1…65535") }
    let addr = env["MASTER_ADDR"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
    if let world = try int("WORLD_SIZE") {
      guard world >= 1 else { throw ActionError.input("WORLD_SIZE=0: expected at least 1") }
      guard let rank = try int("RANK") else { throw ActionError.input("WORLD_SIZE=\(world) is set but RANK is not (launch with torchrun, or set both)") }
      guard rank < world else { throw ActionError.input("RANK=\(rank) is not below WORLD_SIZE=\(world)") }
      // torchrun with one process still gets a group (of one), as PyTorch's launch does.
      return DistributedLaunch(rank: rank, worldSize: world, localRank: try int("LOCAL_RANK") ?? 0, masterAddr: addr, masterPort: port,
                               agentStore: env["TORCHELASTIC_USE_AGENT_STORE"] == "True")
    }
    // Lightning: one process per node here (train.num_gpus 1), NODE_RANK numbering the nodes.
    if numNodes > 1 {
      guard let node = try int("NODE_RANK") else {
        throw ActionError.input("train.num_nodes=\(numNodes): set NODE_RANK, MASTER_ADDR and MASTER_PORT on each node (as for Lightning), or launch with torchrun")
      }
      guard node < numNodes else { throw ActionError.input("NODE_RANK=\(node) is not below train.num_nodes=\(numNodes)") }
      guard numGpus <= 1 else { return nil }  // this node spawns its num_gpus ranks (localRanks)
      return DistributedLaunch(rank: node, worldSize: numNodes, localRank: 0, masterAddr: addr, masterPort: port, agentStore: false)
    }
    return nil
  }
}

/// The ranks a node starts itself for `train.num_gpus` > 1 without torchrun, as Lightning does:
/// torchrun's variables for each (RANK = node × num_gpus + i), every GPU of `gpu_ids` visible and
/// LOCAL_RANK picking one. nil: not such a launch.
func localRanks(_ env: [String: String], numGpus: Int, numNodes: Int, gpuIds: [Int]) throws -> [[String: String]]? {
  guard numGpus > 1, env["WORLD_SIZE"] == nil else { return nil }
  let node = numNodes > 1 ? Int(env["NODE_RANK"] ?? "") : 0
  guard let node, node >= 0, node < numNodes else {
    throw ActionError.input("train.num_nodes=\(numNodes): set NODE_RANK (0…\(numNodes - 1)), MASTER_ADDR and MASTER_PORT on each node, or launch with torchrun")
  }
  let port = env["MASTER_PORT"] ?? (numNodes > 1 ? "29500" : String(freeTCPPort() ?? 29500))
  var base = env.filter { !["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK"].contains($0.key) }
  base["MASTER_ADDR"] = env["MASTER_ADDR"] ?? "127.0.0.1"
  base["MASTER_PORT"] = port
  if gpuIds.count == numGpus { base["CUDA_VISIBLE_DEVICES"] = gpuIds.map(String.init).joined(separator: ",") }
  return (0..<numGpus).map { i in
    base.merging(["RANK": "\(node * numGpus + i)", "LOCAL_RANK": "\(i)", "WORLD_SIZE": "\(numNodes * numGpus)",
                  "LOCAL_WORLD_SIZE": "\(numGpus)", "GROUP_RANK": "\(node)"]) { _, new in new }
  }
}

/// A TCP port free now on 127.0.0.1 (the kernel's pick), for a one-node launch's store.
func freeTCPPort() -> Int? {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  guard fd >= 0 else { return nil }
  defer { close(fd) }
  var addr = sockaddr_in()
  addr.sin_family = sa_family_t(AF_INET)
  addr.sin_addr.s_addr = inet_addr("127.0.0.1")
  var len = socklen_t(MemoryLayout<sockaddr_in>.size)
  let bound = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
  guard bound == 0 else { return nil }
  _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
  return Int(UInt16(bigEndian: addr.sin_port))
}

/// Runs this same command once per rank (posix_spawn through Foundation's Process: never a fork
/// of a process that has started libtorch) and waits; when one rank fails the others are stopped.
func runLocalRanks(_ envs: [[String: String]]) throws {
  let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
  let children = try envs.map { env -> Process in
    let p = Process()
    p.executableURL = exe
    p.arguments = Array(CommandLine.arguments.dropFirst())
    p.environment = env
    try p.run()
    return p
  }
  print("Started \(children.count) ranks on this node (pids \(children.map { String($0.processIdentifier) }.joined(separator: ", ")))")
  var failed: (rank: Int, status: Int32)? = nil
  while children.contains(where: { $0.isRunning }) {
    if failed == nil, let i = children.firstIndex(where: { !$0.isRunning && $0.terminationStatus != 0 }) {
      failed = (i, children[i].terminationStatus)
      for c in children where c.isRunning { c.terminate() }
    }
    usleep(100_000)
  }
  if failed == nil, let i = children.firstIndex(where: { $0.terminationStatus != 0 }) { failed = (i, children[i].terminationStatus) }
  if let failed { throw ActionError.input("local rank \(failed.rank) exited with status \(failed.status); the other ranks were stopped") }
}

/// Joins the training job's process group, or nil for one process. Gloo for CPU ranks.
func joinProcessGroup(_ ctx: ActionContext, _ launch: DistributedLaunch) throws -> ProcessGroup {
  let env = ProcessInfo.processInfo.environment
  let timeout = try env["CLIPKIT_DIST_TIMEOUT"].map { v -> Double in
    guard let s = Double(v), s > 0 else { throw ActionError.input("CLIPKIT_DIST_TIMEOUT=\(v): expected seconds > 0") }
    return s
  } ?? 600
  let group: ProcessGroup
  if case .cuda(let gpu) = ctx.device {
    group = try ProcessGroup(nccl: launch.masterAddr, port: launch.masterPort, rank: launch.rank, worldSize: launch.worldSize,
                             storeClientOnly: launch.agentStore, timeoutSeconds: timeout, gpu: gpu)
  } else {
    group = try ProcessGroup(gloo: launch.masterAddr, port: launch.masterPort, rank: launch.rank, worldSize: launch.worldSize,
                             storeClientOnly: launch.agentStore, timeoutSeconds: timeout)
  }
  if launch.rank == 0 {
    print("Joined \(ctx.device.isCUDA ? "an NCCL" : "a Gloo") group of \(launch.worldSize) ranks through \(launch.masterAddr):\(launch.masterPort) "
      + "(collectives time out after \(Int(timeout)) s)")
  }
  return group
}

/// DDP's gradient bucket size: 25 MB as PyTorch's `bucket_cap_mb`, or CLIPKIT_DDP_BUCKET_MB.
/// Smaller buckets start their all-reduce earlier in backward, at more calls.
func gradientBucketBytes() throws -> Int {
  guard let v = ProcessInfo.processInfo.environment["CLIPKIT_DDP_BUCKET_MB"] else { return 25 << 20 }
  guard let mb = Double(v), mb > 0, mb <= 1_048_576 else { throw ActionError.input("CLIPKIT_DDP_BUCKET_MB=\(v): expected megabytes > 0") }
  return max(1, Int(mb * 1_048_576))
}

/// Lightning's DistributedSampler over an epoch's order: padded by repeating its head to a multiple
/// of the world size, then every W-th index from `rank`. The ranks' batches at step s together are
/// the single process's batch s at W times the batch size.
func shard(_ order: [Int], rank: Int, worldSize: Int) -> [Int] {
  guard worldSize > 1, !order.isEmpty else { return order }
  let total = (order.count + worldSize - 1) / worldSize * worldSize
  var padded = order
  while padded.count < total { padded += order.prefix(total - padded.count) }
  return stride(from: rank, to: total, by: worldSize).map { padded[$0] }
}

/// The contrastive loss of one rank, as TAO computes it with open_clip across ranks.
/// SigLIP: this rank's images against its own texts (positives) plus every other rank's texts
/// (negatives), normalised by the local batch; with gradients averaged across ranks this is the
/// single-process loss on the whole batch. How the texts travel is `train.siglip_loss_dist_impl`,
/// open_clip's `dist_impl`: `gather` (one all-gather with gradient), `reduce` (one all-reduce
/// with gradient per rank), `shift` (W−1 ring steps to the right), `bidir` (rounds that send both
/// ways, then one ring step if W−1 is odd); `local` scores this rank's pairs only. CLIP (TAO's
/// ClipLoss: no gradient through the gather, local_loss off): every rank computes the whole batch's
/// loss with its own features spliced in, so the averaged gradient is the single process's
/// divided by W (the logit scale's excepted: it is in every rank's whole loss).
func rankLoss(_ kind: ContrastiveLoss, distImpl: String, image: Tensor, text: Tensor, logitScale: Tensor, logitBias: Tensor,
              group: ProcessGroup?) throws -> Tensor {
  guard let g = group, g.worldSize > 1 else { return try kind(image: image, text: text, logitScale: logitScale, logitBias: logitBias) }
  let b = image.size(0), (w, r) = (g.worldSize, g.rank)
  switch kind {
  case .siglip:
    // −Σ log σ(z·(s·I·Tᵀ + β)) / b with z = +1 on the diagonal of a positive block, −1 elsewhere.
    func term(_ texts: Tensor, positive: Bool) throws -> Tensor {
      let logits = try image.matmul(try texts.transpose(0, 1)) * logitScale.exp() + logitBias
      let labels = positive ? try Tensor.eye(b, device: image.device) * 2 - 1 : try Tensor.full([b, texts.size(0)], -1, device: image.device)
      return try -(try (labels * logits).logSigmoid().sum()) / Double(b)
    }
    var loss = try term(text, positive: true)
    let (left, right) = ((r - 1 + w) % w, (r + 1) % w)
    switch distImpl {
    case "local":
      break
    case "gather":
      let all = try g.allGatherWithGrad(text)
      for q in 0..<w where q != r { loss = try loss + term(try all.narrow(dim: 0, start: q * b, length: b), positive: false) }
    case "reduce":
      // The own round stays in the graph at weight 0 (as open_clip's): every rank must run each
      // round's backward all-reduce, in the same order.
      for q in 0..<w {
        let fromQ = try g.allReduceWithGrad(try text * (q == r ? 1.0 : 0.0))
        loss = try loss + term(fromQ, positive: false) * (q == r ? 0.0 : 1.0)
      }
    case "shift":
      var toRight = text
      for _ in 0..<(w - 1) {
        let fromLeft = try g.neighbourExchange(toRight, to: right, from: left)
        loss = try loss + term(fromLeft, positive: false)
        toRight = fromLeft
      }
    case "bidir":
      var (toLeft, toRight) = (text, text)
      let (rounds, remainder) = (w - 1).quotientAndRemainder(dividingBy: 2)
      for _ in 0..<rounds {
        let fromRight = try g.neighbourExchange(toLeft, to: left, from: right)
        let fromLeft = try g.neighbourExchange(toRight, to: right, from: left)
        loss = try loss + term(fromRight, positive: false) + term(fromLeft, positive: false)
        (toLeft, toRight) = (fromRight, fromLeft)
      }
      if remainder > 0 {
        let fromLeft = try g.neighbourExchange(toRight, to: right, from: left)
        loss = try loss + term(fromLeft, positive: false)
      }
    default:
      throw ActionError.input("train.siglip_loss_dist_impl=\(distImpl): expected gather, bidir, shift, reduce or local")
    }
    return loss
  case .clip:
    func spliced(_ x: Tensor) throws -> Tensor {
      let all = try noGrad { try g.allGather(x.detach()) }
      var parts: [Tensor] = []
      if r > 0 { parts.append(try all.narrow(dim: 0, start: 0, length: r * b)) }
      parts.append(x)
      if r < w - 1 { parts.append(try all.narrow(dim: 0, start: (r + 1) * b, length: (w - r - 1) * b)) }
      return try Tensor.cat(parts)
    }
    return try kind(image: try spliced(image), text: try spliced(text), logitScale: logitScale, logitBias: logitBias)
  }
}

/// Every rank's embeddings of its validation share, gathered and put back in the set's order.
/// `keptRows`: which of this rank's `rows` positions decoded; `sampleIndex`: each kept row's index
/// in the set (nil for a padding repeat, which is dropped); `image`/`text`: the kept rows'
/// embeddings, `dim` wide (0 when this rank kept none).
func gatherEmbeddings(_ group: ProcessGroup, rows: Int, keptRows: [Int], sampleIndex: [Int?], image: [Float], text: [Float], dim: Int)
  throws -> (image: [Float], text: [Float], count: Int, dim: Int) {
  let d = Int(try group.allGather(try Tensor([Float(dim)]).moved(to: group.device)).toArray(Float.self).max() ?? 0)
  guard d > 0 else { return ([], [], 0, 0) }
  var img = [Float](repeating: 0, count: rows * d), txt = img
  var index = [Double](repeating: -1, count: rows)
  for (j, row) in keptRows.enumerated() {
    guard let i = sampleIndex[j] else { continue }
    img.replaceSubrange(row * d..<(row + 1) * d, with: image[j * d..<(j + 1) * d])
    txt.replaceSubrange(row * d..<(row + 1) * d, with: text[j * d..<(j + 1) * d])
    index[row] = Double(i)
  }
  let allImg = try group.allGather(try Tensor(img, shape: [rows, d]).moved(to: group.device)).toArray(Float.self)
  let allTxt = try group.allGather(try Tensor(txt, shape: [rows, d]).moved(to: group.device)).toArray(Float.self)
  let allIndex = try group.allGather(try Tensor(index).moved(to: group.device)).toArray(Double.self)
  let order = allIndex.indices.filter { allIndex[$0] >= 0 }.sorted { allIndex[$0] < allIndex[$1] }
  let rowsOf = { (a: [Float]) in order.flatMap { a[$0 * d..<($0 + 1) * d] } }
  return (rowsOf(allImg), rowsOf(allTxt), order.count, d)
}
