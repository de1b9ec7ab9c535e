import Foundation
import Models
import Torch
import Training

// Training checkpoints in Lightning's layout (tao-spec-reference §3.9): written by Swift in
// PyTorch's zip + pickle format, atomically, and read back for an exact resume.

/// Writes `state_dict` (TAO keys), `optimizer_states` (torch AdamW's state and param groups),
/// `epoch`, `global_step` and, for fp16, the loss scaler's state.
func saveCheckpoint(_ path: String, encoder: CLIPEncoder, optimizer: AdamW, scaler: GradScaler?, epoch: Int, globalStep: Int, worldSize: Int = 1,
                    seed: UInt64) throws {
  let sd = encoder.checkpointStateDict().map { (PickleOut.string("model." + $0.0), PickleOut.tensor($0.1)) }
  var names: [String] = []
  var groups: [PickleOut] = []
  for g in optimizer.groups {
    let ids = g.params.map { p -> PickleOut in names.append(p.0); return .int(names.count - 1) }
    groups.append(.dict([(.string("name"), .string(g.name)), (.string("lr"), .float(g.lr)), (.string("initial_lr"), .float(g.baseLR)),
                         (.string("weight_decay"), .float(g.weightDecay)),
                         (.string("betas"), .tuple([.float(optimizer.betas.0), .float(optimizer.betas.1)])),
                         (.string("eps"), .float(optimizer.eps)), (.string("params"), .list(ids))], ordered: false))
  }
  var state: [(PickleOut, PickleOut)] = []
  for (i, n) in names.enumerated() {
    if let s = optimizer.state[n] {
      state.append((.int(i), .dict([(.string("step"), .tensor(try Tensor.scalar(Float(s.step)))), (.string("exp_avg"), .tensor(s.m)),
                                    (.string("exp_avg_sq"), .tensor(s.v))], ordered: false)))
    }
  }
  let root = PickleOut.dict([
    (.string("epoch"), .int(epoch)), (.string("global_step"), .int(globalStep)),
    // The Lightning release whose checkpoint layout this is (TAO 7.0.1 pins 2.6.1): TAO's loader
    // migrates checkpoints by this version. The writer is named separately.
    (.string("pytorch-lightning_version"), .string("2.6.1")),
    (.string("written_by"), .string("ClipKit \(ClipKitVersion.string)")),
    (.string("state_dict"), .dict(sd, ordered: true)),
    (.string("optimizer_states"), .list([.dict([(.string("state"), .dict(state, ordered: false)),
                                                  (.string("param_groups"), .list(groups))], ordered: false)])),
    (.string("lr_schedulers"), .list([])),
    (.string("clipkit_param_names"), .list(names.map { .string($0) })),
    // Data-parallel ranks that trained it: steps per epoch depend on it.
    (.string("clipkit_world_size"), .int(worldSize)),
    // The base of the per-step seeds (train.seed, or the one drawn for an unseeded run).
    (.string("clipkit_seed"), .int(Int(bitPattern: UInt(seed)))),
  ] + (scaler.map { sc in
    // Lightning's key for the AMP scaler (GradScaler.state_dict()).
    [(PickleOut.string("native_amp_scaling_state"), PickleOut.dict([
      (.string("scale"), .float(sc.scale)), (.string("growth_factor"), .float(sc.growthFactor)),
      (.string("backoff_factor"), .float(sc.backoffFactor)), (.string("growth_interval"), .int(sc.growthInterval)),
      (.string("_growth_tracker"), .int(sc.growthTracker)),
    ], ordered: true))]
  } ?? []),
  ordered: false)
  try PyTorchCheckpointWriter.write(root, to: path)
}

/// Points clip_latest.pth at a checkpoint, replacing the link atomically.
func linkLatest(_ dir: String, to name: String) throws {
  let tmp = dir + "/.clip_latest.pth.tmp-\(getpid())"
  unlink(tmp)
  guard symlink(name, tmp) == 0, rename(tmp, dir + "/clip_latest.pth") == 0 else {
    throw ActionError.input("cannot update \(dir)/clip_latest.pth: \(String(cString: strerror(errno)))")
  }
}

/// Restores weights, optimiser moments and the step counter; returns the global step reached, the
/// number of ranks that trained it (1 for checkpoints that do not say) and the run's seed base.
func resumeFrom(_ path: String, encoder: CLIPEncoder, optimizer: AdamW, scaler: GradScaler?) throws -> (step: Int, worldSize: Int, seed: UInt64?) {
  let ckpt = try PyTorchCheckpoint.read(path)
  var tensors = try ckpt.tensors
  tensors = Dictionary(uniqueKeysWithValues: tensors.map { ($0.key.hasPrefix("model.") ? String($0.key.dropFirst(6)) : $0.key, $0.value) })
  try encoder.module.load(stateDict: try encoder.adapterKeys(tensors), source: path)
  guard case .dict(let top) = ckpt.root, top["epoch"]?.intValue != nil, let step = top["global_step"]?.intValue else {
    throw ActionError.input("\(path) has no epoch/global_step: not a training checkpoint")
  }
  guard step >= 0 else { throw ActionError.input("\(path): global_step \(step) is negative") }
  if case .list(let names)? = top["clipkit_param_names"], case .list(let opts)? = top["optimizer_states"],
     case .dict(let opt) = opts.items.first, case .dict(let state)? = opt["state"] {
    for (k, v) in state.items {
      guard case .int(let i) = k, names.items.indices.contains(i), case .string(let name) = names.items[i], case .dict(let s) = v,
            case .tensor(let st)? = s["step"], case .tensor(let m)? = s["exp_avg"], case .tensor(let vv)? = s["exp_avg_sq"] else { continue }
      // A float in the file: converted only when it is a whole, non-negative count.
      let n = try st.item()
      guard n >= 0, let count = Int(exactly: n) else {
        throw ActionError.input("\(path): optimizer step \(n) of \(name) is not a step count")
      }
      try optimizer.restore(name, step: count, m: try m.clone(), v: try vv.clone())
    }
  }
  if let scaler, case .dict(let st)? = top["native_amp_scaling_state"], let scale = st["scale"]?.doubleValue {
    scaler.restore(scale: scale, growthTracker: st["_growth_tracker"]?.intValue ?? 0)
  }
  let world = top["clipkit_world_size"]?.intValue ?? 1
  guard world >= 1 else { throw ActionError.input("\(path): clipkit_world_size \(world) is not a number of ranks") }
  return (step, world, top["clipkit_seed"]?.intValue.map { UInt64(bitPattern: Int64($0)) })
}

/// The seed of step `step`'s random draws: a resumed run, or one whose previous steps drew more or
/// less, draws exactly what the uninterrupted run did. (torch's CPU generator keeps the low 32 bits.)
func stepSeed(_ base: UInt64, step: Int) -> UInt64 { base &* 1_000_003 &+ UInt64(step) }
