import Foundation

// The TAO CLIP experiment schema (nvidia_tao_pytorch/config/clip/default_config.py and the
// common TAO configs it extends), with TAO's defaults and allowed values. The newest TAO schema
// is a superset of 7.0's; ClipKit accepts all of it so specs from any release load. Keys marked
// "ClipKit extension" are ours and documented in the README.
public enum CLIPSchema {
  static let wandb = SpecSection([
    bool("enable", true), str("project", "TAO Toolkit"), str("entity", ""), str("group", ""),
    strs("tags", ["training", "tao-toolkit"]), bool("reinit", false), bool("sync_tensorboard", false),
    bool("save_code", false), str("name", "TAO Toolkit training experiment"), str("run_id", ""),
  ])

  static let model = SpecSection([
    str("type", "siglip2-so400m-patch16-256", "CLIP model type (SigLIP 2, C-RADIOv3 or OpenCLIP name)"),
    str("adaptor_name", nil, "RADIO text adaptor: siglip or clip"),
    bool("freeze_vision_encoder", false),
    bool("freeze_text_encoder", false),
    int("image_size", 256, min: 1, "train/eval transform size for RADIO and OpenCLIP"),
    float("init_logit_scale", nil, "raw (log-space) logit scale; null = loss-type default"),
    float("init_logit_bias", nil, "logit bias; null = loss-type default"),
    bool("canonicalize_text", false),
    str("pretrained_dir", nil, "ClipKit extension: local directory with pretrained weights (HF layout)"),
    bool("random_init", false, "ClipKit extension: train from random weights with pretrained_dir's config.json"),
  ])

  static let loraTarget = SpecSection([
    str("mode", "legacy", choices: ["legacy", "frozen", "full", "lora"]),
    bool("enabled", nil),
    strs("target_modules", ["q_proj", "k_proj", "v_proj", "out_proj"]),
    int("num_last_blocks", 3, min: 0),
    int("rank", 8, min: 1),
    int("alpha", 16, min: 1),
    float("dropout", 0.05, min: 0, max: 1),
  ])
  static let peft = SpecSection([
    bool("enabled", false), str("method", "lora", choices: ["lora"]), bool("train_logit_calibration", true),
    section("vision", loraTarget), section("text", loraTarget),
  ])
  static let regularization = SpecSection([
    bool("enabled", false), float("embedding_mse_weight", 0.05, min: 0), float("cosine_weight", 0.05, min: 0),
    float("similarity_weight", 0.10, min: 0),
  ])

  public static let dataPath = SpecSection([
    mandatoryStr("image_dir"),
    str("image_list_file", nil),
    str("caption_dir", nil),
    str("caption_file_suffix", ".txt"),
    str("train_pairs_file", nil),
    str("attribute_pairs_file", nil),
  ])
  static let wds = SpecSection([
    str("root_dir", nil), str("shard_list_file", nil), int("samples_per_shard", 10000, min: 1),
  ])
  static let trainData = SpecSection([
    sectionList("datasets", dataPath),
    int("batch_size", 16, min: 1),
    int("num_workers", 8, min: 0),
    str("type", "custom", choices: ["wds", "custom"]),
    section("wds", wds, nullable: true),
    bool("balance_query_types", false),
    bool("unique_caption_per_batch", true),
    bool("include_attribute_metadata", false),
  ])
  static let valData = SpecSection([
    sectionList("datasets", dataPath),
    int("batch_size", 16, min: 1),
    int("num_workers", 8, min: 0),
    bool("metadata_match_eval", false),
    str("metadata_match_mode", "scalar_attributes", choices: ["scalar_attributes", "scalar_plus_accessories"]),
  ])
  static let augmentation = SpecSection([
    floats("scale", [0.4, 1.0]),
    floats("color_jitter", [0.8, 0.32, 0.32, 0.32, 0.08]),
    float("grayscale", 0.2, min: 0, max: 1),
  ])
  static let dataset = SpecSection([
    section("train", trainData), section("val", valData), section("augmentation", augmentation),
    bool("pin_memory", true), int("seed", 42),
  ])

  static let cudnn = SpecSection([bool("benchmark", false), bool("deterministic", true)])
  static let optim = SpecSection([
    str("optimizer_type", "adamw", choices: ["adamw", "lamb"]),
    float("vision_lr", 1e-4, min: 0), float("text_lr", 1e-4, min: 0), float("weight_decay", 1e-4, min: 0),
    floats("betas", [0.9, 0.95]), float("eps", 1e-6, min: 0), int("warmup_steps", 100, min: 0),
    str("scheduler", "cosine", choices: ["cosine", "constant", "linear"]),
  ])
  static let train = SpecSection([
    int("num_gpus", 1, min: 1), ints("gpu_ids", [0]), int("num_nodes", 1, min: 1),
    int("seed", 1234, min: -1), section("cudnn", cudnn),
    int("num_epochs", 10, min: 1), int("checkpoint_interval", 1, min: 1),
    str("checkpoint_interval_unit", "epoch", choices: ["epoch", "step"]),
    int("validation_interval", 1, min: 1),
    str("resume_training_checkpoint_path", nil), str("results_dir", nil),
    section("optim", optim),
    str("loss_type", "siglip", choices: ["siglip", "clip"]),
    str("siglip_loss_dist_impl", "gather", choices: ["bidir", "shift", "reduce", "gather", "local"]),
    str("siglip_loss_mask_mode", "none", choices: ["none", "attribute_match_ignore", "attribute_plus_accessory_match_ignore"]),
    float("triplet_loss_weight", 0.0, min: 0), float("triplet_margin", 0.2, min: 0),
    str("precision", "fp16", choices: ["fp16", "fp32", "bf16"]),
    float("grad_clip_norm", nil), bool("grad_checkpointing", false),
    str("distributed_strategy", "ddp", choices: ["ddp", "fsdp"]),
    str("pretrained_model_path", nil), int("val_check_interval", nil),
  ])

  static let inferenceEvalFields: [SpecField] = [
    sectionList("datasets", dataPath), int("batch_size", 16, min: 1), int("num_workers", 8, min: 0),
    str("checkpoint", nil), int("num_gpus", 1, min: 1), ints("gpu_ids", [0]), str("results_dir", nil),
    str("trt_engine", nil), str("text_file", nil),
  ]
  static let evaluate = SpecSection(inferenceEvalFields + [
    str("pas_ground_truth_mode", "paired_caption", choices: ["paired_caption", "scalar_attributes", "scalar_plus_accessories"]),
  ])
  static let inference = SpecSection(inferenceEvalFields)

  static let export = SpecSection([
    str("checkpoint", nil), str("onnx_file", nil), str("encoder_type", "combined", choices: ["combined", "separate"]),
    int("opset_version", 17, min: 11), int("batch_size", -1), int("input_height", 256, min: 32),
    int("input_width", 256, min: 32), int("gpu_id", 0), bool("on_cpu", false), int("input_channel", 3, min: 1),
    bool("verbose", false), str("results_dir", nil),
    str("adapter_dir", nil, "ClipKit extension: also write the LoRA adapters alone in Hugging Face peft's format"),
  ])
  static let tensorrt = SpecSection([
    int("workspace_size", 1024, min: 0), int("min_batch_size", 1, min: 1), int("opt_batch_size", 1, min: 1),
    int("max_batch_size", 16, min: 1), strs("layers_precision", [], nullable: true),
    str("data_type", "fp32", choices: ["fp32", "fp16"]),
  ])
  static let genTrtEngine = SpecSection([
    str("results_dir", nil), int("gpu_id", 0, min: 0), mandatoryStr("onnx_file"),
    mandatoryStr("trt_engine", nullable: true), str("timing_cache", nil), int("batch_size", -1, min: -1),
    bool("verbose", false), section("tensorrt", tensorrt),
  ])

  /// ClipKit extension: `clipkit serve` (an NV-CLIP-compatible embedding server).
  static let serve = SpecSection([
    str("host", "127.0.0.1", "ClipKit extension: address to listen on"),
    int("port", 8000, min: 0, max: 65535, "ClipKit extension: port (0 = any free port)"),
    str("checkpoint", nil, "ClipKit extension: checkpoint to serve (null: the pretrained weights)"),
    str("trt_engine", nil, "ClipKit extension: an exported .onnx or .engine to serve instead"),
    int("max_batch", 32, min: 1, "ClipKit extension: most items per model batch"),
    int("max_wait_ms", 10, min: 0, "ClipKit extension: how long a batch waits for more items"),
    int("max_queue", 1024, min: 1, "ClipKit extension: items waiting before requests get 503"),
    int("max_body_bytes", 16 << 20, min: 1, "ClipKit extension: request body limit (413 beyond)"),
    int("max_image_pixels", 40_000_000, min: 1, "ClipKit extension: larger images are refused (422)"),
    str("api_key", nil, "ClipKit extension: bearer token required on /v1/* except health"),
    str("index", nil, "ClipKit extension: an inference output folder to search from the page at /"),
  ])

  /// The whole experiment spec.
  public static let root = SpecSection([
    str("model_name", "clip"),
    str("encryption_key", nil),
    str("results_dir", ""),
    section("wandb", wandb),
    section("model", model),
    section("dataset", dataset),
    section("train", train),
    section("evaluate", evaluate),
    section("inference", inference),
    section("export", export),
    section("gen_trt_engine", genTrtEngine),
    section("peft", peft),
    section("regularization", regularization),
    section("serve", serve),
  ])
}
