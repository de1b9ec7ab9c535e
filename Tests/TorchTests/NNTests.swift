import Foundation
import Testing
@testable import Torch

/// Ops compared with PyTorch outputs for identical inputs (tools/fixtures/make_fixtures.py).
@Suite struct FunctionalMatchesPyTorch {
  let ref: [String: Tensor]
  init() throws { ref = try Safetensors.read(Fixture.path("ops_reference.safetensors")).dictionary }

  func close(_ a: Tensor, _ key: String, tol: Float = 1e-5) throws {
    let b = ref[key]!
    #expect(a.shape == b.shape, "\(key)")
    #expect(maxAbsDiff(try a.floats(), try b.floats()) < tol, "\(key)")
  }

  @Test func layerNormGeluSoftmax() throws {
    let x = ref["x"]!
    try close(F.layerNorm(x, shape: [7], weight: ref["ln_w"]!, bias: ref["ln_b"]!, eps: 1e-6), "layer_norm")
    try close(x.gelu(approximate: true), "gelu_tanh")
    try close(x.gelu(), "gelu_erf")
    try close(F.logSoftmax(ref["logits"]!, dim: -1), "log_softmax")
    try close(ref["logits"]!.logSigmoid(), "logsigmoid")
  }

  @Test func attentionWithBooleanMask() throws {
    let mask = try ref["mask"]!.gt(0.5)
    try close(F.scaledDotProductAttention(ref["q"]!, ref["k"]!, ref["v"]!, mask: mask), "sdpa_masked")
  }

  @Test func crossEntropyAndInterpolation() throws {
    let target = try ref["target"]!.to(.int64)
    try close(F.crossEntropy(ref["logits"]!, target), "cross_entropy")
    try close(F.interpolate(ref["x"]!, size: (3, 4), mode: .bicubic, antialias: true), "bicubic_aa")
    try close(F.interpolate(ref["x"]!, size: (9, 11), mode: .bilinear, alignCorners: true), "bilinear_ac")
  }
}

final class TinyMLP: Module {
  @Child("fc1") var fc1: Linear
  @Child("norm") var norm: LayerNorm
  @Child("fc2") var fc2: Linear

  init(generator: Generator) throws {
    super.init()
    fc1 = try Linear(4, 8, generator: generator)
    norm = try LayerNorm(8)
    fc2 = try Linear(8, 3, bias: false, generator: generator)
  }
  func callAsFunction(_ x: Tensor) throws -> Tensor { try fc2(try norm(try fc1(x)).gelu(approximate: true)) }
}

final class Stack: Module {
  @Child("layers") var layers: [TinyMLP]
  @Child("head") var head: Linear?
  @Buffer("position_ids", persistent: false) var positionIds: Tensor
  @Param("logit_scale") var logitScale: Tensor

  init(n: Int, head: Bool, generator: Generator) throws {
    super.init()
    layers = try (0..<n).map { _ in try TinyMLP(generator: generator) }
    self.head = head ? try Linear(3, 2, generator: generator) : nil
    positionIds = try Tensor.arange(0, 4)
    logitScale = try Tensor.scalar(Float(2.3026))
  }
}

@Suite struct ModulesAndAutograd {
  @Test func keysFollowTheDeclarations() throws {
    let m = try Stack(n: 2, head: true, generator: try Generator(seed: 1))
    let keys = m.stateDict().map(\.0)
    #expect(keys == [
      "logit_scale",
      "layers.0.fc1.weight", "layers.0.fc1.bias", "layers.0.norm.weight", "layers.0.norm.bias", "layers.0.fc2.weight",
      "layers.1.fc1.weight", "layers.1.fc1.bias", "layers.1.norm.weight", "layers.1.norm.bias", "layers.1.fc2.weight",
      "head.weight", "head.bias",
    ])
    #expect(m.namedParameters().allSatisfy { $0.1.requiresGrad })
    let noHead = try Stack(n: 1, head: false, generator: try Generator(seed: 1))
    #expect(!noHead.stateDict().contains { $0.0.hasPrefix("head") })
  }

  @Test func gradientsMatchFiniteDifferences() throws {
    let mlp = try TinyMLP(generator: try Generator(seed: 3))
    try mlp.to(device: .cpu, dtype: .float64)
    let x = try Tensor.randn([5, 4], dtype: .float64, generator: try Generator(seed: 4))
    func loss() throws -> Tensor { try mlp(x).square().sum() }
    try loss().backward()
    for (name, p) in mlp.namedParameters() {
      let analytic = try p.grad!.toArray(Double.self)
      let n = p.count
      let flat = try p.reshape([n])
      let eps = 1e-6
      for i in Swift.stride(from: 0, to: n, by: max(1, n / 6)) {
        let element = try flat.narrow(dim: 0, start: i, length: 1)
        let orig = try element.item()
        let plus = try noGrad { try element.fill_(orig + eps); return try loss().item() }
        let minus = try noGrad { try element.fill_(orig - eps); return try loss().item() }
        try noGrad { try element.fill_(orig) }
        let numeric = (plus - minus) / (2 * eps)
        #expect(Swift.abs(numeric - analytic[i]) < 1e-6 * max(1, Swift.abs(numeric)), "\(name)[\(i)]: \(numeric) vs \(analytic[i])")
      }
    }
    try mlp.fc1.weight.zeroGrad()
    #expect(mlp.fc1.weight.grad == nil)
  }

  @Test func noGradAndAutocastScopes() throws {
    let w = try Tensor.ones([3, 3]).requiresGrad(true)
    let y = try noGrad { try w * 2 }
    #expect(!y.requiresGrad)
    #expect(isGradEnabled)
    #expect(try (w * 2).requiresGrad)
    let x = try Tensor.randn([2, 3])
    let out = try autocast(.cpu, dtype: .bfloat16) { try F.linear(x, w) }
    #expect(out.dtype == .bfloat16)
    #expect(!isAutocastEnabled)
    #expect(try F.linear(x, w).dtype == .float32)
  }

  @Test func strictLoadingReportsEveryProblem() throws {
    let m = try Stack(n: 1, head: true, generator: try Generator(seed: 1))
    var sd = Dictionary(uniqueKeysWithValues: m.stateDict().map { ($0.0, try! $0.1.detach().clone()) })
    // A clean load copies values.
    try noGrad { try sd["head.bias"]!.fill_(0.25) }
    let ok = try m.load(stateDict: sd)
    #expect(ok.isClean && ok.loaded == sd.count)
    #expect(try m.head!.bias!.floats() == [0.25, 0.25])
    sd.removeValue(forKey: "layers.0.norm.bias")
    sd["layers.0.extra"] = try Tensor.zeros([1])
    sd["head.weight"] = try Tensor.zeros([5, 5])
    do {
      try m.load(stateDict: sd, source: "bad.safetensors")
      Issue.record("strict load accepted a broken state dict")
    } catch let StateDictError.mismatch(source, report) {
      #expect(source == "bad.safetensors")
      #expect(report.missing == ["layers.0.norm.bias"])
      #expect(report.unexpected == ["layers.0.extra"])
      #expect(report.mismatched == [.init(key: "head.weight", expected: [2, 3], found: [5, 5])])
      let text = StateDictError.mismatch(source: source, report: report).localizedDescription
      #expect(text.contains("layers.0.norm.bias") && text.contains("layers.0.extra") && text.contains("[5, 5]"))
    }
    // Nothing was copied by the failed strict load.
    #expect(try m.head!.weight.shape == [2, 3])
    let partial = try m.load(stateDict: sd, strict: false)
    #expect(partial.loaded == sd.count - 2 && partial.missing.count == 1)
  }
}

@Suite struct SafetensorsFiles {
  @Test func readsWhatPythonWrote() throws {
    let file = try Safetensors.read(Fixture.path("python_written.safetensors"))
    #expect(file.metadata == ["format": "pt", "writer": "safetensors"])
    let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixture.path("python_written.json")))) as! [String: [String: Any]]
    let got = file.dictionary
    #expect(Set(got.keys) == Set(expected.keys))
    let names: [String: DType] = ["float32": .float32, "float16": .float16, "bfloat16": .bfloat16, "int64": .int64, "bool": .bool]
    for (key, e) in expected {
      let t = got[key]!
      #expect(t.dtype == names[e["dtype"] as! String], "\(key)")
      #expect(t.shape == e["shape"] as! [Int], "\(key)")
      let values = (e["values"] as! [NSNumber]).map(\.doubleValue)
      let got = try t.to(.float64).toArray(Double.self)
      #expect(got.count == values.count, "\(key)")
      // JSON decimal text round-trips to the same float32 values (well inside 1e-9 relative).
      #expect(zip(got, values).allSatisfy { Swift.abs($0 - $1) <= 1e-9 * max(1, Swift.abs($1)) }, "\(key)")
    }
  }

  @Test func roundTripsEveryDTypeAndShards() throws {
    let dir = tmpDir()
    let tensors: [(String, Tensor)] = try [
      ("a.f32", Tensor.randn([3, 4])), ("a.f16", Tensor.randn([5]).to(.float16)), ("b.bf16", Tensor.randn([2, 2]).to(.bfloat16)),
      ("c.i64", Tensor([1, -2, 3] as [Int64])), ("c.f64", Tensor([1.5] as [Double])), ("d.bool", Tensor([true, false])),
      ("e.scalar", Tensor.scalar(Float(4))),
    ]
    let path = dir + "/model.safetensors"
    try Safetensors.write(tensors, metadata: ["format": "pt"], to: path)
    let back = try Safetensors.read(path)
    #expect(back.metadata == ["format": "pt"])
    let d = back.dictionary
    for (k, t) in tensors {
      #expect(d[k]!.dtype == t.dtype && d[k]!.shape == t.shape, "\(k)")
      #expect(try d[k]!.bytes() == t.bytes(), "\(k)")
    }
    // Header is 8-byte aligned as the reference writer does.
    let raw = try Data(contentsOf: URL(fileURLWithPath: path))
    #expect(raw.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } % 8 == 0)
    // Sharded: two files and an index.
    try Safetensors.write(Array(tensors[0..<3]), to: dir + "/model-00001-of-00002.safetensors")
    try Safetensors.write(Array(tensors[3...]), to: dir + "/model-00002-of-00002.safetensors")
    var map: [String: String] = [:]
    for (i, (k, _)) in tensors.enumerated() { map[k] = i < 3 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors" }
    let index = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": 1], "weight_map": map])
    try index.write(to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
    try FileManager.default.removeItem(atPath: path)
    let sharded = try Safetensors.load(dir).dictionary
    #expect(Set(sharded.keys) == Set(tensors.map(\.0)))
    #expect(try sharded["c.i64"]!.toArray(Int64.self) == [1, -2, 3])
  }

  @Test func corruptFilesGiveNamedErrors() throws {
    let dir = tmpDir()
    let good = dir + "/good.safetensors"
    try Safetensors.write([("w", try Tensor.randn([16]))], to: good)
    let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
    let truncated = dir + "/truncated.safetensors"
    try bytes.prefix(bytes.count - 10).write(to: URL(fileURLWithPath: truncated))
    expectTorchError("truncated.safetensors") { _ = try Safetensors.read(truncated) }
    expectTorchError("'w'") { _ = try Safetensors.read(truncated) }
    let junk = dir + "/junk.safetensors"
    try Data("hello world, not a tensor file".utf8).write(to: URL(fileURLWithPath: junk))
    expectTorchError("junk.safetensors") { _ = try Safetensors.read(junk) }
    expectTorchError("no such file") { _ = try Safetensors.load(dir + "/absent.safetensors") }
    /// A file of one F32 tensor `w` with this shape, 8 data bytes.
    func file(shape: String, name: String) throws -> String {
      let header = #"{"w":{"dtype":"F32","shape":"# + shape + #","data_offsets":[0,8]}}"#
      var bytes = Data(count: 8)
      bytes.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(header.utf8.count).littleEndian, as: UInt64.self) }
      bytes.append(Data(header.utf8)); bytes.append(Data(count: 8))
      let path = dir + "/" + name
      try bytes.write(to: URL(fileURLWithPath: path))
      return path
    }
    // A header that declares the wrong byte count for its shape.
    let wrong = try file(shape: "[3]", name: "wrong.safetensors")
    expectTorchError("needs 12") { _ = try Safetensors.read(wrong) }
    // Shapes whose byte count overflows are refused without computing it.
    for shape in ["[4611686018427387904,4]", "[2305843009213693952]"] {
      let path = try file(shape: shape, name: "huge.safetensors")
      expectTorchError("needs more bytes than a 64-bit size holds") { _ = try Safetensors.read(path) }
    }
  }
}
