import Foundation
import Testing
@testable import Torch

@Suite struct TensorBasics {
  @Test func roundTripsEveryDType() throws {
    #expect(try Tensor([1.5, -2, 3] as [Float]).toArray(Float.self) == [1.5, -2, 3])
    #expect(try Tensor([1.5, -2] as [Double]).toArray(Double.self) == [1.5, -2])
    #expect(try Tensor([Int64.max, -1]).toArray(Int64.self) == [Int64.max, -1])
    #expect(try Tensor([Int32(7), -8]).toArray(Int32.self) == [7, -8])
    #expect(try Tensor([UInt8(255), 0]).toArray(UInt8.self) == [255, 0])
    #expect(try Tensor([true, false]).toArray(Bool.self) == [true, false])
    let h = try Tensor([1.0, 2.5, -3.25] as [Float]).to(.float16)
    #expect(h.dtype == .float16)
    #expect(try h.floats() == [1.0, 2.5, -3.25])
    let b = try Tensor([1.0, 0.5] as [Float]).to(.bfloat16)
    #expect(b.dtype == .bfloat16)
    #expect(try b.floats() == [1.0, 0.5])
  }

  @Test func arithmeticBroadcastsLikePyTorch() throws {
    let a = try Tensor([1, 2, 3, 4, 5, 6] as [Float], shape: [2, 3])
    let b = try Tensor([10, 20, 30] as [Float])
    #expect(try (a + b).floats() == [11, 22, 33, 14, 25, 36])
    #expect(try (a * 2 - 1).floats() == [1, 3, 5, 7, 9, 11])
    #expect(try (1 - a).floats() == [0, -1, -2, -3, -4, -5])
    let m = try a.matmul(try a.transpose(0, 1))
    #expect(m.shape == [2, 2])
    #expect(try m.floats() == [14, 32, 32, 77])
    #expect(try a.sum(dims: [1]).floats() == [6, 15])
    #expect(try a.mean().item() == 3.5)
    #expect(try a.amax(dims: [0]).floats() == [4, 5, 6])
    #expect(try a.argmax(dim: 1).toArray(Int64.self) == [2, 2])
  }

  @Test func shapeOpsAndIndexing() throws {
    let a = try Tensor.arange(0, 24, dtype: .float32).reshape([2, 3, 4])
    #expect(try a.permute([2, 0, 1]).shape == [4, 2, 3])
    #expect(try a.narrow(dim: 2, start: 1, length: 2).contiguous().floats() == [1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22])
    #expect(try a.select(dim: 1, index: 2).floats() == [8, 9, 10, 11, 20, 21, 22, 23])
    let parts = try a.split([1, 3], dim: 2)
    #expect(parts.map(\.shape) == [[2, 3, 1], [2, 3, 3]])
    #expect(try Tensor.cat(parts, dim: 2).floats() == (try a.floats()))
    #expect(try Tensor.stack([a, a], dim: 0).shape == [2, 2, 3, 4])
    let idx = try Tensor([2, 0] as [Int64])
    #expect(try a.indexSelect(dim: 1, index: idx).select(dim: 0, index: 0).floats() == [8, 9, 10, 11, 0, 1, 2, 3])
    let g = try Tensor([[3, 0] as [Int64], [1, 1]].flatMap { $0 }, shape: [2, 1, 2])
    #expect(try a.narrow(dim: 1, start: 0, length: 1).gather(dim: 2, index: g).floats() == [3, 0, 13, 13])
    let v = try Tensor([3, 1, 2] as [Float])
    let (sv, si) = try v.sort(descending: true)
    #expect(try sv.floats() == [3, 2, 1])
    #expect(try si.toArray(Int64.self) == [0, 2, 1])
    #expect(try v.topk(2).indices.toArray(Int64.self) == [0, 2])
    #expect(try Tensor.where(v.gt(1.5), v, try v * 0).floats() == [3, 0, 2])
    #expect(try v.clamp(min: 1.5, max: 2.5).floats() == [2.5, 1.5, 2])
    #expect(try a.flatten().shape == [24])
  }

  @Test func seededGeneratorsAreDeterministic() throws {
    let g1 = try Generator(seed: 7), g2 = try Generator(seed: 7)
    let a = try Tensor.randn([5], generator: g1).floats()
    let b = try Tensor.randn([5], generator: g2).floats()
    #expect(a == b)
    let state = try g1.state()
    let c = try Tensor.rand([4], generator: g1).floats()
    try g1.setState(state)
    #expect(try Tensor.rand([4], generator: g1).floats() == c)
    #expect(Set(try Tensor.randperm(10, generator: g1).toArray(Int64.self)) == Set(0..<10))
    // PyTorch's CPU generator with seed 7 draws these first normals (torch.randn(3, generator=torch.Generator().manual_seed(7))).
    let ref: [Float] = [-0.14679509, 0.78614128, 0.94682163]
    let got = try Tensor.randn([3], generator: try Generator(seed: 7)).floats()
    #expect(maxAbsDiff(got, ref) < 1e-6)
    let u = try Tensor.rand([2], generator: try Generator(seed: 7)).floats()
    #expect(maxAbsDiff(u, [0.53492254, 0.19880319]) < 1e-7)
  }

  @Test func threadsAndVersion() throws {
    #expect(Torch.version == "2.11.0")
    let before = Torch.threads
    Torch.threads = 1
    #expect(Torch.threads == 1)
    Torch.threads = before
  }
}

@Suite struct ShimErrors {
  @Test func badShapesThrowInsteadOfAborting() throws {
    let a = try Tensor.zeros([2, 3]), b = try Tensor.zeros([4, 5])
    expectTorchError("matmul") { _ = try a.matmul(b) }
    expectTorchError("cannot be multiplied") { _ = try a.matmul(b) }
    expectTorchError("invalid for input of size") { _ = try a.reshape([7]) }
    expectTorchError("must match the size") { _ = try a + b }
    expectTorchError("out of range") { _ = try a.select(dim: 5, index: 0) }
    expectTorchError("index out of range") {
      _ = try a.indexSelect(dim: 0, index: try Tensor([9] as [Int64]))
    }
    expectTorchError("embedding") {
      _ = try F.embedding(try Tensor([100] as [Int64]), weight: try Tensor.zeros([4, 2]))
    }
    expectTorchError("conv2d") { _ = try F.conv2d(try Tensor.zeros([1, 3, 4, 4]), try Tensor.zeros([2, 5, 3, 3])) }
    expectTorchError("negative dimension") { _ = try Tensor.zeros([-1, 2]) }
    expectTorchError("split") { _ = try a.split([1, 1], dim: 1) }
    expectTorchError("shape needs") { _ = try Tensor([1, 2, 3] as [Float], shape: [2, 2]) }
  }

  @Test func badDTypesThrow() throws {
    let ints = try Tensor([1, 2] as [Int64])
    expectTorchError("asked for float32") { _ = try ints.toArray(Float.self) }
    expectTorchError("linear") { _ = try F.linear(ints, try Tensor.zeros([2, 2])) }
    expectTorchError("cross_entropy") { _ = try F.crossEntropy(try Tensor.zeros([2, 3]), try Tensor([0.5, 1] as [Float])) }
    expectTorchError("autocast dtype must be float16 or bfloat16") {
      _ = try autocast(dtype: .float32) { 1 }
    }
    expectTorchError("grad") { try ints.requiresGrad(true) }
  }

  @Test func missingCUDAThrows() throws {
    if Torch.cudaAvailable { return }  // only meaningful on a CPU-only host
    expectTorchError("CUDA") { _ = try Tensor.zeros([2], device: .cuda(0)) }
    expectTorchError("CUDA") { _ = try Tensor.zeros([2]).to(device: .cuda(0)) }
    expectTorchError("unknown device") { _ = try Device(parsing: "tpu:0") }
  }

  @Test func backwardWithoutGraphThrows() throws {
    expectTorchError("does not require grad") { try Tensor.ones([1]).sum().backward() }
    let w = try Tensor.ones([3]).requiresGrad(true)
    expectTorchError("grad can be implicitly created only for scalar") { try (w * 2).backward() }
  }
}

@Suite struct GlobalSettings {
  /// train.cudnn: libtorch's global context holds what the spec asked for.
  @Test func cudnnSwitchesReachLibtorch() throws {
    try Torch.setCuDNN(benchmark: true, deterministic: false)
    #expect(Torch.cudnnSettings.benchmark && !Torch.cudnnSettings.deterministic)
    try Torch.setCuDNN(benchmark: false, deterministic: true)
    #expect(!Torch.cudnnSettings.benchmark && Torch.cudnnSettings.deterministic)
    #expect(getenv("CUBLAS_WORKSPACE_CONFIG").map { String(cString: $0) } == ":4096:8")
    try Torch.setCuDNN(benchmark: false, deterministic: false)
  }
}
