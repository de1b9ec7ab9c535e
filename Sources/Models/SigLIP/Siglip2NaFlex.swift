import Foundation
import Torch

// SigLIP 2 NaFlex (transformers' Siglip2Model): the vision tower takes pre-patchified pixels
// [B, N, 3·P·P] with a patch mask and each image's patch grid; the learned 16×16 position grid is
// resized per image (bilinear, antialiased) and padded slots repeat its first vector. Keys equal
// SiglipModel's except `vision_model.embeddings.patch_embedding` is a Linear.

final class NaFlexVisionEmbeddings: Module {
  @Child("patch_embedding") var patch: Linear
  @Child("position_embedding") var position: Embedding
  let side: Int

  init(_ c: SiglipVisionConfig, initialize: Initialization) throws {
    let n = c.numPatches ?? 256
    side = Int(Double(n).squareRoot())
    super.init()
    patch = try Linear(c.numChannels * c.patchSize * c.patchSize, c.hiddenSize, initialize: initialize)
    position = try Embedding(n, c.hiddenSize, initialize: initialize)
  }

  func callAsFunction(_ patches: Tensor, shapes: [(Int, Int)]) throws -> Tensor {
    let x = try patch(patches)
    let n = patches.size(1), d = position.weight.size(1)
    let grid = try position.weight.reshape([side, side, d]).permute([2, 0, 1]).unsqueeze(0).to(.float32)
    var rows: [Tensor] = []
    for (h, w) in shapes {
      guard h > 0, w > 0, h * w <= n else { throw ModelError.input("patch grid \(h)x\(w) does not fit \(n) patch slots") }
      let resized = try F.interpolate(grid, size: (h, w), mode: .bilinear, alignCorners: false, antialias: true)
      let flat = try resized.reshape([d, h * w]).transpose(0, 1)
      var parts = [flat]
      if h * w < n { parts.append(try flat.narrow(dim: 0, start: 0, length: 1).expand([n - h * w, d])) }
      rows.append(try Tensor.cat(parts, dim: 0))
    }
    return try x + Tensor.stack(rows, dim: 0).to(x.dtype)
  }
}

extension SiglipVisionTransformer {
  /// NaFlex forward: pooled features [B, D] from patches [B, N, 3·P·P], mask [B, N] (1 = patch),
  /// and the (rows, columns) patch grid of each image.
  func callAsFunction(patches: Tensor, mask: Tensor, shapes: [(Int, Int)]) throws -> Tensor {
    guard let naflex = naflexEmbeddings else { throw ModelError.input("this SigLIP vision tower takes images, not patches") }
    let keys = try mask.ne(0).unsqueeze(1).unsqueeze(1)  // [B, 1, 1, N]
    let h = try postNorm(try encoder(try naflex(patches, shapes: shapes), mask: keys))
    guard let head else {
      let m = try mask.to(h.dtype).unsqueeze(2)
      return try (h * m).sum(dims: [1]) / m.sum(dims: [1])
    }
    return try head(h, mask: keys)
  }
}

extension SiglipModel {
  /// NaFlex `get_image_features`: pooled, not normalised.
  public func imageFeatures(patches: Tensor, mask: Tensor, shapes: [(Int, Int)]) throws -> Tensor {
    try vision(patches: patches, mask: mask, shapes: shapes)
  }
  public var isNaFlex: Bool { config.modelType == "siglip2" }
}
