import Foundation
import Models
import Spec
import Torch

/// TAO's per-tower PEFT (`peft.*`, tao-pytorch's lora.py): each tower `frozen`, `full` or `lora`;
/// LoRA wraps the `target_modules` Linear leaves of the last `num_last_blocks` blocks in place
/// (Linear.enableLoRA); logit scale/bias train with `train_logit_calibration`. Every refusal TAO
/// makes is made here, with its wording, before anything changes.
public struct PEFTStats {
  public var modes: [Tower: String]
  public var trainable: [Tower: Int]
  public var total = 0, trainableTotal = 0, loraParameters = 0
  public var injected: [String] = []
}

/// `legacy` (or no mode) follows the old `enabled` flag; a mode that contradicts it is an error.
func resolvePEFTMode(_ t: LoRATargetConfig, tower: String) throws -> String {
  if t.mode == "legacy" || t.mode == "???" { return t.enabled == true ? "lora" : "frozen" }
  guard ["frozen", "full", "lora"].contains(t.mode) else {
    throw ActionError.input("Invalid \(tower) PEFT mode '\(t.mode)'. Expected one of ['frozen', 'full', 'legacy', 'lora'].")
  }
  if let enabled = t.enabled {
    let legacy = enabled ? "lora" : "frozen"
    if t.mode != legacy {
      throw ActionError.input("PEFT \(tower).mode='\(t.mode)' conflicts with legacy \(tower).enabled=\(enabled ? "True" : "False"). "
        + "Remove enabled or use mode='\(legacy)'.")
    }
  }
  return t.mode
}

/// Applies `peft` to the encoder (nothing when peft.enabled is false). `quiet` for actions that
/// only rebuild the architecture of a LoRA checkpoint.
@discardableResult
public func injectPEFT(_ encoder: CLIPEncoder, _ peft: PEFTConfig, quiet: Bool = false) throws -> PEFTStats? {
  guard peft.enabled else { return nil }
  guard peft.method == "lora" else { throw ActionError.input("peft.method '\(peft.method)': only lora is available (as in TAO)") }
  let towers: [(Tower, String, LoRATargetConfig)] = [(.vision, "vision", peft.vision), (.text, "text", peft.text)]
  var modes: [Tower: String] = [:]
  for (t, name, cfg) in towers { modes[t] = try resolvePEFTMode(cfg, tower: name) }
  // Preflight: block ranges and attention types, before any parameter changes.
  for (t, name, cfg) in towers where modes[t] == "lora" {
    let blocks = encoder.encoderBlocks(t)
    guard (0...blocks.count).contains(cfg.numLastBlocks) else {
      throw ActionError.input("PEFT \(name).num_last_blocks must be between 0 (all blocks) and \(blocks.count), got \(cfg.numLastBlocks).")
    }
    let target = cfg.numLastBlocks == 0 ? blocks : Array(blocks.suffix(cfg.numLastBlocks))
    if target.contains(where: { usesPackedAttention($0) }) {
      throw ActionError.input("PEFT \(name) mode='lora' is not supported for nn.MultiheadAttention-based towers (OpenCLIP). Use mode='full' or mode='frozen'.")
    }
  }
  let named = encoder.module.namedParameters()
  for (_, p) in named { try p.requiresGrad(false) }
  var stats = PEFTStats(modes: modes, trainable: [:])
  for (t, name, cfg) in towers {
    switch modes[t] {
    case "full":
      for (k, p) in encoder.module.namedParameters() where encoder.tower(of: k) == t { try p.requiresGrad(true) }
    case "lora":
      let blocks = encoder.encoderBlocks(t)
      let target = cfg.numLastBlocks == 0 ? blocks : Array(blocks.suffix(cfg.numLastBlocks))
      var leaves = Set<String>()
      for (offset, block) in target.enumerated() {
        for (path, m) in linearLeaves(block) {
          let leaf = path.split(separator: ".").last.map(String.init) ?? path
          leaves.insert(leaf)
          guard cfg.targetModules.contains(leaf) else { continue }
          try m.enableLoRA(rank: cfg.rank, alpha: Double(cfg.alpha), dropout: cfg.dropout)
          stats.injected.append("\(name) block[\(blocks.count - target.count + offset)].\(path)")
          stats.loraParameters += (m.loraA?.count ?? 0) + (m.loraB?.count ?? 0)
        }
      }
      let count = encoder.module.namedParameters().filter { encoder.tower(of: $0.0) == t && $0.1.requiresGrad }.reduce(0) { $0 + $1.1.count }
      if count == 0 {
        func py(_ l: [String]) -> String { "[" + l.map { "'\($0)'" }.joined(separator: ", ") + "]" }
        throw ActionError.input("PEFT \(name) mode='lora' injected zero modules (no LoRA adapters): target_modules \(py(cfg.targetModules)) matched no "
          + "nn.Linear modules. Available leaves: \(py(leaves.sorted())). Check target_modules and num_last_blocks for this backbone.")
      }
    default: break
    }
    stats.trainable[t] = encoder.module.namedParameters().filter { encoder.tower(of: $0.0) == t && $0.1.requiresGrad }.reduce(0) { $0 + $1.1.count }
  }
  // The adapter's own calibration (a wrapped model's unused logit parameters stay frozen).
  let calibration = Set(["logit_scale", "logit_bias"])
  if peft.trainLogitCalibration {
    for (k, p) in encoder.module.namedParameters() where calibration.contains(k) { try p.requiresGrad(true) }
  }
  let all = encoder.module.namedParameters()
  stats.total = all.reduce(0) { $0 + $1.1.count }
  stats.trainableTotal = all.filter { $0.1.requiresGrad }.reduce(0) { $0 + $1.1.count }
  guard stats.trainableTotal > 0 else {
    throw ActionError.input("PEFT is enabled but no tower parameters are trainable and train_logit_calibration is disabled. "
      + "Select a full or lora tower, or enable calibration.")
  }
  if !quiet {
    let logit = all.filter { calibration.contains($0.0) && $0.1.requiresGrad }.reduce(0) { $0 + $1.1.count }
    let share = String(format: "%.2f", 100 * Double(stats.trainableTotal) / Double(max(stats.total, 1)))
    print("PEFT modes requested: vision=\(modes[.vision]!), text=\(modes[.text]!); trainable parameters: vision=\(stats.trainable[.vision] ?? 0), "
      + "text=\(stats.trainable[.text] ?? 0), logit=\(logit). \(stats.injected.count) LoRA modules adapted, \(stats.trainableTotal) / \(stats.total) trainable (\(share)%).")
  }
  return stats
}

/// The Linear leaves under `m`, depth first in declaration order, with paths relative to it.
func linearLeaves(_ m: Module, prefix: String = "") -> [(String, Linear)] {
  var out: [(String, Linear)] = []
  for (key, child) in m.namedChildren() {
    let path = prefix.isEmpty ? key : prefix + "." + key
    if let l = child as? Linear { out.append((path, l)) } else { out += linearLeaves(child, prefix: path) }
  }
  return out
}

/// Whether a block holds torch.nn.MultiheadAttention's packed projection (open_clip's blocks).
func usesPackedAttention(_ m: Module) -> Bool {
  m.namedSlots().contains { $0.0.hasSuffix("in_proj_weight") }
}

/// F.cosine_similarity along the last axis: x·y / (max(‖x‖, eps)·max(‖y‖, eps)), eps 1e-8.
func cosineSimilarity(_ a: Tensor, _ b: Tensor) throws -> Tensor {
  try (a * b).sum(dims: [-1]) / (try a.norm(dims: [-1]).clamp(min: 1e-8) * b.norm(dims: [-1]).clamp(min: 1e-8))
}

/// TAO's preservation loss (`regularization`): the student's normalised embeddings against a
/// frozen teacher's — embedding MSE (mean of the two towers'), 1 − cosine (mean of the two), and
/// the MSE between the image×text similarity matrices — weighted and added to the contrastive loss.
struct DriftTerms {
  var contrastive, embeddingMSE, cosine, similarity, total: Tensor

  init(image: Tensor, text: Tensor, teacherImage ti: Tensor, teacherText tt: Tensor, contrastive: Tensor, weights w: RegularizationConfig) throws {
    func mse(_ a: Tensor, _ b: Tensor) throws -> Tensor { try ((a - b) * (a - b)).mean() }
    self.contrastive = contrastive
    embeddingMSE = try (try mse(image, ti) + mse(text, tt)) / 2
    cosine = try ((try cosineSimilarity(image, ti).mean().neg() + 1) + (try cosineSimilarity(text, tt).mean().neg() + 1)) / 2
    similarity = try mse(image.matmul(text.transpose(0, 1)), ti.matmul(tt.transpose(0, 1)))
    total = try contrastive + embeddingMSE * w.embeddingMseWeight + cosine * w.cosineWeight + similarity * w.similarityWeight
  }

  /// TAO's TensorBoard tags for the terms (train_loss is the total).
  func scalars() throws -> [(String, Double)] {
    [("train/contrastive_loss", try contrastive.item()), ("train/emb_mse_loss", try embeddingMSE.item()),
     ("train/cosine_loss", try cosine.item()), ("train/sim_loss", try similarity.item())]
  }
}

/// `export.adapter_dir`: the LoRA adapters alone in Hugging Face peft's format — `adapter_config.json`
/// and `adapter_model.safetensors` with peft's keys (`base_model.model.<module>.lora_A.weight`,
/// `…lora_B.weight`; A is rank×in, B out×rank as in TAO) — so that
/// `peft.PeftModel.from_pretrained(transformers_model, dir)` rebuilds the tuned model. target_modules
/// is a regex of exactly the adapted modules; a second tower with other rank/alpha goes into
/// rank_pattern/alpha_pattern. The trained logit calibration is not a transformers module: it is in
/// the export's `_config.yaml`.
func writePeftAdapter(_ bundle: CLIPBundle, _ peft: PEFTConfig, to dir: String) throws {
  let enc = bundle.encoder
  let adapted = linearLeaves(enc.module).filter { $0.1.hasLoRA }
  guard !adapted.isEmpty else { throw ActionError.input("export.adapter_dir: the model has no LoRA adapters (set peft.enabled and a tower's mode: lora)") }
  var tensors: [(String, Tensor)] = []
  var paths: [(Tower, String)] = []
  for (key, m) in adapted {
    guard let path = enc.transformersPath(key) else {
      throw ActionError.input("export.adapter_dir: peft's format addresses a transformers model; \(bundle.family) is not one (the merged ONNX export still applies)")
    }
    tensors.append(("base_model.model.\(path).lora_A.weight", try m.loraA!.detach().contiguous()))
    tensors.append(("base_model.model.\(path).lora_B.weight", try m.loraB!.detach().contiguous()))
    paths.append((enc.tower(of: key + ".lora_A"), path))
  }
  func escaped(_ p: String) -> String { p.replacingOccurrences(of: ".", with: "\\.") }
  let towers: [Tower: LoRATargetConfig] = [.vision: peft.vision, .text: peft.text]
  let primary = paths[0].0
  let main = towers[primary]!
  var rankPattern: [String: Int] = [:], alphaPattern: [String: Int] = [:]
  for (t, p) in paths where t != primary {
    let c = towers[t]!
    if c.rank != main.rank { rankPattern["^" + escaped(p) + "$"] = c.rank }
    if c.alpha != main.alpha { alphaPattern["^" + escaped(p) + "$"] = c.alpha }
  }
  let config: [String: Any] = [
    "peft_type": "LORA", "task_type": NSNull(), "base_model_name_or_path": bundle.source, "revision": NSNull(),
    "r": main.rank, "lora_alpha": main.alpha, "lora_dropout": main.dropout, "bias": "none", "fan_in_fan_out": false,
    "init_lora_weights": true, "inference_mode": true, "modules_to_save": NSNull(), "layers_to_transform": NSNull(),
    "layers_pattern": NSNull(), "use_rslora": false, "use_dora": false, "rank_pattern": rankPattern, "alpha_pattern": alphaPattern,
    "target_modules": "^(?:" + paths.map { escaped($0.1) }.joined(separator: "|") + ")$",
  ]
  try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  try Safetensors.write(tensors, metadata: ["format": "pt"], to: dir + "/adapter_model.safetensors")
  try AtomicFile.write(dir + "/adapter_config.json", data: try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]))
  print("Wrote the \(adapted.count) LoRA adapters in peft's format to \(dir)/")
}
