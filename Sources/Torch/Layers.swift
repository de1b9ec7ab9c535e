import Foundation

// Basic layers with PyTorch's parameter names and default initialisation
// (uniform ±1/sqrt(fan_in) for Linear/Conv2d, N(0,1) for Embedding, ones/zeros for LayerNorm).

/// How a layer fills its parameters, and where: PyTorch's default random initialisation (from a
/// generator, or the global one), or uninitialised memory for weights that a checkpoint will
/// replace; on `device` (candle's VarBuilder carries the same). Random values are drawn on the
/// CPU and then placed, so a seed gives the same weights on every device; `empty` allocates on
/// the device directly, and on `.meta` nothing is allocated at all.
public struct Initialization: Sendable {
  public enum Fill: Sendable {
    case random(Generator?)
    case empty
  }
  public var fill: Fill
  public var device: Device = .cpu

  public init(_ fill: Fill, device: Device = .cpu) {
    self.fill = fill
    self.device = device
  }
  public static var random: Initialization { Initialization(.random(nil)) }
  public static func random(_ g: Generator?) -> Initialization { Initialization(.random(g)) }
  public static var empty: Initialization { Initialization(.empty) }
  /// The same fill on `device`.
  public func on(_ device: Device) -> Initialization { Initialization(fill, device: device) }

  private func place(_ make: () throws -> Tensor, _ shape: [Int]) throws -> Tensor {
    if case .random = fill, device != .meta { return try make().moved(to: device) }
    return try Tensor.empty(shape, device: device)
  }
  public func uniform(_ shape: [Int], bound: Double) throws -> Tensor {
    guard case .random(let g) = fill else { return try Tensor.empty(shape, device: device) }
    return try place({ try Tensor.rand(shape, generator: g) * (2 * bound) - bound }, shape)
  }
  public func normal(_ shape: [Int], std: Double = 1) throws -> Tensor {
    guard case .random(let g) = fill else { return try Tensor.empty(shape, device: device) }
    return try place({ std == 1 ? try Tensor.randn(shape, generator: g) : try Tensor.randn(shape, generator: g) * std }, shape)
  }
  public func constant(_ shape: [Int], _ v: Double) throws -> Tensor {
    guard case .random = fill else { return try Tensor.empty(shape, device: device) }
    return device == .meta ? try Tensor.empty(shape, device: device) : try Tensor.full(shape, v, device: device)
  }
  /// A tensor computed on the host (fixed tables, scalars) placed where this fill puts weights.
  public func placed(_ t: Tensor) throws -> Tensor {
    device == .meta ? try Tensor.empty(t.shape, dtype: t.dtype, device: .meta) : try t.moved(to: device)
  }
}

public final class Linear: Module {
  @Param("weight") public var weight: Tensor
  @Param("bias") public var bias: Tensor?
  // LoRA (TAO's LoRALinear, in place): W·x + B(A(dropout(x)))·scaling with W frozen; checkpoint
  // keys `original.weight`/`original.bias`, `lora_A` (r×in), `lora_B` (out×r), `scaling` (0-d).
  @Param("lora_A") public var loraA: Tensor?
  @Param("lora_B") public var loraB: Tensor?
  @Buffer("scaling") public var scaling: Tensor?
  public private(set) var loraDropout = 0.0

  public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, initialize: Initialization = .random) throws {
    super.init()
    let bound = 1 / Double(inFeatures).squareRoot()
    weight = try initialize.uniform([outFeatures, inFeatures], bound: bound)
    self.bias = bias ? try initialize.uniform([outFeatures], bound: bound) : nil
    loraA = nil
    loraB = nil
    scaling = nil
  }
  public convenience init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, generator: Generator?) throws {
    try self.init(inFeatures, outFeatures, bias: bias, initialize: .random(generator))
  }
  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    let y = try F.linear(x, weight, bias)
    guard let loraA, let loraB, let scaling else { return y }
    let h = try F.linear(try F.linear(try F.dropout(x, p: loraDropout, training: isTraining), loraA), loraB)
    return try y + h * scaling
  }

  public var hasLoRA: Bool { loraA != nil }

  /// Wraps this layer as TAO's LoRALinear: the weight and bias frozen under `original.`, A drawn
  /// kaiming-uniform (a=√5: U(±1/√in)) from the default generator as torch.nn.init does, B zeros,
  /// scaling alpha/rank as a persisted float32 buffer.
  public func enableLoRA(rank: Int, alpha: Double, dropout: Double) throws {
    guard !hasLoRA else { return }
    let (out, inp) = (weight.size(0), weight.size(1))
    _weight.key = "original.weight"
    _bias.key = "original.bias"
    try weight.requiresGrad(false)
    try bias?.requiresGrad(false)
    let a = try Tensor.empty([rank, inp], dtype: weight.dtype, device: weight.device)
    try a.uniform_(-1 / Double(inp).squareRoot(), 1 / Double(inp).squareRoot())
    loraA = try a.requiresGrad(true)
    loraB = try Tensor.zeros([out, rank], dtype: weight.dtype, device: weight.device).requiresGrad(true)
    scaling = try Tensor.scalar(Float(alpha / Double(rank))).moved(to: weight.device)
    loraDropout = dropout
  }

  /// W + (B·A)·scaling: the plain layer's weight (export merges the adapter so).
  public func mergedWeight() throws -> Tensor {
    guard let loraA, let loraB, let scaling else { return weight }
    return try noGrad { try weight + loraB.matmul(loraA) * scaling }
  }
}

public final class LayerNorm: Module {
  @Param("weight") public var weight: Tensor
  @Param("bias") public var bias: Tensor
  public let eps: Double
  public let dim: Int

  public init(_ dim: Int, eps: Double = 1e-5, initialize: Initialization = .random) throws {
    self.eps = eps
    self.dim = dim
    super.init()
    weight = try initialize.constant([dim], 1)
    bias = try initialize.constant([dim], 0)
  }
  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    try F.layerNorm(x, shape: [dim], weight: weight, bias: bias, eps: eps)
  }
}

public final class Conv2d: Module {
  @Param("weight") public var weight: Tensor
  @Param("bias") public var bias: Tensor?
  public let stride: (Int, Int)
  public let padding: (Int, Int)

  public init(_ inChannels: Int, _ outChannels: Int, kernel: (Int, Int), stride: (Int, Int) = (1, 1),
              padding: (Int, Int) = (0, 0), bias: Bool = true, initialize: Initialization = .random) throws {
    self.stride = stride
    self.padding = padding
    super.init()
    let bound = 1 / Double(inChannels * kernel.0 * kernel.1).squareRoot()
    weight = try initialize.uniform([outChannels, inChannels, kernel.0, kernel.1], bound: bound)
    self.bias = bias ? try initialize.uniform([outChannels], bound: bound) : nil
  }
  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    try F.conv2d(x, weight, bias, stride: stride, padding: padding)
  }
}

public final class Embedding: Module {
  @Param("weight") public var weight: Tensor

  public init(_ count: Int, _ dim: Int, initialize: Initialization = .random) throws {
    super.init()
    weight = try initialize.normal([count, dim])
  }
  public func callAsFunction(_ ids: Tensor) throws -> Tensor { try F.embedding(ids, weight: weight) }
}
