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
