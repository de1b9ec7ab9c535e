import Foundation
import Models
import Spec
import Torch

enum ActionError: Error, LocalizedError {
  case notImplemented(action: String, detail: String)
  case noResultsDir(action: String)
  case input(String)

  var errorDescription: String? {
    switch self {
    case .notImplemented(let a, let d): return "clipkit \(a) is not available in this build yet: \(d)"
    case .noResultsDir(let a): return "no output directory: set results_dir (or \(a).results_dir) in the spec or as an override"
    case .input(let m): return m
    }
  }
}

/// What an action body gets: the resolved spec, its typed config, where to write and the
/// caller's hooks.
struct ActionContext {
  let name: String
  let spec: Spec
  let config: CLIPExperimentConfig
  let resultsDir: String
  let status: StatusLog
  let hooks: JobHooks
  /// Where the model runs (TAO's device keys; see `placement`).
  var device: Device = .cpu
  /// The data-parallel group of a distributed training launch (nil: one process).
  var group: ProcessGroup? = nil
}

/// The common frame of every action: load and validate the spec, check the mandatory values the
/// action needs, create the results directory, write experiment.yaml and status.json, run, and
/// record SUCCESS or FAILURE.
func runAction(_ name: String, section: String, specFile: String, overrides: [String], hooks: JobHooks, requires: [String],
               _ body: (ActionContext) throws -> Void) throws {
  let spec = try Spec.load(file: specFile, overrides: overrides)
  try spec.requireSet(requires)
  try spec.refuseUnsupported(action: name)
  let config = try spec.config()
  let launchEnv = hooks.launchEnvironment ?? ProcessInfo.processInfo.environment
  try checkPlacement(name, config, launchEnvironment: launchEnv)
  // train.num_gpus > 1 without torchrun: this process starts the node's ranks and waits for them
  // (they write the results); it does no tensor work itself.
  if name == "train", let envs = try localRanks(launchEnv, numGpus: config.train.numGpus, numNodes: config.train.numNodes,
                                                  gpuIds: config.train.gpuIds) {
    try runLocalRanks(envs)
    return
  }
  if let a = config.model.adaptorName, ModelRegistry.family(type: config.model.type, pretrainedDir: config.model.pretrainedDir)?.readsAdaptorName != true, !name.hasPrefix("deploy"), name != "gen_trt_engine" {
    print("note: model.adaptor_name=\(a) is read by RADIO-CLIP models only; \(config.model.type) does not use it (as in TAO)")
  }
  let dir = try resultsDir(for: section, action: name, spec: spec)
  do {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  } catch {
    throw FileIOError.write(path: dir, reason: "cannot create results directory")
  }
  // In a distributed launch rank 0 alone writes the spec and status and prints; the other ranks
  // print only warnings (prefixed with their rank).
  let launch = name == "train" ? try DistributedLaunch.from(launchEnv, numNodes: config.train.numNodes, numGpus: config.train.numGpus) : nil
  let rank = launch?.rank ?? 0
  if rank == 0 { try AtomicFile.write("\(dir)/experiment.yaml", data: Data(spec.yaml().utf8)) }
  let status = try StatusLog(path: rank == 0 ? "\(dir)/status.json" : nil)
  try status.write(.started, message: "Starting CLIP \(name).")
  let outer = Console.current
  let console = rank == 0 ? outer : Console(out: { _ in }, err: { s in if s.hasPrefix("warning") { outer.err("[rank \(rank)] " + s) } })
  try Console.$current.withValue(console) {
  do {
    var ctx = ActionContext(name: name, spec: spec, config: config, resultsDir: dir, status: status, hooks: hooks)
    // Before any tensor work: libtorch decides once whether CUDA exists.
    ctx.device = try placement(ctx, localRank: launch?.localRank)
    try Torch.resetGlobalSettings()
    Tensor.pinnedUploads = config.dataset.pinMemory
    if let launch { ctx.group = try joinProcessGroup(ctx, launch) }
    try body(ctx)
  } catch {
    try? status.write(.failure, message: oneLine(error))
    throw error
  }
  }
}

/// The device keys of the action that this build refuses: more than one GPU per job (multi-GPU
/// runs arrive with the distributed work). Deploy runs engines on `gpu_ids[0]` itself (the
/// TensorRT helper).
func checkPlacement(_ action: String, _ c: CLIPExperimentConfig, launchEnvironment env: [String: String] = [:]) throws {
  let (gpus, ids, section): (Int, [Int], String)
  switch action {
  case "evaluate", "deploy evaluate": (gpus, ids, section) = (c.evaluate.numGpus, c.evaluate.gpuIds, "evaluate")
  case "inference", "deploy inference": (gpus, ids, section) = (c.inference.numGpus, c.inference.gpuIds, "inference")
  case "train":
    // A distributed launch (torchrun's variables, or NODE_RANK with num_nodes) decides the ranks.
    let launched = (env["WORLD_SIZE"].flatMap { Int($0) } ?? 1) > 1
    if c.train.numGpus > 1 && !launched {
      // This node starts one rank per GPU itself, as Lightning does, where it has the GPUs; CPU
      // ranks only come from an explicit launch.
      let gpus = (try? CUDA.driverGPUs().get())?.count ?? 0
      guard gpus >= c.train.numGpus, env["CLIPKIT_DEVICE"] != "cpu" else {
        throw ActionError.input("train.num_gpus=\(c.train.numGpus) without a distributed launch, and this machine has \(gpus) GPU\(gpus == 1 ? "" : "s"): "
          + "run CPU ranks explicitly (torchrun --no-python --nproc-per-node=\(c.train.numGpus) clipkit train …; they use Gloo)")
      }
      return
    }
    if c.train.numNodes > 1 { return }
    if launched { return }  // each rank takes one device
    (gpus, ids, section) = (c.train.numGpus, c.train.gpuIds, "train")
  default: return  // export: gpu_id; gen_trt_engine: gpu_id
  }
  if gpus > 1 { throw ActionError.input("\(section).num_gpus=\(gpus): one GPU per process in this build (multi-GPU \(section) is not supported yet)") }
  if gpus < 0 { throw ActionError.input("\(section).num_gpus=\(gpus): must be 0 (CPU) or 1") }
  guard !action.hasPrefix("deploy") else { return }
  if ids.isEmpty && gpus > 0 { throw ActionError.input("\(section).gpu_ids is empty: name the GPU to use, for example [0]") }
  if ids.count > 1 { throw ActionError.input("\(section).gpu_ids=\(ids): one GPU per process in this build (multi-GPU \(section) is not supported yet)") }
}

/// `{section}.results_dir` verbatim when set, else `{results_dir}/{section}`.
func resultsDir(for section: String, action: String, spec: Spec) throws -> String {
  if case .string(let own)? = spec.value("\(section).results_dir"), !own.isEmpty { return own }
  if case .string(let root)? = spec.value("results_dir"), !root.isEmpty { return "\(root)/\(section)" }
  throw ActionError.noResultsDir(action: section)
}

/// TAO's status.json: one JSON object per line.
final class StatusLog {
  enum Status: String { case started = "STARTED", running = "RUNNING", success = "SUCCESS", failure = "FAILURE", skipped = "SKIPPED" }
  let path: String?
  private let handle: FileHandle?

  /// nil: a status that writes nothing (ranks other than 0).
  init(path: String?) throws {
    self.path = path
    guard let path else { handle = nil; return }
    if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
    guard let h = FileHandle(forWritingAtPath: path) else { throw FileIOError.write(path: path, reason: "cannot open for appending") }
    handle = h
    h.seekToEndOfFile()
  }
  deinit { try? handle?.close() }

  func write(_ status: Status, message: String, kpi: [String: Any]? = nil, extra: [String: Any] = [:]) throws {
    guard let handle else { return }
    let now = Date()
    var cal = Calendar(identifier: .gregorian)
    cal.timeZone = TimeZone.current
    let c = cal.dateComponents([.year, .month, .day, .hour, .minute, .second], from: now)
    var obj: [String: Any] = [
      "date": "\(c.month!)/\(c.day!)/\(c.year!)",
      "time": String(format: "%d:%02d:%02d", c.hour!, c.minute!, c.second!),
      "status": status.rawValue,
      "verbosity": "INFO",
      "message": message,
    ]
    if let kpi { obj["kpi"] = kpi }
    for (k, v) in extra { obj[k] = v }
    var line = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
    line.append(0x0A)
    try handle.write(contentsOf: line)
    try handle.synchronize()
  }
}
