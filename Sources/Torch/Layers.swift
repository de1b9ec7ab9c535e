import Foundation

// Basic layers with PyTorch's parameter names and default initialisation
// (uniform ±1/sqrt(fan_in) for Linear/Conv2d, N(0,1) for Embedding, ones/zeros for LayerNorm).

public final class Linear: Module {
  @Param("weight") public var weight: Tensor
  @Param("bias") public var bias: Tensor?

  public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, generator: Generator? = nil) throws {
    super.init()
    let bound = 1 / Double(inFeatures).squareRoot()
    weight = try Linear.uniform([outFeatures, inFeatures], bound, generator)
    self.bias = bias ? try Linear.uniform([outFeatures], bound, generator) : nil
  }
  static func uniform(_ shape: [Int], _ bound: Double, _ g: Generator?) throws -> Tensor {
    try Tensor.rand(shape, generator: g) * (2 * bound) - bound
  }
  public func callAsFunction(_ x: Tensor) throws -> Tensor { try F.linear(x, weight, bias) }
}

public final class LayerNorm: Module {
  @Param("weight") public var weight: Tensor
  @Param("bias") public var bias: Tensor
  public let eps: Double
  public let dim: Int

  public init(_ dim: Int, eps: Double = 1e-5) throws {
    self.eps = eps
    self.dim = dim
    super.init()
    weight = try Tensor.ones([dim])
    bias = try Tensor.zeros([dim])
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
              padding: (Int, Int) = (0, 0), bias: Bool = true, generator: Generator? = nil) throws {
    self.stride = stride
    self.padding = padding
    super.init()
    let bound = 1 / Double(inChannels * kernel.0 * kernel.1).squareRoot()
    weight = try Linear.uniform([outChannels, inChannels, kernel.0, kernel.1], bound, generator)
    self.bias = bias ? try Linear.uniform([outChannels], bound, generator) : nil
  }
  public func callAsFunction(_ x: Tensor) throws -> Tensor {
    try F.conv2d(x, weight, bias, stride: stride, padding: padding)
  }
}

public final class Embedding: Module {
  @Param("weight") public var weight: Tensor

  public init(_ count: Int, _ dim: Int, generator: Generator? = nil) throws {
    super.init()
    weight = try Tensor.randn([count, dim], generator: generator)
  }
  public func callAsFunction(_ ids: Tensor) throws -> Tensor { try F.embedding(ids, weight: weight) }
}
