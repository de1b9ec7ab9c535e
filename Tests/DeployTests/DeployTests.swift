import Foundation
import Testing
@testable import Deploy

let deployFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

@Suite struct TensorRTProfiles {
  @Test func readsONNXInputs() throws {
    let inputs = try ONNXInputs.read(deployFixtures + "/dynamic_batch.onnx")
    #expect(inputs == [
      .init(name: "image", dims: [.symbolic("batch_size"), .fixed(3), .fixed(224), .fixed(224)]),
      .init(name: "input_ids", dims: [.symbolic("batch_size"), .fixed(64)]),
      .init(name: "attention_mask", dims: [.symbolic("batch_size"), .fixed(64)]),
    ])
  }

  @Test func oneProfileOverEveryInput() throws {
    let inputs = try ONNXInputs.read(deployFixtures + "/dynamic_batch.onnx")
    var b = TensorRTBuild(onnx: "m.onnx", engine: "m.engine", minBatch: 1, optBatch: 8, maxBatch: 16, fixedBatch: -1, fp16: true,
                          workspaceMB: 4096, timingCache: "cache.bin", layerPrecisions: ["head*:fp32"], verbose: false)
    #expect(try b.arguments(for: inputs) == [
      "--onnx=m.onnx", "--saveEngine=m.engine", "--memPoolSize=workspace:4096M",
      "--minShapes=image:1x3x224x224,input_ids:1x64,attention_mask:1x64",
      "--optShapes=image:8x3x224x224,input_ids:8x64,attention_mask:8x64",
      "--maxShapes=image:16x3x224x224,input_ids:16x64,attention_mask:16x64",
      "--fp16", "--timingCacheFile=cache.bin", "--precisionConstraints=obey", "--layerPrecisions=head*:fp32",
    ])
    b.fixedBatch = 4
    b.fp16 = false
    b.timingCache = nil
    b.layerPrecisions = []
    let fixed = try b.arguments(for: inputs)
    #expect(fixed.contains("--minShapes=image:4x3x224x224,input_ids:4x64,attention_mask:4x64") && !fixed.contains("--fp16"))
    b.minBatch = 9
    #expect(throws: DeployError.self) { try b.arguments(for: inputs) }
  }

  /// gen_trt_engine.gpu_id: trtexec's --device, and the Python builder sees only that GPU.
  @Test func gpuIdSelectsTheBuildDevice() throws {
    let inputs = try ONNXInputs.read(deployFixtures + "/dynamic_batch.onnx")
    let b = TensorRTBuild(onnx: "m.onnx", engine: "m.engine", minBatch: 1, optBatch: 1, maxBatch: 1, fixedBatch: -1, fp16: false,
                          workspaceMB: 64, timingCache: nil, layerPrecisions: [], verbose: false, gpu: 2)
    #expect(try b.arguments(for: inputs).last == "--device=2")
    #expect(TensorRTBuilder.environment(selecting: 2, ["PATH": "/bin"])["CUDA_VISIBLE_DEVICES"] == "2")
    #expect(TensorRTBuilder.environment(selecting: 1, ["CUDA_VISIBLE_DEVICES": "4, 6"])["CUDA_VISIBLE_DEVICES"] == "6")
    #expect(TensorRTBuilder.environment(selecting: 0, ["PATH": "/bin"])["CUDA_VISIBLE_DEVICES"] == nil)
  }

  @Test func withoutPrecisionFlagsTheGraphCarriesThePrecision() throws {
    // TensorRT 11: no --fp16 / --layerPrecisions (the graph was converted), same profile.
    let inputs = try ONNXInputs.read(deployFixtures + "/dynamic_batch.onnx")
    let b = TensorRTBuild(onnx: "typed.onnx", engine: "m.engine", minBatch: 2, optBatch: 4, maxBatch: 8, fixedBatch: -1, fp16: true,
                          workspaceMB: 512, timingCache: "tc", layerPrecisions: ["x:fp32"], verbose: true)
    #expect(try b.arguments(for: inputs, precisionFlags: false) == [
      "--onnx=typed.onnx", "--saveEngine=m.engine", "--memPoolSize=workspace:512M",
      "--minShapes=image:2x3x224x224,input_ids:2x64,attention_mask:2x64",
      "--optShapes=image:4x3x224x224,input_ids:4x64,attention_mask:4x64",
      "--maxShapes=image:8x3x224x224,input_ids:8x64,attention_mask:8x64",
      "--timingCacheFile=tc", "--verbose",
    ])
    // The Python builder gets the same profile as JSON.
    for flags in [true, false] {
      let json = try b.pythonConfig(for: inputs, precisionFlags: flags)
      let o = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
      let profile = o["profile"] as! [[String: Any]]
      #expect(profile.map { $0["name"] as! String } == ["image", "input_ids", "attention_mask"])
      #expect(profile[0]["min"] as! [Int] == [2, 3, 224, 224] && profile[1]["opt"] as! [Int] == [4, 64] && profile[2]["max"] as! [Int] == [8, 64])
      #expect(o["fp16"] as! Bool == flags && o["workspace_mb"] as! Int == 512 && o["timing_cache"] as! String == "tc")
      #expect((o["layer_precisions"] as! [[String]]) == (flags ? [["x", "fp32"]] : []))
    }
  }

  @Test func onlyTheBatchAxisMayBeDynamic() throws {
    let inputs = try ONNXInputs.read(deployFixtures + "/dynamic_height.onnx")
    let b = TensorRTBuild(onnx: "m.onnx", engine: "e", minBatch: 1, optBatch: 1, maxBatch: 2, fixedBatch: -1, fp16: false,
                          workspaceMB: 1024, timingCache: nil, layerPrecisions: [], verbose: false)
    do { _ = try b.arguments(for: inputs); Issue.record("accepted a dynamic height") } catch {
      #expect(error.localizedDescription.contains("'height'"))
    }
    #expect(throws: DeployError.self) { try ONNXInputs.read(deployFixtures + "/../DeployTests.swift") }
  }

  /// ONNX bytes written field by field: a model whose one input has these dim_values.
  func model(input name: String, dims: [Int64]) -> [UInt8] {
    func varint(_ v: UInt64) -> [UInt8] {
      var v = v, out: [UInt8] = []
      repeat { out.append(UInt8(v & 0x7F) | (v > 0x7F ? 0x80 : 0)); v >>= 7 } while v > 0
      return out
    }
    func bytes(_ field: UInt64, _ b: [UInt8]) -> [UInt8] { varint(field << 3 | 2) + varint(UInt64(b.count)) + b }
    func int(_ field: UInt64, _ v: Int64) -> [UInt8] { varint(field << 3) + varint(UInt64(bitPattern: v)) }
    let shape = dims.flatMap { bytes(1, int(1, $0)) }
    let type = bytes(1, int(1, 1) + bytes(2, shape))
    return bytes(7, bytes(11, bytes(1, Array(name.utf8)) + bytes(2, type)))
  }

  /// A negative dim_value (a ten-byte varint past Int.max) names the input; a length past Int.max
  /// is a malformed file.
  @Test func negativeDimensionsAndHugeLengthsAreErrors() throws {
    let dir = NSTemporaryDirectory() + "clipkit-onnx-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try Data(model(input: "image", dims: [1, 3, 224, 224])).write(to: URL(fileURLWithPath: dir + "/ok.onnx"))
    #expect(try ONNXInputs.read(dir + "/ok.onnx") == [.init(name: "image", dims: [.fixed(1), .fixed(3), .fixed(224), .fixed(224)])])
    try Data(model(input: "image", dims: [1, 3, -224, 224])).write(to: URL(fileURLWithPath: dir + "/neg.onnx"))
    let neg = #expect(throws: DeployError.self) { try ONNXInputs.read(dir + "/neg.onnx") }
    #expect(neg?.localizedDescription == "\(dir)/neg.onnx: input 'image' has a negative dimension (dim_value -224)")
    for length: [UInt8] in [[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]] {
      try Data([0x3A] + length + [1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/long.onnx"))
      let long = #expect(throws: DeployError.self) { try ONNXInputs.read(dir + "/long.onnx") }
      #expect(long?.localizedDescription.contains("long.onnx: malformed protobuf") == true)
    }
  }

  @Test func trtexecLookupHonoursTheOverride() throws {
    #expect(TensorRTBuild.findTrtexec(environment: ["PATH": "/nonexistent"]) == nil || FileManager.default.fileExists(atPath: "/usr/src/tensorrt/bin/trtexec"))
    let fake = NSTemporaryDirectory() + "trtexec-\(UUID().uuidString)"
    FileManager.default.createFile(atPath: fake, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755])
    #expect(TensorRTBuild.findTrtexec(environment: ["CLIPKIT_TRTEXEC": fake]) == fake)
  }
}

/// TAO Deploy's model discovery rules (tao-spec-reference §7.2) on files in a temporary tree.
@Suite struct ModelDiscovery {
  func tree(_ files: [String], dirs: [String] = []) throws -> String {
    let root = NSTemporaryDirectory() + "clipkit-discovery-\(UUID().uuidString)"
    for d in dirs + ["."] { try FileManager.default.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true) }
    for f in files {
      try FileManager.default.createDirectory(atPath: (root + "/" + f as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
      FileManager.default.createFile(atPath: root + "/" + f, contents: Data())
    }
    return root
  }

  @Test func directoryPrefersAPairThenACombinedModel() throws {
    let r = try tree(["m/a_vision.onnx", "m/a_text.onnx", "m/a_config.yaml"], dirs: ["m/a_tokenizer"])
    let f = try DeployedFiles.discover(r + "/m")
    #expect(f.vision == r + "/m/a_vision.onnx" && f.text == r + "/m/a_text.onnx" && f.combined == nil)
    #expect(f.config == r + "/m/a_config.yaml" && f.tokenizer == r + "/m/a_tokenizer")
    let c = try tree(["m/b.onnx", "m/b_vision.onnx", "m/b_config.yaml"], dirs: ["m/b_tokenizer"])
    #expect(try DeployedFiles.discover(c + "/m").combined == c + "/m/b.onnx")
  }

  @Test func aTowerFileFindsItsPartnerAndABasePathItsPair() throws {
    let r = try tree(["e/x_vision.engine", "e/x_text.engine", "export/x_config.yaml"], dirs: ["export/x_tokenizer"])
    let f = try DeployedFiles.discover(r + "/e/x_text.engine")
    #expect(f.vision == r + "/e/x_vision.engine" && f.text == r + "/e/x_text.engine")
    // Sidecars come from ../export when they are not beside the engine.
    #expect(f.config == r + "/export/x_config.yaml" && f.tokenizer == r + "/export/x_tokenizer")
    let base = try DeployedFiles.discover(r + "/e/x.engine")
    #expect(base.vision == r + "/e/x_vision.engine" && base.text == r + "/e/x_text.engine" && base.combined == nil)
    let alone = try tree(["v/y_vision.onnx", "v/y_config.yaml"], dirs: ["v/y_tokenizer"])
    let a = try DeployedFiles.discover(alone + "/v/y_vision.onnx")
    #expect(a.vision != nil && a.text == nil)
  }

  @Test func missingModelsAndSidecarsNameWhatIsMissing() throws {
    let r = try tree(["m/z.onnx"])
    #expect(throws: DeployError.self) { try DeployedFiles.discover(r + "/m/nothing.onnx") }
    do { _ = try DeployedFiles.discover(r + "/m/z.onnx"); Issue.record("no error without sidecars") } catch {
      #expect("\(error.localizedDescription)".contains("_config.yaml"))
    }
  }
}

/// The TensorRT helper's replies, from a stand-in helper (a shell script as CLIPKIT_PYTHON).
@Suite struct TensorRTHelperReplies {
  /// A helper that announces inputs/outputs, then answers each request with the next reply line
  /// (and the bytes after it), after reading the request line and its `inputBytes` bytes.
  func helper(_ replies: [String], inputBytes: Int) throws -> (engine: String, env: [String: String]) {
    let dir = NSTemporaryDirectory() + "clipkit-helper-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    var script = """
      #!/bin/sh
      echo '{"inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 2]}], "outputs": [{"name": "a", "dtype": "float32", "shape": [-1]}, {"name": "b", "dtype": "float32", "shape": [-1]}]}'

      """
    for r in replies { script += "read line\nhead -c \(inputBytes) >/dev/null\nprintf '\(r)'\n" }
    script += "read line\n"
    FileManager.default.createFile(atPath: dir + "/python", contents: Data(script.utf8), attributes: [.posixPermissions: 0o755])
    FileManager.default.createFile(atPath: dir + "/m.engine", contents: Data([0]))
    return (dir + "/m.engine", ["CLIPKIT_PYTHON": dir + "/python"])
  }

  @Test func aReplyMissingAnOutputOrWithABadShapeIsAnError() throws {
    let x = HostTensor(dtype: "float32", shape: [1, 2], data: Data(count: 8))
    let one = #"{"outputs": [{"name": "a", "dtype": "float32", "shape": [1]}]}\n\000\000\200\077"#
    let (path, env) = try helper([one, one, #"{"outputs": [{"name": "a", "dtype": "float32", "shape": [-3]}]}\n"#], inputBytes: 8)
    let engine = try TensorRTEngine(path: path, environment: env)
    #expect(engine.outputs.map(\.name) == ["a", "b"])
    // Asked for a and b, the reply holds only a: an error naming b; the stream stays in step.
    let missing = #expect(throws: DeployError.self) { try engine.run(["x": x], outputs: ["a", "b"]) }
    #expect(missing?.localizedDescription == "\(path): the TensorRT helper's reply has no output 'b' (it sent [\"a\"])")
    let a = try engine.run(["x": x], outputs: ["a"])
    #expect(a["a"]?.shape == [1] && a["a"]?.data == Data([0, 0, 0x80, 0x3F]))
    // A negative shape cannot size the bytes that follow: the helper is stopped.
    let bad = #expect(throws: DeployError.self) { try engine.run(["x": x], outputs: ["a"]) }
    #expect(bad?.localizedDescription.contains("output a has an invalid shape [-3]") == true, "\(String(describing: bad))")
    let after = #expect(throws: DeployError.self) { try engine.run(["x": x], outputs: ["a"]) }
    #expect(after?.localizedDescription.contains("stopped after an earlier error") == true)
    // Inputs whose shape does not match their bytes (or overflows) never reach the helper.
    let wrong = HostTensor(dtype: "float32", shape: [Int.max, 2], data: Data(count: 8))
    #expect(throws: DeployError.self) { try engine.run(["x": wrong], outputs: ["a"]) }
  }
}
