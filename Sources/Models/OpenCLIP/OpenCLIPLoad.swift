import Export
import Foundation
import Imaging
import Tokenizers
import Torch

// OpenCLIP models as CLIPBundles: from an open_clip model directory (open_clip_config.json +
// open_clip_model.safetensors / open_clip_pytorch_model.bin, the HF hub layout) or, for TAO's
// NV-CLIP types, from the built-in configs below (TAO starts those from random weights unless a
// checkpoint is given).

/// TAO's adapter around open_clip: module keys `backbone.model.visual…` (checkpoints add
/// `model.`), and its own `logit_scale`/`logit_bias` (open_clip's, inside the model, are unused).
public final class OpenCLIPAdapter: Module, CLIPEncoder {
  @Child("backbone") var backbone: OpenCLIPBackbone
  @Param("logit_scale") public var logitScale: Tensor
  @Param("logit_bias") public var logitBias: Tensor
  public var module: Module { self }
  public var model: OpenCLIPModel { backbone.model }
  public var gradientCheckpointing: Bool {
    get { model.gradientCheckpointing }
    set { model.gradientCheckpointing = newValue }
  }

  /// `logitScale`/`logitBias`: the adapter's initial values; the model's own when nil (0 bias
  /// for models without one).
  public init(_ model: OpenCLIPModel, logitScale: Double? = nil, logitBias: Double? = nil) throws {
    super.init()
    backbone = OpenCLIPBackbone(model)
    self.logitScale = try Tensor.scalar(Float(try logitScale ?? model.logitScale.reshape([]).item())).moved(to: model.device)
    self.logitBias = try Tensor.scalar(Float(try logitBias ?? model.logitBias?.reshape([]).item() ?? 0)).moved(to: model.device)
  }

  /// Inputs arrive as host tensors and go to the model's device here.
  public func encodeImages(_ pixels: Tensor) throws -> Tensor { try model.imageFeatures(pixels.upload(to: logitScale.device)).l2Normalized() }
  public func encodeImages(_ inputs: [ImageInput]) throws -> Tensor { try encodeImages(try ImageInput.pixelBatch(inputs, for: logitScale.device)) }
  public func encodeTexts(_ ids: Tensor, attentionMask: Tensor?) throws -> Tensor {
    try model.textFeatures(ids.upload(to: logitScale.device)).l2Normalized()
  }
  /// open_clip's own files (a state dict, or its training checkpoints with DDP's `module.`) go
  /// under `backbone.model.`, and their logit values also become the adapter's; TAO's and
  /// ClipKit's checkpoints already have the adapter's keys.
  public func adapterKeys(_ tensors: [String: Tensor]) throws -> [String: Tensor] {
    guard !tensors.keys.contains(where: { $0.hasPrefix("backbone.") }) else { return tensors }
    var out: [String: Tensor] = [:]
    for (k, v) in tensors {
      let key = k.hasPrefix("module.") ? String(k.dropFirst(7)) : k
      out["backbone.model." + key] = (key == "logit_scale" || key == "logit_bias") && v.count == 1 ? try v.reshape([]) : v
    }
    // open_clip adds a zero bias when the model has one and the file does not.
    if model.logitBias != nil && out["backbone.model.logit_bias"] == nil { out["backbone.model.logit_bias"] = try Tensor.scalar(Float(0)) }
    out["logit_scale"] = try out["backbone.model.logit_scale"] ?? logitScale.detach()
    out["logit_bias"] = try out["backbone.model.logit_bias"] ?? logitBias.detach()
    return out
  }

  public func encoderBlocks(_ tower: Tower) -> [Module] {
    switch tower {
    case .vision: return model.visual?.transformer.blocks ?? []
    case .text: return model.transformer.blocks
    case .logit: return []
    }
  }
  /// TAO: `visual.*` is the vision tower; the logit parameters their own; the rest is text.
  public func tower(of parameter: String) -> Tower {
    parameter.hasPrefix("backbone.model.visual.") ? .vision : parameter.hasPrefix("logit_") || parameter.hasPrefix("backbone.model.logit_") ? .logit : .text
  }

  public func onnxImageEmbedding(_ g: ONNXGraph, pixels: String, height: Int, width: Int) throws -> String {
    g.l2Normalize(try model.onnxImageFeatures(g, pixels: pixels, height: height, width: width))
  }
  public func onnxTextEmbedding(_ g: ONNXGraph, ids: String, mask: String?, length: Int) throws -> String {
    g.l2Normalize(try model.onnxTextFeatures(g, ids: ids, length: length))
  }
}

public final class OpenCLIPBackbone: Module {
  @Child("model") var model: OpenCLIPModel
  init(_ m: OpenCLIPModel) {
    super.init()
    model = m
  }
}

public enum OpenCLIPFamily: CLIPFamily {
  public static var types: [String] { taoConfigs.keys.sorted() }

  /// TAO's NV-CLIP types, or an open_clip model directory.
  public static func claims(type: String, pretrainedDir: String?) -> Bool {
    taoConfigs[type] != nil || pretrainedDir.map(isModelDirectory) == true
  }

  /// TAO's NV-CLIP types (open_clip CLIPA layout with fixed sin-cos positions and a logit bias).
  public static let taoConfigs: [String: OpenCLIPConfig] = {
    func nvclip(_ size: Int, large: Bool, context: Int = 77) -> OpenCLIPConfig {
      let v = large ? OpenCLIPVisionConfig(imageSize: size, patchSize: 14, width: 1024, layers: 24, headWidth: 64, noLnPre: true, poolType: "avg",
                                           finalLnAfterPool: true, posEmbedType: "sin_cos_2d")
        : OpenCLIPVisionConfig(imageSize: size, patchSize: 14, width: 1280, layers: 32, headWidth: 80, noLnPre: true, poolType: "avg",
                               finalLnAfterPool: true, posEmbedType: "sin_cos_2d")
      let t = OpenCLIPTextConfig(contextLength: context, vocabSize: 32000, width: large ? 768 : 1024, heads: large ? 12 : 16,
                                 layers: large ? 12 : 24, noCausalMask: true, poolType: "last", hfTokenizerName: "bert-base-uncased",
                                 stripSepToken: true)
      return OpenCLIPConfig(embedDim: large ? 768 : 1024, initLogitBias: -10, vision: v, text: t)
    }
    return ["ViT-L-14-SigLIP-CLIPA-224": nvclip(224, large: true), "ViT-L-14-SigLIP-CLIPA-336": nvclip(336, large: true),
            "ViT-H-14-SigLIP-CLIPA-224": nvclip(224, large: false), "ViT-H-14-SigLIP-CLIPA-336": nvclip(336, large: false),
            "ViT-H-14-SigLIP-CLIPA-574": nvclip(574, large: false)]
  }()

  /// Whether `dir` is an open_clip model directory.
  public static func isModelDirectory(_ dir: String) -> Bool { FileManager.default.fileExists(atPath: dir + "/open_clip_config.json") }

  public static func config(_ dir: String) throws -> OpenCLIPConfig { try readConfig(dir).modelCfg }

  static func readConfig(_ dir: String) throws -> OpenCLIPFile {
    let path = dir + "/open_clip_config.json"
    guard let data = FileManager.default.contents(atPath: path) else { throw ModelError.config(file: path, reason: "missing") }
    do { return try JSONDecoder().decode(OpenCLIPFile.self, from: data) } catch {
      throw ModelError.config(file: path, reason: "not an open_clip config (\(error.localizedDescription))")
    }
  }

  /// The weights of an open_clip directory.
  public static func weights(in dir: String) throws -> [String: Tensor] {
    let fm = FileManager.default
    for name in ["open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors", "pytorch_model.bin"]
    where fm.fileExists(atPath: dir + "/" + name) {
      var t = name.hasSuffix(".safetensors") ? try Safetensors.read(dir + "/" + name).dictionary : try PyTorchCheckpoint.read(dir + "/" + name).tensors
      // open_clip keeps `logit_scale`/`logit_bias` as [] or [1] depending on the version.
      for k in ["logit_scale", "logit_bias"] { if let v = t[k], v.count == 1 { t[k] = try v.reshape([]) } }
      return t
    }
    throw ModelError.config(file: dir, reason: "no open_clip_model.safetensors or open_clip_pytorch_model.bin")
  }

  /// The separator token's text: tokenizer_config.json's `sep_token` (a string or an AddedToken
  /// object), else special_tokens_map.json's, else BERT's `[SEP]`.
  static func sepToken(_ dir: String) throws -> String {
    for f in ["tokenizer_config.json", "special_tokens_map.json"] {
      guard let d = FileManager.default.contents(atPath: dir + "/" + f), let o = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any] else { continue }
      if let s = o["sep_token"] as? String { return s }
      if let s = (o["sep_token"] as? [String: Any])?["content"] as? String { return s }
    }
    return "[SEP]"
  }

  /// The tokenizer files: the model directory's own, else `hf_tokenizer_name` from the HF cache.
  /// (A directory with only open_clip's `bpe_simple_vocab_16e6.txt.gz` uses the CLIP BPE instead.)
  static func tokenizerDirectory(_ dir: String?, name: String?) throws -> String {
    if let dir, FileManager.default.fileExists(atPath: dir + "/tokenizer.json") { return dir }
    guard let name else {
      throw ModelError.config(file: dir ?? "open_clip_config.json", reason: "no tokenizer.json, no bpe_simple_vocab_16e6.txt.gz (open_clip's CLIP BPE) and no text_cfg.hf_tokenizer_name")
    }
    for repo in [name, name.contains("/") ? nil : "google-bert/\(name)"].compactMap({ $0 }) {
      if let snap = PretrainedLocator.cachedSnapshot(repo: repo), FileManager.default.fileExists(atPath: snap + "/tokenizer.json") { return snap }
    }
    throw PretrainedError.notFound(repo: name, looked: (dir.map { [$0] } ?? []) + PretrainedLocator.hubCacheDirectories(),
                                   hint: "the OpenCLIP text tower needs the \(name) tokenizer: put tokenizer.json (with tokenizer_config.json) in model.pretrained_dir or the Hugging Face cache")
  }

  /// A bundle for `type` / `pretrainedDir`. `initLogitScale/Bias` override the model's values
  /// (TAO's NV-CLIP presets are log 10 and -10).
  public static func load(_ o: ModelLoadOptions) throws -> CLIPBundle {
    let (type, pretrainedDir, randomInit, weightsFromCheckpoint) = (o.type, o.pretrainedDir, o.randomInit, o.weightsFromCheckpoint)
    // model.image_size applies to TAO's own types; a directory's model keeps its size.
    let imageSize = taoConfigs[type] != nil ? o.imageSize : nil
    let file: OpenCLIPFile
    var source: String
    if let dir = pretrainedDir {
      file = try readConfig(dir)
      source = dir
    } else if let cfg = taoConfigs[type] {
      file = OpenCLIPFile(modelCfg: cfg, preprocessCfg: nil)
      source = "random initialisation: \(type) has no pretrained weights, as in TAO (give a checkpoint or model.pretrained_dir)"
    } else {
      throw ModelRegistryError.unknownType(type, known: Array(taoConfigs.keys).sorted())
    }
    let cfg = file.modelCfg
    let path = (pretrainedDir ?? ".") + "/open_clip_config.json"
    let fromWeights = pretrainedDir != nil && randomInit == nil && !weightsFromCheckpoint
    let model = try OpenCLIPModel(cfg, file: path, initialize: (fromWeights || weightsFromCheckpoint ? Initialization.empty : .random(randomInit)).on(o.device))
    if fromWeights {
      try model.load(stateDict: try weights(in: pretrainedDir!), assign: true, source: pretrainedDir!)
    } else if weightsFromCheckpoint {
      source = pretrainedDir ?? type
    }
    let adapter = try OpenCLIPAdapter(model, logitScale: weightsFromCheckpoint ? 0 : o.initLogitScale, logitBias: weightsFromCheckpoint ? 0 : o.initLogitBias)
    adapter.eval()

    let ctx = cfg.text.contextLength
    let tokDir: String
    let tokenize: ([String]) throws -> BatchEncoding
    let bpe = pretrainedDir.map { $0 + "/bpe_simple_vocab_16e6.txt.gz" }
    if cfg.text.hfTokenizerName == nil, let bpe, FileManager.default.fileExists(atPath: bpe),
       !FileManager.default.fileExists(atPath: pretrainedDir! + "/tokenizer.json") {
      // open_clip's own SimpleTokenizer (OpenAI CLIP BPE: lowercased, <start>/<end>, zero padding).
      let simple = try CLIPBPETokenizer(bpePath: bpe, contextLength: ctx)
      tokDir = pretrainedDir!
      tokenize = { BatchEncoding(zeroPadded: simple($0)) }
    } else {
      tokDir = try tokenizerDirectory(pretrainedDir, name: cfg.text.hfTokenizerName)
      let tokenizer = try Tokenizer(directory: tokDir)
      // open_clip's HFTokenizer replaces every separator token with 0 when strip_sep_token is set.
      let sep = cfg.text.stripSepToken ? tokenizer.id(of: try sepToken(tokDir)) : nil
      if cfg.text.stripSepToken && sep == nil { throw ModelError.config(file: tokDir, reason: "strip_sep_token is set but the tokenizer has no separator token") }
      let clean: @Sendable (String) -> String
      switch cfg.text.clean {
      case "canonicalize": clean = { TextCleaning.canonicalize(TextCleaning.basicClean($0)) }
      case "lower": clean = { TextCleaning.pythonLower(TextCleaning.collapseWhitespace(TextCleaning.basicClean($0))) }
      default: clean = { TextCleaning.collapseWhitespace(TextCleaning.basicClean($0)) }
      }
      tokenize = { texts in
        // open_clip's cleaning ('whitespace' by default): ftfy-style fixes, HTML unescaped twice, spaces collapsed.
        var enc = try tokenizer(texts.map(clean), maxLength: ctx, padding: .maxLength, truncation: true)
        if let sep { enc.ids = enc.ids.map { $0.map { $0 == sep ? 0 : $0 } } }
        return enc
      }
    }
    // Preprocessing: TAO's for its OpenCLIP types (shortest side bicubic + centre crop, OpenAI
    // statistics), else the directory's preprocess_cfg; open_clip's eval transform either way
    // (torchvision rounding).
    let p = taoConfigs[type] != nil ? nil : file.preprocessCfg
    let size = imageSize ?? cfg.vision.imageSize
    let resize: ImageTransform.Resize = p?.resizeMode == "squash" ? .squash(width: size, height: size) : .shortestTorchvision(size: size)
    if let mode = p?.resizeMode, !["shortest", "squash"].contains(mode) {
      throw ModelError.config(file: path, reason: "preprocess_cfg.resize_mode '\(mode)' is not supported (shortest, squash)")
    }
    // torchvision's Normalize broadcasts a single value over the channels.
    func three(_ v: [Double]?, _ name: String) throws -> [Double]? {
      guard let v else { return nil }
      if v.count == 1 { return [v[0], v[0], v[0]] }
      guard v.count == 3 else { throw ModelError.config(file: path, reason: "preprocess_cfg.\(name) needs 1 or 3 values") }
      return v
    }
    let transform = ImageTransform(resize: resize, filter: p?.interpolation == "bilinear" ? .bilinear : .bicubic,
                                   mean: try three(p?.mean, "mean") ?? [0.48145466, 0.4578275, 0.40821073],
                                   std: try three(p?.std, "std") ?? [0.26862954, 0.26130258, 0.27577711])
    return CLIPBundle(family: "OpenCLIP", encoder: adapter, transform: transform, preprocess: .fixed(transform), contextLength: ctx,
                      canonicalize: o.canonicalize, source: source, tokenizerDirectory: tokDir, tokenize: tokenize)
  }
}
