import Foundation

// Basic layers with PyTorch's parameter names and default initialisation
// (uniform ±1/sqrt(fan_in) for Linear/Conv2d, N(0,1) for Embedding, ones/zeros for LayerNorm).

/// How a layer fills its parameters: PyTorch's default random initialisation (from a generator,
/// or the global one), or uninitialised memory for weights that a checkpoint will replace.
public enum Initialization: Sendable {
  case random(Generator?)
  case empty

  public static var random: Initialization { .random(nil) }

  public func uniform(_ shape: [Int], bound: Double) throws -> Tensor {
    switch self {
    case .empty: return try Tensor.empty(shape)
    case .random(let g): return try Tensor.rand(shape, generator: g) * (2 * bound) - bound
    }
  }
  public func normal(_ shape: [Int], std: Double = 1) throws -> Tensor {
    switch self {
    case .empty: return try Tensor.empty(shape)
    case .random(let g): return std == 1 ? try Tensor.randn(shape, generator: g) : try Tensor.randn(shape, generator: g) * std
    }
  }
  public func constant(_ shape: [Int], _ v: Double) throws -> Tensor {
    switch self {
    case .empty: return try Tensor.empty(shape)
    case .random: return try Tensor.full(shape, v)
    }
  }
}

public final class Linear: Module {
  @Param("weight") public var weight: Tensor
  @Param("bias") public var bias: Tensor?

  public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, initialize: Initialization = .random) throws {
    super.init()
    let bound = 1 / Double(inFeatures).squareRoot()
    weight = try initialize.uniform([outFeatures, inFeatures], bound: bound)
    self.bias = bias ? try initialize.uniform([outFeatures], bound: bound) : nil
  }
  public convenience init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, generator: Generator?) throws {
    try self.init(inFeatures, outFeatures, bias: bias, initialize: .random(generator))
  }
  public func callAsFunction(_ x: Tensor) throws -> Tensor { try F.linear(x, weight, bias) }
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
