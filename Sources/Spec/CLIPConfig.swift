import Foundation

// Typed view of a resolved CLIP spec. Field names follow TAO's keys (CodingKeys); defaults live
// in CLIPSchema, so these types have none of their own. Values TAO declares mandatory (???) are
// optionals here: actions check them with `Spec.requireSet` before use.

public struct CLIPExperimentConfig: Codable, Sendable {
  public var modelName: String
  public var encryptionKey: String?
  public var resultsDir: String
  public var wandb: WandBConfig
  public var model: ModelConfig
  public var dataset: DatasetConfig
  public var train: TrainConfig
  public var evaluate: EvaluateConfig
  public var inference: InferenceConfig
  public var export: ExportConfig
  public var genTrtEngine: GenTrtEngineConfig
  public var peft: PEFTConfig
  public var regularization: RegularizationConfig
  public var serve: ServeConfig

  enum CodingKeys: String, CodingKey {
    case modelName = "model_name", encryptionKey = "encryption_key", resultsDir = "results_dir", wandb, model,
      dataset, train, evaluate, inference, export, genTrtEngine = "gen_trt_engine", peft, regularization, serve
  }
}

/// `serve` (ClipKit extension): the embedding server of `clipkit serve`.
public struct ServeConfig: Codable, Sendable {
  public var host: String
  public var port: Int
  public var checkpoint: String?
  public var trtEngine: String?
  public var maxBatch: Int
  public var maxWaitMs: Int
  public var maxQueue: Int
  public var maxBodyBytes: Int
  public var maxImagePixels: Int
  public var apiKey: String?
  public var index: String?
  enum CodingKeys: String, CodingKey {
    case host, port, checkpoint, trtEngine = "trt_engine", maxBatch = "max_batch", maxWaitMs = "max_wait_ms",
      maxQueue = "max_queue", maxBodyBytes = "max_body_bytes", maxImagePixels = "max_image_pixels", apiKey = "api_key", index
  }
}

public struct WandBConfig: Codable, Sendable {
  public var enable: Bool
  public var project, entity, group, name: String
  public var tags: [String]
  public var reinit, syncTensorboard, saveCode: Bool
  public var runId: String
  enum CodingKeys: String, CodingKey {
    case enable, project, entity, group, name, tags, reinit, syncTensorboard = "sync_tensorboard",
      saveCode = "save_code", runId = "run_id"
  }
}

public struct ModelConfig: Codable, Sendable {
  public var type: String
  public var adaptorName: String?
  public var freezeVisionEncoder: Bool
  public var freezeTextEncoder: Bool
  public var imageSize: Int
  public var initLogitScale: Double?
  public var initLogitBias: Double?
  public var canonicalizeText: Bool
  /// ClipKit extension: a local HF model directory holding the pretrained weights.
  public var pretrainedDir: String?
  /// ClipKit extension: random weights with the architecture of pretrained_dir's config.json.
  public var randomInit: Bool
  enum CodingKeys: String, CodingKey {
    case type, adaptorName = "adaptor_name", freezeVisionEncoder = "freeze_vision_encoder",
      freezeTextEncoder = "freeze_text_encoder", imageSize = "image_size", initLogitScale = "init_logit_scale",
      initLogitBias = "init_logit_bias", canonicalizeText = "canonicalize_text", pretrainedDir = "pretrained_dir",
      randomInit = "random_init"
  }
}

public struct DataPathConfig: Codable, Sendable {
  public var imageDir: String?
  public var imageListFile: String?
  public var captionDir: String?
  public var captionFileSuffix: String
  public var trainPairsFile: String?
  public var attributePairsFile: String?
  enum CodingKeys: String, CodingKey {
    case imageDir = "image_dir", imageListFile = "image_list_file", captionDir = "caption_dir",
      captionFileSuffix = "caption_file_suffix", trainPairsFile = "train_pairs_file",
      attributePairsFile = "attribute_pairs_file"
  }
}

public struct WDSConfig: Codable, Sendable {
  public var rootDir: String?
  public var shardListFile: String?
  public var samplesPerShard: Int
  enum CodingKeys: String, CodingKey {
    case rootDir = "root_dir", shardListFile = "shard_list_file", samplesPerShard = "samples_per_shard"
  }
}

public struct TrainDataConfig: Codable, Sendable {
  public var datasets: [DataPathConfig]
  public var batchSize: Int
  public var numWorkers: Int
  public var type: String
  public var wds: WDSConfig?
  public var balanceQueryTypes: Bool
  public var uniqueCaptionPerBatch: Bool
  public var includeAttributeMetadata: Bool
  enum CodingKeys: String, CodingKey {
    case datasets, batchSize = "batch_size", numWorkers = "num_workers", type, wds,
      balanceQueryTypes = "balance_query_types", uniqueCaptionPerBatch = "unique_caption_per_batch",
      includeAttributeMetadata = "include_attribute_metadata"
  }
}

public struct ValDataConfig: Codable, Sendable {
  public var datasets: [DataPathConfig]
  public var batchSize: Int
  public var numWorkers: Int
  public var metadataMatchEval: Bool
  public var metadataMatchMode: String
  enum CodingKeys: String, CodingKey {
    case datasets, batchSize = "batch_size", numWorkers = "num_workers", metadataMatchEval = "metadata_match_eval",
      metadataMatchMode = "metadata_match_mode"
  }
}

public struct AugmentationConfig: Codable, Sendable {
  public var scale: [Double]
  public var colorJitter: [Double]
  public var grayscale: Double
  enum CodingKeys: String, CodingKey { case scale, colorJitter = "color_jitter", grayscale }
}

public struct DatasetConfig: Codable, Sendable {
  public var train: TrainDataConfig
  public var val: ValDataConfig
  public var augmentation: AugmentationConfig
  public var pinMemory: Bool
  public var seed: Int
  enum CodingKeys: String, CodingKey { case train, val, augmentation, pinMemory = "pin_memory", seed }
}

public struct CuDNNConfig: Codable, Sendable {
  public var benchmark: Bool
  public var deterministic: Bool
}

public struct OptimConfig: Codable, Sendable {
  public var optimizerType: String
  public var visionLr, textLr, weightDecay: Double
  public var betas: [Double]
  public var eps: Double
  public var warmupSteps: Int
  public var scheduler: String
  enum CodingKeys: String, CodingKey {
    case optimizerType = "optimizer_type", visionLr = "vision_lr", textLr = "text_lr", weightDecay = "weight_decay",
      betas, eps, warmupSteps = "warmup_steps", scheduler
  }
}

public struct TrainConfig: Codable, Sendable {
  public var numGpus: Int
  public var gpuIds: [Int]
  public var numNodes: Int
  public var seed: Int
  public var cudnn: CuDNNConfig
  public var numEpochs: Int
  public var checkpointInterval: Int
  public var checkpointIntervalUnit: String
  public var validationInterval: Int
  public var resumeTrainingCheckpointPath: String?
  public var resultsDir: String?
  public var optim: OptimConfig
  public var lossType: String
  public var siglipLossDistImpl: String
  public var siglipLossMaskMode: String
  public var tripletLossWeight: Double
  public var tripletMargin: Double
  public var precision: String
  public var gradClipNorm: Double?
  public var gradCheckpointing: Bool
  public var distributedStrategy: String
  public var pretrainedModelPath: String?
  public var valCheckInterval: Int?
  enum CodingKeys: String, CodingKey {
    case numGpus = "num_gpus", gpuIds = "gpu_ids", numNodes = "num_nodes", seed, cudnn, numEpochs = "num_epochs",
      checkpointInterval = "checkpoint_interval", checkpointIntervalUnit = "checkpoint_interval_unit",
      validationInterval = "validation_interval", resumeTrainingCheckpointPath = "resume_training_checkpoint_path",
      resultsDir = "results_dir", optim, lossType = "loss_type", siglipLossDistImpl = "siglip_loss_dist_impl",
      siglipLossMaskMode = "siglip_loss_mask_mode", tripletLossWeight = "triplet_loss_weight",
      tripletMargin = "triplet_margin", precision, gradClipNorm = "grad_clip_norm",
      gradCheckpointing = "grad_checkpointing", distributedStrategy = "distributed_strategy",
      pretrainedModelPath = "pretrained_model_path", valCheckInterval = "val_check_interval"
  }
}

public struct InferenceConfig: Codable, Sendable {
  public var datasets: [DataPathConfig]
  public var batchSize: Int
  public var numWorkers: Int
  public var checkpoint: String?
  public var numGpus: Int
  public var gpuIds: [Int]
  public var resultsDir: String?
  public var trtEngine: String?
  public var textFile: String?
  enum CodingKeys: String, CodingKey {
    case datasets, batchSize = "batch_size", numWorkers = "num_workers", checkpoint, numGpus = "num_gpus",
      gpuIds = "gpu_ids", resultsDir = "results_dir", trtEngine = "trt_engine", textFile = "text_file"
  }
}

/// `evaluate`: the `inference` fields (TAO's shared CLIPInferenceEvalConfig) plus its own; read
/// as `config.evaluate.batchSize` through the member lookup.
@dynamicMemberLookup
public struct EvaluateConfig: Codable, Sendable {
  public var shared: InferenceConfig
  public var pasGroundTruthMode: String
  enum CodingKeys: String, CodingKey { case pasGroundTruthMode = "pas_ground_truth_mode" }

  public subscript<T>(dynamicMember path: WritableKeyPath<InferenceConfig, T>) -> T {
    get { shared[keyPath: path] }
    set { shared[keyPath: path] = newValue }
  }
  public init(from decoder: Decoder) throws {
    shared = try InferenceConfig(from: decoder)  // the same keys, read from the same object
    pasGroundTruthMode = try decoder.container(keyedBy: CodingKeys.self).decode(String.self, forKey: .pasGroundTruthMode)
  }
  public func encode(to encoder: Encoder) throws {
    try shared.encode(to: encoder)
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(pasGroundTruthMode, forKey: .pasGroundTruthMode)
  }
}

public struct ExportConfig: Codable, Sendable {
  public var checkpoint: String?
  public var onnxFile: String?
  public var encoderType: String
  public var opsetVersion: Int
  public var batchSize: Int
  public var inputHeight, inputWidth: Int
  public var gpuId: Int
  public var onCpu: Bool
  public var inputChannel: Int
  public var verbose: Bool
  public var resultsDir: String?
  /// ClipKit extension: the LoRA adapters alone, in Hugging Face peft's format.
  public var adapterDir: String?
  enum CodingKeys: String, CodingKey {
    case checkpoint, onnxFile = "onnx_file", encoderType = "encoder_type", opsetVersion = "opset_version",
      batchSize = "batch_size", inputHeight = "input_height", inputWidth = "input_width", gpuId = "gpu_id",
      onCpu = "on_cpu", inputChannel = "input_channel", verbose, resultsDir = "results_dir", adapterDir = "adapter_dir"
  }
}

public struct TensorRTConfig: Codable, Sendable {
  public var workspaceSize: Int
  public var minBatchSize, optBatchSize, maxBatchSize: Int
  public var layersPrecision: [String]?
  public var dataType: String
  enum CodingKeys: String, CodingKey {
    case workspaceSize = "workspace_size", minBatchSize = "min_batch_size", optBatchSize = "opt_batch_size",
      maxBatchSize = "max_batch_size", layersPrecision = "layers_precision", dataType = "data_type"
  }
}

public struct GenTrtEngineConfig: Codable, Sendable {
  public var resultsDir: String?
  public var gpuId: Int
  public var onnxFile: String?
  public var trtEngine: String?
  public var timingCache: String?
  public var batchSize: Int
  public var verbose: Bool
  public var tensorrt: TensorRTConfig
  enum CodingKeys: String, CodingKey {
    case resultsDir = "results_dir", gpuId = "gpu_id", onnxFile = "onnx_file", trtEngine = "trt_engine",
      timingCache = "timing_cache", batchSize = "batch_size", verbose, tensorrt
  }
}

public struct LoRATargetConfig: Codable, Sendable {
  public var mode: String
  public var enabled: Bool?
  public var targetModules: [String]
  public var numLastBlocks, rank, alpha: Int
  public var dropout: Double
  enum CodingKeys: String, CodingKey {
    case mode, enabled, targetModules = "target_modules", numLastBlocks = "num_last_blocks", rank, alpha, dropout
  }
}

public struct PEFTConfig: Codable, Sendable {
  public var enabled: Bool
  public var method: String
  public var trainLogitCalibration: Bool
  public var vision, text: LoRATargetConfig
  enum CodingKeys: String, CodingKey { case enabled, method, trainLogitCalibration = "train_logit_calibration", vision, text }
}

public struct RegularizationConfig: Codable, Sendable {
  public var enabled: Bool
  public var embeddingMseWeight, cosineWeight, similarityWeight: Double
  enum CodingKeys: String, CodingKey {
    case enabled, embeddingMseWeight = "embedding_mse_weight", cosineWeight = "cosine_weight",
      similarityWeight = "similarity_weight"
  }
}

extension Spec {
  /// The typed config. `???` values that the action did not require decode as their schema
  /// default, or nil where TAO itself has no default.
  public func config() throws -> CLIPExperimentConfig {
    func json(_ v: SpecValue, _ field: SpecField?) throws -> Any {
      switch v {
      case .null: return NSNull()
      case .missing:
        if let d = field?.defaultValue, d != .missing { return try json(d, nil) }
        return NSNull()
      case .bool(let b): return b
      case .int(let i): return i
      case .float(let d):
        guard d.isFinite else { throw SpecError.interpolation(path: field?.name ?? "?", reason: "non-finite float \(d)") }
        return d
      case .string(let s): return s
      case .list(let l): return try l.map { try json($0, nil) }
      case .map(let m): return try Dictionary(uniqueKeysWithValues: m.entries.map { ($0.0, try json($0.1, nil)) })
      }
    }
    func convert(_ m: SpecMap, _ s: SpecSection) throws -> [String: Any] {
      var out: [String: Any] = [:]
      for (k, v) in m.entries {
        let f = s.field(k)
        switch (f?.type, v) {
        case (.section(let sub)?, .map(let mm)): out[k] = try convert(mm, sub)
        case (.sections(let sub)?, .list(let items)):
          out[k] = try items.map { item -> Any in
            if case .map(let mm) = item { return try convert(mm, sub) }
            return NSNull()
          }
        default: out[k] = try json(v, f)
        }
      }
      return out
    }
    let data = try JSONSerialization.data(withJSONObject: try convert(tree, CLIPSchema.root))
    return try JSONDecoder().decode(CLIPExperimentConfig.self, from: data)
  }
}
