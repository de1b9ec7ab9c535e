import Foundation
import Torch

/// The contrastive losses TAO trains with (open_clip's SigLipLoss and ClipLoss on one device).
public enum ContrastiveLoss: String, Sendable {
  case siglip, clip

  /// `image`, `text`: L2-normalised [B, E]; `logitScale`: log-space scalar; `logitBias`: scalar.
  public func callAsFunction(image: Tensor, text: Tensor, logitScale: Tensor, logitBias: Tensor) throws -> Tensor {
    let b = image.size(0)
    let sims = try image.matmul(try text.transpose(0, 1))
    switch self {
    case .siglip:
      // logits = s·I·Tᵀ + b; labels +1 on the diagonal, −1 elsewhere; −Σ log σ(label·logit) / B.
      let logits = try sims * logitScale.exp() + logitBias
      let labels = try Tensor.eye(b, device: logits.device) * 2 - 1
      return try -(try (labels * logits).logSigmoid().sum()) / Double(b)
    case .clip:
      // Symmetric cross-entropy over s·I·Tᵀ (no bias).
      let logits = try sims * logitScale.exp()
      let target = try Tensor.arange(0, Double(b), device: logits.device)
      let a = try F.crossEntropy(logits, target)
      let t = try F.crossEntropy(try logits.transpose(0, 1), target)
      return try (a + t) / 2
    }
  }
}

extension Tensor {
  /// Identity matrix.
  public static func eye(_ n: Int, dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
    let idx = try Tensor.arange(0, Double(n), device: device)
    return try idx.unsqueeze(1).eq(try idx.unsqueeze(0)).to(dtype)
  }
}
