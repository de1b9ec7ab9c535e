import Data
import Export
import Foundation
import Imaging
import ServeAPI
import Spec
import Tokenizers
import Torch

/// Every parser of untrusted bytes, one entry per fuzz target. Each takes arbitrary bytes and must
/// return (an error thrown by the parser is a correct answer) without trapping, crashing,
/// corrupting memory or hanging. `scripts/fuzz.sh` runs them under libFuzzer with AddressSanitizer;
/// the tests replay the inputs that once crashed (Tests/FuzzTests/Regressions/<target>/).
public enum FuzzTarget: String, CaseIterable, Sendable {
  case pickle       // restricted unpickler (data.pkl)
  case pth          // torch.save zip archive + unpickler + storages
  case safetensors  // header JSON, offsets, dtypes
  case tar          // WebDataset shard index + member reads (seeking, and streamed as remote shards are)
  case shardURL     // shard-list lines (URL parsing, redaction), then AWS config/credentials files after a NUL
  case image        // JPEG, PNG, WebP, BMP and GIF decoders (chosen by magic bytes)
  case tokenizer    // tokenizer.json loading + encoding
  case spec         // YAML spec, then `key=value` overrides after a NUL byte
  case onnx         // ONNX protobuf as deploy loads it, then one run on small inputs
  case embeddingsRequest  // `clipkit serve`'s POST /v1/embeddings body (JSON, data URLs, base64)

  /// Runs one input; returns whether the parser accepted it.
  @discardableResult
  public func run(_ bytes: [UInt8]) -> Bool {
    do {
      try body(bytes)
      return true
    } catch {
      _ = "\(error)"  // rendering the message is part of the contract: it must not trap either
      return false
    }
  }

  private func body(_ bytes: [UInt8]) throws {
    switch self {
    case .pickle:
      _ = try PyTorchCheckpoint.unpickle(bytes, file: "fuzz.pkl") { dtype, _, count in
        guard count >= 0, count <= 1 << 16 else { throw FuzzInputTooLarge() }
        return try Tensor.zeros([count], dtype: dtype)
      }
    case .pth:
      _ = try PyTorchCheckpoint.read(try FuzzTarget.file(bytes, ext: "pth"))
    case .safetensors:
      _ = try Safetensors.read(try FuzzTarget.file(bytes, ext: "safetensors"))
    case .tar:
      let path = try FuzzTarget.file(bytes, ext: "tar")
      let set = WebDataset.index([path])
      for p in set.pairs { _ = try? p.image.bytes() }
      let streamed = WebDataset.indexStreamed(path)
      precondition(streamed.pairs.map(\.caption) == set.pairs.map(\.caption), "streamed and seeking scans disagree")
    case .shardURL:
      let cut = bytes.firstIndex(of: 0) ?? bytes.count
      for line in String(decoding: bytes[..<cut], as: UTF8.self).split(separator: "\n") {
        _ = ShardLocation.display(String(line))
        _ = try? ShardLocation.parse(String(line))
      }
      if cut < bytes.count {
        let config = try FuzzTarget.file(Array(bytes[(cut + 1)...]), ext: "ini")
        let aws = AWSEnvironment(["AWS_SHARED_CREDENTIALS_FILE": config, "AWS_CONFIG_FILE": config, "AWS_PROFILE": "p", "HOME": "/nonexistent"])
        _ = (aws.credentials(), aws.region(), aws.endpoint())
      }
    case .image:
      let decoder = ImageDecoder(maxPixels: 1 << 18)  // keeps each run fast; the limit path is checked too
      let img = try decoder.decode(bytes: bytes, name: "fuzz")
      precondition(img.pixels.count == img.width * img.height * 3, "decoder returned \(img.pixels.count) bytes for \(img.width)x\(img.height)")
      if ImageDecoder.format(of: bytes) == .jpeg { _ = try decoder.decode(bytes: bytes, name: "fuzz", draft: (16, 16)) }
    case .tokenizer:
      let t = try Tokenizer(tokenizerJSON: try FuzzTarget.file(bytes, ext: "json"))
      _ = try t(["a photo of a cat.", "Ünïcödé 東京 <pad> 123"], maxLength: 16)
      _ = t.decode([0, 1, 2, 3, 5000])
    case .spec:
      let cut = bytes.firstIndex(of: 0) ?? bytes.count
      let yaml = String(decoding: bytes[..<cut], as: UTF8.self)
      let overrides = cut < bytes.count
        ? String(decoding: bytes[(cut + 1)...], as: UTF8.self).split(separator: "\n").map(String.init) : []
      let spec = try Spec.load(yaml: yaml, name: "fuzz.yaml", overrides: overrides)
      _ = try spec.config()
      _ = spec.yaml()
    case .onnx:
      let exe = try ONNXExecutor(path: try FuzzTarget.file(bytes, ext: "onnx"))
      var feeds: [String: Tensor] = [:]
      for input in exe.inputs {
        let shape = input.dims.map { $0 ?? 2 }
        guard shape.count <= 8, shape.allSatisfy({ $0 >= 0 && $0 <= 64 }), shape.reduce(1, *) <= 1 << 16 else { return }
        feeds[input.name] = try Tensor.zeros(shape, dtype: input.name.contains("ids") || input.name.contains("mask") ? .int64 : .float32)
      }
      _ = try exe.run(feeds)
    case .embeddingsRequest:
      let r = try EmbeddingsRequest.parse(Data(bytes), servedModel: "m")
      precondition((1...EmbeddingsRequest.maxItems).contains(r.inputs.count) && r.model == "m", "accepted \(r.inputs.count) items")
      for case .text(let t) in r.inputs { precondition(!t.isEmpty && t == t.trimmingCharacters(in: .whitespacesAndNewlines)) }
      for case .image(let b) in r.inputs { precondition(!b.isEmpty) }
    }
  }

  struct FuzzInputTooLarge: Error {}

  /// The bytes as a file (the parsers read paths): one per process and extension, in memory where
  /// /dev/shm exists.
  static func file(_ bytes: [UInt8], ext: String) throws -> String {
    let dir = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    let path = "\(dir)/clipkit-fuzz-\(getpid()).\(ext)"
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
  }
}
