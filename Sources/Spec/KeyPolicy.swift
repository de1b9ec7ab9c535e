import Foundation

/// What ClipKit does with one key of TAO's CLIP schema. Every schema key has exactly one entry
/// in `KeyPolicy.table` (a test walks the schema), so no key is ever accepted and silently ignored.
public enum KeySupport: Sendable, Equatable {
  /// Does what TAO does (the note names any limit, which the code refuses by name).
  case honoured
  /// Not supported yet: the default is accepted (it asks for nothing), any other value is refused.
  case refused
  /// Accepted and has no effect here, for the reason in the note (TAO itself ignores it, or what
  /// it controls does not exist in this build).
  case noOp
}

public struct KeyPolicy: Sendable {
  public let path: String  // dotted, `[]` for the elements of a list of sections
  public let support: KeySupport
  public let note: String
  /// Actions whose run reads the key (refusals apply only there); nil = every action.
  public let actions: Set<String>?

  /// The policy of every schema key (the README's table is generated from the same text).
  public static let table: [KeyPolicy] = build()

  public static func policy(_ path: String) -> KeyPolicy? { byPath[path] }
  static let byPath = Dictionary(uniqueKeysWithValues: table.map { ($0.path, $0) })

  // Action groups: which runs read which section.
  static let modelActions: Set<String> = ["train", "evaluate", "inference", "export"]
  static let trainOnly: Set<String> = ["train"]
  static let evaluateRuns: Set<String> = ["evaluate", "deploy evaluate"]

  private static func build() -> [KeyPolicy] {
    var t: [KeyPolicy] = []
    func add(_ path: String, _ s: KeySupport, _ note: String = "", _ actions: Set<String>? = nil) {
      t.append(KeyPolicy(path: path, support: s, note: note, actions: actions))
    }
    let placement = "the GPU the action runs on (with no GPU present it runs on CPU and says so; CLIPKIT_DEVICE overrides)"
    add("model_name", .refused, "the task name: only `clip`")
    add("encryption_key", .noOp, "TAO's CLIP writes checkpoints unencrypted; encrypted `.etlt` export is refused by export.onnx_file")
    add("results_dir", .honoured)
    for k in ["enable", "project", "entity", "group", "tags", "reinit", "sync_tensorboard", "save_code", "name", "run_id"] {
      add("wandb.\(k)", .noOp, "Weights & Biases needs a network and an account; ClipKit logs to TensorBoard event files and status.json")
    }

    add("model.type", .honoured, "SigLIP 2, OpenCLIP/NV-CLIP and C-RADIOv3 (b/l/h/g) types")
    add("model.adaptor_name", .honoured, "RADIO-CLIP's text adaptor: siglip (default; siglip2-g for -h, siglip2 otherwise), clip/dfn_clip/dfn; other families ignore it as TAO does, and ClipKit says so")
    for k in ["freeze_vision_encoder", "freeze_text_encoder", "init_logit_scale", "init_logit_bias", "canonicalize_text"] {
      add("model.\(k)", .honoured)
    }
    add("model.image_size", .honoured, "RADIO/OpenCLIP transform size; SigLIP 2 uses its processor's size, as TAO")
    add("model.pretrained_dir", .honoured, "ClipKit extension: local weights (no network)")
    add("model.random_init", .honoured, "ClipKit extension")

    add("dataset.seed", .honoured, "data order and augmentation draws (TAO seeds its loaders with it); train.seed seeds the model")
    add("dataset.pin_memory", .honoured, "batches go to a GPU through page-locked memory and non-blocking copies (false: plain copies)")
    for (split, actions) in [("train", trainOnly), ("val", trainOnly.union(evaluateRuns))] {
      for k in ["image_dir", "image_list_file", "caption_dir", "caption_file_suffix"] {
        add("dataset.\(split).datasets[].\(k)", .honoured)
      }
      add("dataset.\(split).datasets[].train_pairs_file", .refused, "PAS query-type metadata (balanced sampling) is not supported yet", actions)
      add("dataset.\(split).datasets[].attribute_pairs_file", .refused, "PAS attribute metadata is not supported yet", actions)
      add("dataset.\(split).batch_size", .honoured)
      add("dataset.\(split).num_workers", .honoured, "decoding threads")
    }
    add("dataset.train.type", .honoured)
    add("dataset.train.wds.root_dir", .honoured)
    add("dataset.train.wds.shard_list_file", .honoured, "local paths, s3:// (SigV4, endpoint/region from the URL or the AWS environment), http(s):// and pipe: lines, brace ranges in paths; credentials never logged")
    add("dataset.train.wds.samples_per_shard", .honoured, "an estimate, as in TAO: ClipKit counts the samples and notes a large difference")
    add("dataset.train.balance_query_types", .refused, "balanced query-type sampling (needs train_pairs_file) is not supported yet", trainOnly)
    add("dataset.train.unique_caption_per_batch", .noOp, "TAO applies it only to balance_query_types batches (refused); plain batches are drawn as TAO's RandomSampler does")
    add("dataset.train.include_attribute_metadata", .refused, "PAS attribute metadata is not supported yet", trainOnly)
    add("dataset.val.metadata_match_eval", .refused, "metadata-matched validation is not supported yet", trainOnly.union(evaluateRuns))
    add("dataset.val.metadata_match_mode", .refused, "metadata-matched validation is not supported yet", trainOnly.union(evaluateRuns))
    for k in ["scale", "color_jitter", "grayscale"] {
      add("dataset.augmentation.\(k)", .honoured, "RADIO/OpenCLIP; SigLIP 2 trains on its processor's preprocessing, as in TAO (a note says so)")
    }

    add("train.num_gpus", .honoured, "ranks per node: on a machine with that many GPUs the node starts them itself (NCCL, as Lightning); under torchrun's variables each process is one rank (Gloo on CPU); CPU ranks only through an explicit launch")
    add("train.gpu_ids", .honoured, "one id: \(placement)")
    add("train.num_nodes", .honoured, "with NODE_RANK, MASTER_ADDR, MASTER_PORT on each node (as Lightning; each node starts its num_gpus ranks), or torchrun's variables")
    add("train.seed", .honoured, "model initialisation and torch's global generator (reseeded per step from seed and step); < 0 leaves them unseeded")
    add("train.cudnn.benchmark", .honoured, "set in libtorch's global context (affects cuDNN only)")
    add("train.cudnn.deterministic", .honoured, "torch.use_deterministic_algorithms(warn_only) and CUBLAS_WORKSPACE_CONFIG, as TAO")
    for k in ["num_epochs", "checkpoint_interval", "checkpoint_interval_unit", "validation_interval", "val_check_interval",
              "resume_training_checkpoint_path", "pretrained_model_path", "results_dir", "loss_type", "precision",
              "grad_clip_norm", "grad_checkpointing"] {
      add("train.\(k)", .honoured)
    }
    add("train.optim.optimizer_type", .honoured, "adamw; lamb (apex FusedLAMB) is refused")
    for k in ["vision_lr", "text_lr", "weight_decay", "betas", "eps", "warmup_steps", "scheduler"] { add("train.optim.\(k)", .honoured) }
    add("train.siglip_loss_dist_impl", .honoured, "open_clip's exchanges across ranks: gather, reduce, shift, bidir (all the single process's loss on the whole batch) or local (each rank's pairs only); one process: no exchange")
    add("train.siglip_loss_mask_mode", .refused, "attribute-masked SigLIP loss (needs PAS metadata) is not supported yet", trainOnly)
    add("train.triplet_loss_weight", .refused, "the triplet loss is not supported yet", trainOnly)
    add("train.triplet_margin", .refused, "the triplet loss is not supported yet", trainOnly)
    add("train.distributed_strategy", .refused, "ddp only: FSDP is not supported yet", trainOnly)

    for section in ["evaluate", "inference"] {
      add("\(section).checkpoint", .honoured)
      add("\(section).trt_engine", .honoured, "deploy: .onnx or .engine")
      add("\(section).batch_size", .honoured)
      add("\(section).num_workers", .honoured, "decoding threads")
      add("\(section).results_dir", .honoured)
      add("\(section).num_gpus", .honoured, "0 (CPU) or 1; more is refused until multi-GPU \(section) lands")
      add("\(section).gpu_ids", .honoured, "one id: \(placement); deploy: the TensorRT device")
      add("\(section).datasets[].image_dir", .honoured)
    }
    for k in ["train_pairs_file", "attribute_pairs_file"] {
      add("evaluate.datasets[].\(k)", .refused, "PAS metadata is not supported yet", evaluateRuns)
      add("inference.datasets[].\(k)", .noOp, "inference walks each image_dir recursively, as TAO; pair metadata is not read")
    }
    for k in ["image_list_file", "caption_dir", "caption_file_suffix"] {
      add("evaluate.datasets[].\(k)", .honoured)
      add("inference.datasets[].\(k)", .noOp, "inference walks each image_dir recursively, as TAO; lists and captions are evaluate's")
    }
    add("evaluate.text_file", .refused, "evaluate scores the captions of its image-caption pairs; text_file is inference's", evaluateRuns)
    add("evaluate.pas_ground_truth_mode", .refused, "PAS ground-truth modes are not supported yet", evaluateRuns)
    add("inference.text_file", .honoured)

    for k in ["checkpoint", "onnx_file", "encoder_type", "opset_version", "batch_size", "input_height", "input_width", "results_dir"] {
      add("export.\(k)", .honoured)
    }
    add("export.input_channel", .honoured, "3; anything else is refused")
    add("export.verbose", .honoured, "lists the graph's nodes")
    add("export.gpu_id", .honoured, "\(placement); the graph is written from the weights, so the ONNX is the same on any device")
    add("export.adapter_dir", .honoured, "ClipKit extension: the LoRA adapters alone in peft's format (adapter_config.json + adapter_model.safetensors), for transformers + peft")
    add("export.on_cpu", .honoured, "loads the model on CPU; the ONNX is the same on any device")

    for k in ["results_dir", "gpu_id", "onnx_file", "trt_engine", "timing_cache", "batch_size", "verbose"] {
      add("gen_trt_engine.\(k)", .honoured)
    }
    for k in ["workspace_size", "min_batch_size", "opt_batch_size", "max_batch_size", "layers_precision", "data_type"] {
      add("gen_trt_engine.tensorrt.\(k)", .honoured)
    }

    let peft = "TAO's per-tower LoRA: train injects it; evaluate/inference/export rebuild the adapters of a LoRA checkpoint (export merges them)"
    for k in ["enabled", "method", "train_logit_calibration"] { add("peft.\(k)", .honoured, peft) }
    for tower in ["vision", "text"] {
      for k in ["mode", "enabled", "target_modules", "num_last_blocks", "rank", "alpha", "dropout"] {
        add("peft.\(tower).\(k)", .honoured, peft)
      }
    }
    for k in ["enabled", "embedding_mse_weight", "cosine_weight", "similarity_weight"] {
      add("regularization.\(k)", .honoured, "drift from a frozen copy of the starting model (train); validation reports it")
    }
    let serve: [(String, String)] = [
      ("host", "address `clipkit serve` listens on"), ("port", "its port (0: any free port, printed)"),
      ("checkpoint", "the checkpoint served (null: the pretrained weights)"),
      ("trt_engine", "an exported .onnx/.engine served instead (found as deploy finds them)"),
      ("max_batch", "dynamic batching: most items per model batch"), ("max_wait_ms", "dynamic batching: how long a batch waits for more"),
      ("max_queue", "items waiting beyond this get 503"), ("max_body_bytes", "larger request bodies get 413"),
      ("max_image_pixels", "larger images get 422 (decompression bombs)"), ("api_key", "bearer token for /v1/* except health"),
      ("index", "an inference output folder searched from the page at /"),
    ]
    for (k, note) in serve { add("serve.\(k)", .honoured, "ClipKit extension: \(note)") }
    return t
  }
}

extension SpecError {
  static func refusedKey(_ path: String, value: SpecValue, note: String) -> SpecError {
    .unsupported(path: path, value: value.description, reason: note)
  }
}

extension Spec {
  /// Refuses, by name, every key the action reads whose value asks for something ClipKit does
  /// not do yet (a non-default value of a `.refused` key).
  public func refuseUnsupported(action: String, schema: SpecSection = CLIPSchema.root) throws {
    func same(_ a: SpecValue, _ b: SpecValue) -> Bool {
      switch (a, b) {
      case (.int(let x), .float(let y)), (.float(let y), .int(let x)): return Double(x) == y
      case (.list(let x), .list(let y)): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
      case (.missing, _), (_, .missing): return true
      case (.bool(false), .null), (.null, .bool(false)): return true  // `enabled: false` asks as little as null
      default: return a == b
      }
    }
    func walk(_ m: SpecMap, _ section: SpecSection, _ path: String, _ shown: String) throws {
      for f in section.fields {
        let p = path.isEmpty ? f.name : "\(path).\(f.name)"
        let where_ = shown.isEmpty ? f.name : "\(shown).\(f.name)"
        let v = m.entries.first { $0.0 == f.name }?.1 ?? f.defaultValue
        switch (f.type, v) {
        case (.section(let s), .map(let mm)): try walk(mm, s, p, where_)
        case (.sections(let s), .list(let items)):
          for (i, item) in items.enumerated() { if case .map(let mm) = item { try walk(mm, s, p + "[]", "\(where_).\(i)") } }
        default:
          guard let pol = KeyPolicy.policy(p), pol.support == .refused, pol.actions?.contains(action) ?? true else { continue }
          if !same(v, f.defaultValue) { throw SpecError.refusedKey(where_, value: v, note: pol.note) }
        }
      }
    }
    try walk(tree, schema, "", "")
  }
}

extension KeyPolicy {
  /// Every schema key with what ClipKit does with it, as the README's Markdown table (the README
  /// holds exactly this text; `clipkit spec-keys` prints it).
  public static func markdownTable() -> String {
    var lines = ["| key | ClipKit | note |", "|---|---|---|"]
    for p in table {
      let s: String
      switch p.support {
      case .honoured: s = "honoured"
      case .refused: s = "refused unless default"
      case .noOp: s = "no-op"
      }
      lines.append("| `\(p.path)` | \(s) | \(p.note) |")
    }
    return lines.joined(separator: "\n") + "\n"
  }

  /// The dotted paths of every leaf key of a schema (`[]` for elements of a list of sections).
  public static func leafPaths(_ s: SpecSection = CLIPSchema.root, prefix: String = "") -> [String] {
    s.fields.flatMap { f -> [String] in
      let p = prefix.isEmpty ? f.name : "\(prefix).\(f.name)"
      switch f.type {
      case .section(let sub): return leafPaths(sub, prefix: p)
      case .sections(let sub): return leafPaths(sub, prefix: p + "[]")
      default: return [p]
      }
    }
  }
}
