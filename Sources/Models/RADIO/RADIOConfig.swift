import Foundation
import Torch

/// One entry of a RADIO checkpoint's `args.teachers`.
struct RADIOTeacher {
  var name: String
  /// The adaptor class RADIO builds for it: `siglip2`, `open_clip`, or a generic head.
  var type: String
  var model: String
  var pretrained: String?
  var tokenSlot: Int?
  var useSummary: Bool
}

/// A C-RADIO architecture, read from its hub checkpoint: the pickled `args` (timm model name and
/// kwargs, teachers, token settings) and the tensor shapes — never from a table per model.type.
struct RADIOConfig {
  var timmModel: String
  var patchSize: Int
  var width: Int
  var depth: Int
  var heads: Int
  var mlpHidden: Int
  var qkvBias: Bool
  var layerScale: Bool
  var mlpNorm: Bool
  var finalNorm: Bool
  var regTokens: Int
  var normalizePatches: Bool
  var gridRows: Int
  var cpeMode: Bool
  var clsTokens: Int
  var registers: Int
  var posDropout = 0.1
  var dropPath: Double
  var clsTokenPerTeacher: Bool
  var teachers: [RADIOTeacher]

  /// The sorted first index of each distinct teacher name with a summary (hubconf's summary_idxs).
  var summaryIdxs: [Int] {
    guard clsTokenPerTeacher else { return [0] }
    var first: [String: Int] = [:]
    for (i, t) in teachers.enumerated() where t.useSummary && first[t.name] == nil { first[t.name] = i }
    return first.values.sorted()
  }

  /// The teacher an adaptor name selects and the class-token slot its head reads.
  func adaptor(_ name: String, file: String) throws -> (teacher: RADIOTeacher, index: Int, slot: Int) {
    guard let i = teachers.firstIndex(where: { $0.name == name }) else {
      throw ModelError.config(file: file, reason: "no teacher named '\(name)' (the checkpoint's teachers: \(teachers.map(\.name).joined(separator: ", ")))")
    }
    return (teachers[i], i, clsTokenPerTeacher ? (teachers[i].tokenSlot ?? i) : 0)
  }

  /// timm's default head count for the ViT names RADIO uses, when `model_kwargs` does not say.
  static func defaultHeads(_ model: String) -> Int? {
    let exact = ["vit_giant_patch16_224": 24, "vit_bigG_patch14_224": 16]
    if let h = exact[model] { return h }
    for (prefix, h) in [("vit_tiny_", 3), ("vit_small_", 6), ("vit_base_", 12), ("vit_large_", 16), ("vit_so400m_", 16), ("vit_huge_", 16),
                        ("vit_giant_", 16), ("vit_gigantic_", 16)] where model.hasPrefix(prefix) {
      return h
    }
    return nil
  }

  /// timm's input size for the model (the grid the CPE grid is compared with).
  static func defaultImageSize(_ model: String) -> Int {
    // RADIO's `_v2_` ViTs are DINOv2-reg4 shapes at patch 16: 518·16/14.
    model.contains("_v2_") ? 518 * 16 / 14 : 224
  }

  /// `args` (the Namespace as a dict) and the ViT's tensors keyed as TAO's `radio_model.model.*`
  /// without that prefix.
  static func read(args: PickleDict, vit: [String: Tensor], file: String) throws -> RADIOConfig {
    func bad(_ why: String) -> ModelError { .config(file: file, reason: why) }
    func shape(_ k: String) throws -> [Int] {
      guard let t = vit[k] else { throw bad("the checkpoint has no \(k)") }
      return t.shape
    }
    guard let model = args["model"]?.stringValue else { throw bad("args.model (the timm model name) is missing") }
    let kwargs = args["model_kwargs"]?.dictValue ?? PickleDict()
    let embed = try shape("patch_generator.embedder.weight")
    guard embed.count == 2, embed[1] % 3 == 0 else { throw bad("patch_generator.embedder.weight has shape \(embed), expected [C, 3·P²]") }
    let patch = Int(Double(embed[1] / 3).squareRoot().rounded())
    guard patch * patch * 3 == embed[1] else { throw bad("patch_generator.embedder.weight has \(embed[1]) inputs, not 3·P² for a square patch") }
    let width = embed[0]
    let pos = try shape("patch_generator.pos_embed")
    let rows = Int(Double(pos.count == 3 ? pos[1] : 0).squareRoot().rounded())
    guard pos.count == 3, rows * rows == pos[1], pos[2] == width else { throw bad("patch_generator.pos_embed has shape \(pos), expected [1, R², \(width)]") }
    var depth = 0
    while vit["blocks.\(depth).attn.qkv.weight"] != nil { depth += 1 }
    guard depth > 0 else { throw bad("the checkpoint has no ViT blocks (blocks.0.attn.qkv.weight)") }
    guard let heads = kwargs["num_heads"]?.intValue ?? defaultHeads(model) else {
      throw bad("args.model '\(model)' is not a ViT whose head count is known, and args.model_kwargs has no num_heads")
    }
    guard heads > 0, width % heads == 0 else { throw bad("\(heads) heads do not divide the width \(width)") }
    let teachers = try (args["teachers"].flatMap { v -> [PickleValue]? in if case .list(let l) = v { return l.items } else { return nil } } ?? [])
      .map { v -> RADIOTeacher in
        guard let d = v.dictValue, let name = d["name"]?.stringValue else { throw bad("args.teachers holds an entry without a name") }
        var useSummary = true
        if case .bool(let b)? = d["use_summary"] { useSummary = b }
        return RADIOTeacher(name: name, type: d["type"]?.stringValue ?? "", model: d["model"]?.stringValue ?? "",
                            pretrained: d["pretrained"]?.stringValue, tokenSlot: d["token_slot"]?.intValue, useSummary: useSummary)
      }
    guard !teachers.isEmpty else { throw bad("args.teachers is empty") }
    var perTeacher = true
    if case .bool(let b)? = args["cls_token_per_teacher"] { perTeacher = b }
    let cls = perTeacher ? Set(teachers.map(\.name)).count : 1
    let tokens = try shape("patch_generator.cls_token.token")
    guard tokens.count == 2, tokens[1] == width, tokens[0] >= cls else {
      throw bad("patch_generator.cls_token.token has shape \(tokens), expected [\(cls) class tokens + registers, \(width)]")
    }
    var modelNorm = false
    if case .bool(let b)? = args["model_norm"] { modelNorm = b }
    let imageSize = kwargs["img_size"]?.intValue ?? defaultImageSize(model)
    var qkvBias = true
    if case .bool(let b)? = kwargs["qkv_bias"] { qkvBias = b }
    let mlpHidden = try shape("blocks.0.mlp.fc1.weight")[0]
    let regTokens = vit["reg_token"]?.size(1) ?? 0
    let dropPath = args["drop_path"]?.doubleValue ?? 0
    return RADIOConfig(
      timmModel: model, patchSize: patch, width: width, depth: depth, heads: heads, mlpHidden: mlpHidden,
      qkvBias: qkvBias && vit["blocks.0.attn.qkv.bias"] != nil, layerScale: vit["blocks.0.ls1.grandma"] != nil,
      mlpNorm: vit["blocks.0.mlp.norm.weight"] != nil, finalNorm: modelNorm && vit["norm.weight"] != nil, regTokens: regTokens,
      normalizePatches: vit["patch_generator.patch_normalizer.weight"] != nil, gridRows: rows,
      cpeMode: rows != imageSize / patch, clsTokens: cls, registers: tokens[0] - cls,
      dropPath: dropPath, clsTokenPerTeacher: perTeacher, teachers: teachers)
  }
}
