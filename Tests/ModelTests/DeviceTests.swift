import Foundation
import Testing
import Torch
@testable import Models

/// A model's device travels through construction: every parameter and buffer is created where the
/// model is built, with the same shapes on every device.
@Suite struct ModelsAreBuiltOnTheirDevice {
  @Test(arguments: ["tiny_siglip", "tiny_siglip2_naflex", "tiny_nvclip"])
  func metaAndCPUHoldEveryTensor(_ name: String) throws {
    let meta = try ModelRegistry.load(ModelLoadOptions(type: name, pretrainedDir: MFx.model(name), canonicalize: false, weightsFromCheckpoint: true, device: .meta))
    let cpu = try ModelRegistry.load(ModelLoadOptions(type: name, pretrainedDir: MFx.model(name), canonicalize: false, device: .cpu))
    let metaSlots = meta.encoder.module.namedSlots().compactMap { k, s in s.tensor.map { (k, $0) } }
    let cpuSlots = cpu.encoder.module.namedSlots().compactMap { k, s in s.tensor.map { (k, $0) } }
    #expect(metaSlots.count > 10 && metaSlots.count == cpuSlots.count)
    #expect(meta.encoder.module.namedSlots().contains { $0.1.isBuffer } == cpu.encoder.module.namedSlots().contains { $0.1.isBuffer })
    for ((k, m), (k2, c)) in zip(metaSlots, cpuSlots) {
      #expect(k == k2)
      #expect(m.device == .meta, "\(k) is on \(m.device)")
      #expect(c.device == .cpu, "\(k) is on \(c.device)")
      #expect(m.shape == c.shape && m.dtype == c.dtype, "\(k): \(m) vs \(c)")
    }
    #expect(meta.encoder.module.device == .meta && cpu.encoder.module.device == .cpu)
  }

  @Test func randomInitIsTheSameWhereverItIsPlaced() throws {
    let dir = MFx.model("tiny_siglip")
    let a = try SiglipModel.fromConfig(dir, initialize: Initialization.random(try Generator(seed: 7)).on(.cpu))
    let b = try SiglipModel.fromConfig(dir, initialize: Initialization.random(try Generator(seed: 7)))
    let m = try SiglipModel.fromConfig(dir, initialize: Initialization.random(try Generator(seed: 7)).on(.meta))
    for ((k, x), (_, y)) in zip(a.stateDict(), b.stateDict()) {
      #expect(try x.toArray(Float.self) == y.toArray(Float.self), "\(k)")
    }
    #expect(m.stateDict().allSatisfy { $0.1.device == .meta })
    #expect(m.parameters().allSatisfy { $0.requiresGrad })
  }

  @Test func uploadsGoWhereAsked() throws {
    let host = try Tensor([1, 2, 3] as [Int64])
    #expect(try host.upload(to: .cpu) === host)  // already there: no copy
    let meta = try host.upload(to: .meta)
    #expect(meta.device == .meta && meta.shape == [3] && meta.dtype == .int64)
  }
}
