import Export
import Foundation
import Imaging
import Tokenizers
import Torch

/// TAO's CRADIO: RADIO with one teacher adaptor; its own `logit_scale`/`logit_bias`. Module keys
/// are TAO 7.0.1's (`radio_model.model.*`, `radio_model.adaptors.<name>.*`); its checkpoints also
/// repeat the adaptor under `adaptor.*`, which ClipKit writes too and reads from either place.
public final class RADIOAdapter: Module, CLIPEncoder {
  @Param("logit_scale") public var logitScale: Tensor
  @Param("logit_bias") public var logitBias: Tensor
  @Child("radio_model") var radio: RADIOModel
  public var module: Module { self }
  /// RADIO's name of the adaptor (`siglip2-g`, `clip`, …).
  public let adaptorName: String
  /// Whether the tokenizer returns an attention mask, which TAO then passes to the text tower.
  public let usesTextAttentionMask: Bool

  init(_ radio: RADIOModel, adaptorName: String, logitScale: Double, logitBias: Double, textMask: Bool, device: Device) throws {
    self.adaptorName = adaptorName
    usesTextAttentionMask = textMask
    super.init()
    self.radio = radio
    self.logitScale = try Tensor.scalar(Float(logitScale)).moved(to: device)
    self.logitBias = try Tensor.scalar(Float(logitBias)).moved(to: device)
  }

  public var gradientCheckpointing: Bool {
    get { radio.vit.checkpointing }
    set {
      radio.vit.checkpointing = newValue
      radio.adaptor.siglipText?.encoder.checkpointing = newValue
      radio.adaptor.openCLIPText?.gradientCheckpointing = newValue
    }
  }

  /// TAO: a frozen vision tower puts the ViT alone in eval mode (no CPE crop or positional dropout);
  /// a frozen text tower its text model.
  public func train(frozen: Set<Tower>) {
    train()
    if frozen.contains(.vision) { radio.vit.eval() }
    if frozen.contains(.text) {
      radio.adaptor.siglipText?.eval()
      radio.adaptor.openCLIPText?.eval()
    }
  }

  public func encodeImages(_ pixels: Tensor) throws -> Tensor {
    try radio.imageFeatures(try pixels.upload(to: logitScale.device)).l2Normalized()
  }
  public func encodeImages(_ inputs: [ImageInput]) throws -> Tensor { try encodeImages(try ImageInput.pixelBatch(inputs, for: logitScale.device)) }
  public func encodeTexts(_ ids: Tensor, attentionMask: Tensor?) throws -> Tensor {
    let device = logitScale.device
    let mask = usesTextAttentionMask ? try attentionMask?.upload(to: device) : nil
    return try radio.adaptor.textFeatures(try ids.upload(to: device), attentionMask: mask).l2Normalized()
  }

  public func encoderBlocks(_ tower: Tower) -> [Module] {
    switch tower {
    case .vision: return radio.vit.blocks
    case .text: return radio.adaptor.siglipText?.encoder.layers ?? radio.adaptor.openCLIPText?.transformer.blocks ?? []
    case .logit: return []
    }
  }

  /// TAO: the adaptor's text model is the text tower; everything else of RADIO (ViT and heads)
  /// the vision tower.
  public func tower(of parameter: String) -> Tower {
    if parameter.hasPrefix("logit_") { return .logit }
    let adaptor = "radio_model.adaptors.\(adaptorName)."
    if parameter.hasPrefix(adaptor + "text_model.") || parameter.hasPrefix(adaptor + "oc_model.") { return .text }
    return .vision
  }

  /// TAO 7.0.1 checkpoints repeat the adaptor as `adaptor.*` (one module registered twice); newer
  /// ones do not. Either loads: the copy is checked against the original and dropped.
  public func adapterKeys(_ tensors: [String: Tensor]) throws -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    let base = "radio_model.adaptors.\(adaptorName)."
    for (k, v) in tensors {
      guard k.hasPrefix("adaptor.") else { out[k] = v; continue }
      let original = base + k.dropFirst("adaptor.".count)
      if let o = tensors[original], o.shape != v.shape {
        throw ModelError.input("checkpoint key \(k) has shape \(v.shape) but \(original) has \(o.shape)")
      }
      if tensors[original] == nil { out[original] = v }
    }
    return out
  }

  public func checkpointStateDict() -> [(String, Tensor)] {
    let sd = stateDict()
    let base = "radio_model.adaptors.\(adaptorName)."
    return sd + sd.filter { $0.0.hasPrefix(base) }.map { ("adaptor." + $0.0.dropFirst(base.count), $0.1) }
  }

}

/// RADIO-CLIP: a C-RADIOv3 vision backbone with a teacher's text adaptor (TAO's CRADIO).
public enum RADIOFamily: CLIPFamily {
  public static let types = ["c-radio_v3-b", "c-radio_v3-l", "c-radio_v3-h", "c-radio_v3-g"]
  public static var readsAdaptorName: Bool { true }

  /// RADIO types only: a directory of another format never stands in for one.
  public static func claims(type: String, pretrainedDir: String?) -> Bool { types.contains(type) }

  /// The file torch.hub caches for each version (RADIO's common.py; note the `-l` spelling).
  static let hubFiles = ["c-radio_v3-b": "c-radio_v3-b_half.pth.tar", "c-radio_v3-l": "c-radio-v3_l_half.pth.tar",
                         "c-radio_v3-h": "c-radio_v3-h_half.pth.tar", "c-radio_v3-g": "c-radio_v3-g_half.pth.tar"]

  /// TAO's adaptor name → RADIO's teacher name: `siglip` (and none) → the version's SigLIP 2
  /// teacher, `clip`/`dfn_clip`/`dfn` → `clip`; other names pass through.
  static func teacherName(type: String, adaptor: String?) -> String {
    switch adaptor ?? "siglip" {
    case "siglip": return type == "c-radio_v3-h" ? "siglip2-g" : "siglip2"
    case "clip", "dfn_clip", "dfn": return "clip"
    case let other: return other
    }
  }

  /// Hugging Face repos of the teachers' text towers (RADIO's siglip2_adaptor map, open_clip's
  /// pretrained tags).
  static let siglipRepos = ["siglip2-g-384": "google/siglip2-giant-opt-patch16-384", "siglip2-so400m": "google/siglip2-so400m-patch16-naflex"]
  static let openCLIPRepos = ["ViT-H-14-378-quickgelu/dfn5b": "apple/DFN5B-CLIP-ViT-H-14-378", "ViT-H-14-quickgelu/dfn5b": "apple/DFN5B-CLIP-ViT-H-14",
                              "ViT-L-14-quickgelu/dfn2b": "apple/DFN2B-CLIP-ViT-L-14", "ViT-B-16-quickgelu/dfn2b": "apple/DFN2B-CLIP-ViT-B-16"]

  /// The hub checkpoint: `model.pretrained_dir` (a directory holding the version's file, or the
  /// file itself), else `$TORCH_HOME/hub/checkpoints/` (TORCH_HOME defaults to
  /// `$XDG_CACHE_HOME/torch`, else `~/.cache/torch`).
  static func hubCheckpoint(type: String, pretrainedDir: String?, environment env: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
    let file = hubFiles[type]!
    let fm = FileManager.default
    var looked: [String] = []
    if let dir = pretrainedDir {
      var isDir: ObjCBool = false
      if fm.fileExists(atPath: dir, isDirectory: &isDir), !isDir.boolValue { return dir }
      looked.append((dir as NSString).appendingPathComponent(file))
    } else {
      let home = env["HOME"] ?? NSHomeDirectory()
      let torchHome = env["TORCH_HOME"] ?? ((env["XDG_CACHE_HOME"] ?? home + "/.cache") as NSString).appendingPathComponent("torch")
      looked.append(torchHome + "/hub/checkpoints/" + file)
    }
    if let found = looked.first(where: { fm.fileExists(atPath: $0) }) { return found }
    throw PretrainedError.notFound(repo: type, looked: looked,
      hint: "ClipKit never downloads: put \(file) (from huggingface.co/nvidia/C-RADIOv3-\(type.split(separator: "-").last!.uppercased())) in the torch.hub cache or in model.pretrained_dir")
  }

  public static func load(_ o: ModelLoadOptions) throws -> CLIPBundle {
    let path = try hubCheckpoint(type: o.type, pretrainedDir: o.pretrainedDir)
    let hub = try RADIOHubCheckpoint.read(path)
    let name = teacherName(type: o.type, adaptor: o.adaptorName)
    let (teacher, teacherIndex, slot) = try hub.config.adaptor(name, file: path)
    // Weights that will be loaded need no values (and draw nothing from the seeded generator).
    let initialize = (o.randomInit.map { Initialization.random($0) } ?? .empty).on(o.device)
    // Pretrained weights unless random ones are asked for or a checkpoint will replace them.
    let loadWeights = o.randomInit == nil && !o.weightsFromCheckpoint
    let vit = try RADIOViT(hub.config, initialize: initialize)
    if loadWeights { try vit.load(stateDict: hub.vit, assign: true, source: path) }
    let headState = hub.head(teacher: teacher.name, index: teacherIndex)
    guard !headState.isEmpty else { throw ModelError.config(file: path, reason: "no summary head for the '\(name)' teacher (_heads.\(teacherIndex) or _heads.\(name))") }
    let head = try makeHead(headState, file: path, initialize: initialize)
    if loadWeights { try head.load(stateDict: headState, assign: true, source: path + " (\(name) head)") }
    let feat = hub.featureHead(teacher: teacher.name, index: teacherIndex)

    // The teacher's text tower, from the Hugging Face cache as RADIO's adaptor loads it.
    var siglipText: SiglipTextTransformer? = nil, ocText: OpenCLIPModel? = nil
    let tokenize: ([String]) throws -> BatchEncoding
    let context: Int, tokenizerDir: String, textMask: Bool
    switch teacher.type {
    case "siglip2":
      guard let repo = siglipRepos[teacher.model] else {
        throw ModelError.config(file: path, reason: "teacher '\(name)' names SigLIP 2 model '\(teacher.model)', which RADIO does not map (known: \(siglipRepos.keys.sorted().joined(separator: ", ")))")
      }
      let dir = try PretrainedLocator.directory(repo: repo, pretrainedDir: nil)
      let cfg = try SiglipModel.config(dir)
      let text = try SiglipTextTransformer(cfg.textConfig, file: dir + "/config.json", initialize: initialize)
      if loadWeights { try text.load(stateDict: try prefixed(try PretrainedLocator.weights(in: dir), "text_model."), assign: true, source: dir) }
      siglipText = text
      let tokenizer = try Tokenizer(directory: dir)
      // TAO tokenises to 64 tokens and passes the mask when the tokenizer returns one.
      context = 64
      tokenizerDir = dir
      textMask = tokenizer.returnsAttentionMask
      tokenize = { try tokenizer($0, maxLength: 64, padding: .maxLength, truncation: true) }
    case "open_clip":
      let tag = teacher.model + "/" + (teacher.pretrained ?? "")
      let repo = (teacher.pretrained?.hasPrefix("hf-hub:") == true) ? String(teacher.pretrained!.dropFirst(7)) : openCLIPRepos[tag]
      guard let repo else {
        throw ModelError.config(file: path, reason: "teacher '\(name)' is open_clip \(tag), whose Hugging Face repo ClipKit does not know (known: \(openCLIPRepos.keys.sorted().joined(separator: ", ")))")
      }
      let dir = try PretrainedLocator.directory(repo: repo, pretrainedDir: nil, configFile: "open_clip_config.json")
      let cfg = try OpenCLIPFamily.config(dir)
      let model = try OpenCLIPModel(cfg, file: dir + "/open_clip_config.json", initialize: initialize, textOnly: true)
      if loadWeights {
        try model.load(stateDict: try OpenCLIPFamily.weights(in: dir).filter { !$0.key.hasPrefix("visual.") }, assign: true, source: dir)
      }
      ocText = model
      context = cfg.text.contextLength
      let (clip, dirUsed) = try clipTokenizer(near: dir, context: context)
      tokenizerDir = dirUsed
      textMask = false  // TAO passes input_ids only
      tokenize = { BatchEncoding(zeroPadded: clip($0)) }
    default:
      throw ModelError.config(file: path, reason: "teacher '\(name)' is a \(teacher.type) teacher without a text tower; RADIO-CLIP needs a siglip2 or open_clip adaptor (model.adaptor_name siglip or clip)")
    }
    let adaptor = RADIOAdaptor(head: head, featureHead: feat.isEmpty ? nil : try CarriedWeights(feat, buffers: false),
                               siglipText: siglipText, openCLIPText: ocText, headIndex: slot)
    let radio = try RADIOModel(vit: vit, summaryIdxs: hub.config.summaryIdxs, adaptor: (name, adaptor),
                               featureNormalizer: hub.featureNormalizer.isEmpty ? nil : try CarriedWeights(hub.featureNormalizer, buffers: true),
                               interFeatureNormalizer: hub.interFeatureNormalizer.isEmpty ? nil : try CarriedWeights(hub.interFeatureNormalizer, buffers: true),
                               device: o.device)
    try radio.to(device: o.device)
    // TAO's logit init by loss type (siglip by default) unless the spec gives values.
    let adapter = try RADIOAdapter(radio, adaptorName: name, logitScale: o.initLogitScale ?? 2.3026, logitBias: o.initLogitBias ?? -10,
                                   textMask: textMask, device: o.device)
    adapter.eval()
    // TAO's eval transform at model.image_size (default 256): open_clip's, OpenAI statistics.
    let size = o.imageSize ?? 256
    guard size % hub.config.patchSize == 0 else {
      throw ModelError.input("model.image_size \(size) is not a multiple of RADIO's patch size \(hub.config.patchSize)")
    }
    let transform = ImageTransform(resize: .shortestTorchvision(size: size), filter: .bicubic,
                                   mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711])
    return CLIPBundle(family: "RADIO-CLIP", encoder: adapter, transform: transform, preprocess: .fixed(transform), contextLength: context,
                      canonicalize: o.canonicalize, source: path, tokenizerDirectory: tokenizerDir, tokenize: tokenize)
  }

  static func prefixed(_ t: [String: Tensor], _ prefix: String) throws -> [String: Tensor] {
    Dictionary(uniqueKeysWithValues: t.filter { $0.key.hasPrefix(prefix) && !$0.key.hasSuffix("position_ids") }.map { (String($0.key.dropFirst(prefix.count)), $0.value) })
  }

  /// MLP v2 (`final.2`) or v1 (`fc2`), sized from the head's tensors.
  static func makeHead(_ s: [String: Tensor], file: String, initialize: Initialization) throws -> RADIOHead {
    guard let fc1 = s["fc1.weight"], fc1.rank == 2 else { throw ModelError.config(file: file, reason: "the summary head has no fc1.weight") }
    if let out = s["final.2.weight"] {
      var inner = 0
      while s["blocks.\(inner).0.weight"] != nil { inner += 1 }
      return try RADIOMLPv2(input: fc1.size(1), hidden: fc1.size(0), output: out.size(0), inner: inner, preNorm: s["pre_norm.0.weight"] != nil,
                            initialize: initialize)
    }
    if let out = s["fc2.weight"] {
      return try RADIOMLPv1(input: fc1.size(1), hidden: fc1.size(0), output: out.size(0), initialize: initialize)
    }
    throw ModelError.config(file: file, reason: "the summary head is neither MLP v1 (fc2) nor v2 (final.2)")
  }

  /// open_clip's SimpleTokenizer vocabulary (bpe_simple_vocab_16e6.txt.gz) beside the teacher's
  /// weights, else the CLIP tokenizer TAO exports as a stand-in (openai/clip-vit-large-patch14's
  /// tokenizer.json, whose ids equal open_clip's up to the padding, made 0 here).
  static func clipTokenizer(near dir: String, context: Int) throws -> (([String]) -> [[Int]], String) {
    let bpe = dir + "/bpe_simple_vocab_16e6.txt.gz"
    if FileManager.default.fileExists(atPath: bpe) {
      let t = try CLIPBPETokenizer(bpePath: bpe, contextLength: context)
      return ({ t($0) }, dir)
    }
    for candidate in [dir, PretrainedLocator.cachedSnapshot(repo: "openai/clip-vit-large-patch14")].compactMap({ $0 })
    where FileManager.default.fileExists(atPath: candidate + "/tokenizer.json") {
      let tok = try Tokenizer(directory: candidate)
      return ({ texts in
        let enc = (try? tok(texts.map { TextCleaning.pythonLower(TextCleaning.collapseWhitespace(TextCleaning.basicClean($0))) },
                            maxLength: context, padding: .maxLength, truncation: true)) ?? BatchEncoding(ids: [], attentionMask: [])
        return zip(enc.ids, enc.attentionMask).map { ids, mask in zip(ids, mask).map { $1 == 0 ? 0 : $0 } }
      }, candidate)
    }
    throw ModelError.config(file: dir, reason: "the open_clip text tower needs open_clip's CLIP vocabulary: copy bpe_simple_vocab_16e6.txt.gz from the open_clip package into this folder, or put openai/clip-vit-large-patch14 (tokenizer.json) in the Hugging Face cache")
  }
}

/// A RADIO hub checkpoint (`.pth.tar`): `args` and `state_dict_ema` (or `state_dict`, whose
/// spectral reparametrisations are folded as hubconf does), split into the parts ClipKit builds.
struct RADIOHubCheckpoint {
  var config: RADIOConfig
  /// The ViT's tensors, keyed as `radio_model.model.*` without the prefix.
  var vit: [String: Tensor]
  var state: [String: Tensor]
  var featureNormalizer: [String: Tensor]
  var interFeatureNormalizer: [String: Tensor]

  static func read(_ path: String) throws -> RADIOHubCheckpoint {
    let ckpt = try PyTorchCheckpoint.read(path)
    guard case .dict(let top) = ckpt.root, let args = top["args"]?.dictValue else {
      throw ModelError.config(file: path, reason: "not a RADIO hub checkpoint (no args)")
    }
    let ema = top["state_dict_ema"]?.dictValue
    guard let raw = ema ?? top["state_dict"]?.dictValue else {
      throw ModelError.config(file: path, reason: "not a RADIO hub checkpoint (no state_dict_ema or state_dict)")
    }
    var state: [String: Tensor] = [:]
    for (k, v) in raw.items { if case .string(let key) = k, case .tensor(let t) = v { state[key] = t } }
    if ema == nil { state = try SpectralReparam.fold(state, args: args, file: path) }
    // ViT keys; LayerScale's `gamma` is RADIO's `grandma`; timm's final norm only with args.model_norm.
    var vit: [String: Tensor] = [:]
    for (k, v) in state where k.hasPrefix("base_model.") {
      var key = String(k.dropFirst("base_model.".count))
      if key.hasSuffix(".gamma"), key.contains(".ls") { key = String(key.dropLast(".gamma".count)) + ".grandma" }
      vit[key] = v
    }
    let config = try RADIOConfig.read(args: args, vit: vit, file: path)
    if !config.finalNorm { vit = vit.filter { !$0.key.hasPrefix("norm.") } }
    func section(_ prefix: String) -> [String: Tensor] {
      Dictionary(uniqueKeysWithValues: state.filter { $0.key.hasPrefix(prefix) }.map { (String($0.key.dropFirst(prefix.count)), $0.value) })
    }
    return RADIOHubCheckpoint(config: config, vit: vit, state: state, featureNormalizer: section("_feature_normalizer."),
                              interFeatureNormalizer: section("_intermediate_feature_normalizer."))
  }

  /// `_heads.<index>.*` or `_heads.<name>.*` (whole components: `_heads.1` is not `_heads.10`).
  func head(teacher: String, index: Int) -> [String: Tensor] { part("_heads", teacher: teacher, index: index) }
  func featureHead(teacher: String, index: Int) -> [String: Tensor] { part("_feature_projections", teacher: teacher, index: index) }
  private func part(_ root: String, teacher: String, index: Int) -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for p in ["\(root).\(index).", "\(root).\(teacher)."] {
      for (k, v) in state where k.hasPrefix(p) { out[String(k.dropFirst(p.count))] = v }
    }
    return out
  }
}

/// RADIO's spectral reparametrisation, folded into plain weights as hubconf's
/// `remove_parametrizations` does: one power iteration (the fresh parametrisation is in training
/// mode), σ = u·(W v) + eps, W' = W · s / σ with s = softplus(scale) + 0.05 (version 2) or scale
/// (version 1); `attn.qkv` in three row chunks (`parts.0..2`; a missing part stays as it is).
enum SpectralReparam {
  static func fold(_ state: [String: Tensor], args: PickleDict, file: String) throws -> [String: Tensor] {
    let marker = ".parametrizations.weight.original"
    guard state.keys.contains(where: { $0.hasSuffix(marker) }) else { return state }
    // The ViT's settings come from args.spectral_reparam (a bool: eps 1e-6; a dict: its values,
    // eps 1e-12 by default); the heads always use RADIO's defaults (eps 1e-6, one iteration).
    var vitEps = 1e-6, vitIterations = 1
    if let d = args["spectral_reparam"]?.dictValue {
      vitEps = d["eps"]?.doubleValue ?? 1e-12
      vitIterations = d["n_power_iterations"]?.intValue ?? 1
    }
    var out = state.filter { !$0.key.contains(".parametrizations.weight.") }
    for (key, w) in state where key.hasSuffix(marker) {
      let linear = String(key.dropLast(marker.count))
      let p = linear + ".parametrizations.weight.0."
      let isViT = key.hasPrefix("base_model.")
      let (eps, iterations) = isViT ? (vitEps, vitIterations) : (1e-6, 1)
      let weight = try w.to(.float32)
      let folded: Tensor
      if state.keys.contains(where: { $0.hasPrefix(p + "parts.") }) {
        let rows = weight.size(0) / 3
        folded = try Tensor.cat(try (0..<3).map { i in
          let chunk = try weight.narrow(dim: 0, start: i * rows, length: rows)
          return state[p + "parts.\(i).scale"] == nil ? chunk : try reweight(chunk, state, p + "parts.\(i).", eps: eps, iterations: iterations, file: file)
        })
      } else {
        folded = try reweight(weight, state, p, eps: eps, iterations: iterations, file: file)
      }
      out[linear + ".weight"] = folded
    }
    return out
  }

  static func reweight(_ w: Tensor, _ state: [String: Tensor], _ p: String, eps: Double, iterations: Int, file: String) throws -> Tensor {
    guard let scale = state[p + "scale"], var u = state[p + "_u"], var v = state[p + "_v"] else {
      throw ModelError.config(file: file, reason: "spectral reparametrisation of \(p) lacks scale, _u or _v")
    }
    guard u.count == w.size(0), v.count == w.size(1) else {
      throw ModelError.config(file: file, reason: "\(p)_u/_v have \(u.count)/\(v.count) values for a \(w.shape) weight")
    }
    (u, v) = (try u.to(.float32), try v.to(.float32))
    func normalized(_ x: Tensor) throws -> Tensor { try x / (try (x * x).sum().sqrt().clamp(min: eps)) }
    for _ in 0..<iterations {
      u = try normalized(try w.matmul(v))
      v = try normalized(try w.transpose(0, 1).matmul(u))
    }
    let sigma = try (u * w.matmul(v)).sum() + eps
    let version = try state[p + "_sn_version"].map { try $0.to(.float64).item() } ?? 1
    let s = try scale.to(.float32)
    let factor = version >= 2 ? try (s.exp() + 1).log() + 0.05 : s
    return try w * (factor / sigma)
  }
}
