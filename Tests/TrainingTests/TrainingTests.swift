import Foundation
import Testing
import Torch
@testable import Training

@Suite struct TrainingPieces {
  @Test func crc32cAndEventFraming() throws {
    #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE3069283)
    let dir = NSTemporaryDirectory() + "tb-\(UUID().uuidString)"
    let w = try TensorBoardWriter(directory: dir)
    try w.scalars([("loss", 1.5)], step: 3)
    try w.flush()
    let bytes = [UInt8](FileManager.default.contents(atPath: w.path)!)
    // Walk the TFRecord frames and check both CRCs of each.
    var p = 0, records = 0
    while p < bytes.count {
      let len = Int(bytes[p..<(p + 8)].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
      let lenCRC = bytes[(p + 8)..<(p + 12)].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
      #expect(lenCRC == CRC32C.masked(Array(bytes[p..<(p + 8)])))
      let data = Array(bytes[(p + 12)..<(p + 12 + len)])
      let dataCRC = bytes[(p + 12 + len)..<(p + 16 + len)].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
      #expect(dataCRC == CRC32C.masked(data))
      p += 16 + len
      records += 1
    }
    #expect(records == 2)
  }

  @Test func scheduleFollowsTAO() {
    #expect(scheduledLR(base: 1, step: 0, warmup: 4, total: 20, kind: "cosine") == 0.25)
    #expect(scheduledLR(base: 1, step: 3, warmup: 4, total: 20, kind: "cosine") == 1)
    #expect(abs(scheduledLR(base: 1, step: 12, warmup: 4, total: 20, kind: "cosine") - 0.5) < 1e-12)
    #expect(scheduledLR(base: 2, step: 12, warmup: 4, total: 20, kind: "linear") == 1)
    #expect(scheduledLR(base: 2, step: 19, warmup: 4, total: 20, kind: "constant") == 2)
  }

  @Test func lossesOnKnownEmbeddings() throws {
    // Two perfectly matched pairs: SigLIP loss = -(2·logσ(s+b) + 2·logσ(-(0·s)-b)) / 2 with s = e^scale.
    let img = try Tensor([1, 0, 0, 1] as [Float], shape: [2, 2]), txt = img
    let scale = try Tensor.scalar(Float(log(10.0))), bias = try Tensor.scalar(Float(-10))
    let siglip = try ContrastiveLoss.siglip(image: img, text: txt, logitScale: scale, logitBias: bias).item()
    func logsig(_ x: Double) -> Double { -log(1 + exp(-x)) }
    let expected = -(2 * logsig(10 - 10) + 2 * logsig(10)) / 2
    #expect(abs(siglip - expected) < 1e-5)
    let clip = try ContrastiveLoss.clip(image: img, text: txt, logitScale: scale, logitBias: bias).item()
    #expect(abs(clip - log(1 + exp(-10))) < 1e-5)
  }
}

@Suite struct LossScaling {
  /// torch.amp.GradScaler around AdamW, with overflowing gradients at some steps
  /// (tools/fixtures/make_fixtures.py scaler_fixtures).
  /// Both AdamW paths: the reference loop and PyTorch's fused kernel (what GPUs run).
  @Test(arguments: [false, true]) func matchesTorchGradScaler(fused: Bool) throws {
    let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("grad_scaler.json")
    let ref = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    let grads = (ref["grads"] as! [[NSNumber]]).map { $0.map(\.floatValue) }
    let overflow = Set((ref["overflow"] as! [NSNumber]).map(\.intValue))
    let steps = ref["steps"] as! [[String: Any]]
    let p = try Tensor([1.0, -2.0, 0.5] as [Float], shape: [3])
    try p.requiresGrad(true)
    let opt = AdamW(groups: [ParamGroup(name: "p", params: [("p", p)], lr: 0.1, baseLR: 0.1, weightDecay: 0.01)], betas: (0.9, 0.95), eps: 1e-6, fused: fused)
    let scaler = GradScaler(initScale: (ref["init_scale"] as! NSNumber).doubleValue, growthInterval: (ref["growth_interval"] as! NSNumber).intValue)
    for (i, expected) in steps.enumerated() {
      try opt.zeroGrad()
      var loss = try (p * Tensor(grads[i % grads.count], shape: [3])).sum()
      if overflow.contains(i) { loss = try loss * Double.infinity }
      try scaler.scaled(loss).backward()
      let stepped = try scaler.step([p]) { try opt.step() }
      #expect(stepped == !overflow.contains(i))
      #expect(scaler.scale == (expected["scale"] as! NSNumber).doubleValue, "step \(i)")
      let want = (expected["param"] as! [NSNumber]).map(\.floatValue)
      for (a, b) in zip(try p.toArray(Float.self), want) { #expect(abs(a - b) <= 1e-6, "step \(i): \(a) vs \(b)") }
    }
  }
}
