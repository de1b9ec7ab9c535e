import Foundation
import Imaging
import Tokenizers
import Torch

/// Where pretrained weights come from, offline: an explicit local directory, else the Hugging Face
/// hub cache (`HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`, layout
/// `models--org--name/snapshots/<revision>/`).
public enum PretrainedLocator {
  public static func hubCacheDirectories(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
    var dirs: [String] = []
    if let c = environment["HF_HUB_CACHE"] { dirs.append(c) }
    if let h = environment["HF_HOME"] { dirs.append((h as NSString).appendingPathComponent("hub")) }
    let home = environment["HOME"] ?? NSHomeDirectory()
    dirs.append((home as NSString).appendingPathComponent(".cache/huggingface/hub"))
    return dirs
  }

  /// The snapshot directory of `repo` ("google/siglip2-so400m-patch16-256") in the hub cache: the
  /// revision refs/main names, else the most recently modified snapshot.
  public static func cachedSnapshot(repo: String, configFile: String = "config.json",
                                    environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
    let folder = "models--" + repo.replacingOccurrences(of: "/", with: "--")
    let fm = FileManager.default
    for cache in hubCacheDirectories(environment: environment) {
      let root = (cache as NSString).appendingPathComponent(folder)
      let snapshots = (root as NSString).appendingPathComponent("snapshots")
      if let ref = try? String(contentsOfFile: root + "/refs/main", encoding: .utf8) {
        let dir = (snapshots as NSString).appendingPathComponent(ref.trimmingCharacters(in: .whitespacesAndNewlines))
        if fm.fileExists(atPath: dir + "/" + configFile) { return dir }
      }
      let revisions = ((try? fm.contentsOfDirectory(atPath: snapshots)) ?? []).map { (snapshots as NSString).appendingPathComponent($0) }
        .filter { fm.fileExists(atPath: $0 + "/" + configFile) }
      let newest = revisions.max { a, b in
        let da = (try? fm.attributesOfItem(atPath: a)[.modificationDate] as? Date) ?? .distantPast
        let db = (try? fm.attributesOfItem(atPath: b)[.modificationDate] as? Date) ?? .distantPast
        return da < db
      }
      if let newest { return newest }
    }
    return nil
  }

  /// A directory with config.json (or `configFile`): `pretrainedDir` when given, else the hub
  /// cache for `repo`.
  public static func directory(repo: String, pretrainedDir: String?, configFile: String = "config.json") throws -> String {
    if let dir = pretrainedDir {
      var isDir: ObjCBool = false
      guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
        throw PretrainedError.notFound(repo: repo, looked: [dir], hint: "model.pretrained_dir does not exist or is not a directory")
      }
      guard FileManager.default.fileExists(atPath: dir + "/" + configFile) else {
        throw PretrainedError.notFound(repo: repo, looked: [dir], hint: "model.pretrained_dir has no \(configFile)")
      }
      return dir
    }
    if let snap = cachedSnapshot(repo: repo, configFile: configFile) { return snap }
    let looked = hubCacheDirectories().map { ($0 as NSString).appendingPathComponent("models--" + repo.replacingOccurrences(of: "/", with: "--")) }
    throw PretrainedError.notFound(repo: repo, looked: looked,
      hint: "ClipKit never downloads: set model.pretrained_dir to a local copy of \(repo) (config.json, model.safetensors, tokenizer and preprocessor files), or place it in the Hugging Face cache (for example with `huggingface-cli download \(repo)` on a machine with network)")
  }

  /// Every tensor of a model directory: model.safetensors, its sharded index, or a PyTorch
  /// pytorch_model.bin read with the restricted unpickler.
  public static func weights(in dir: String) throws -> [String: Tensor] {
    let fm = FileManager.default
    for name in ["model.safetensors", "model.safetensors.index.json"] where fm.fileExists(atPath: dir + "/" + name) {
      return try Safetensors.load(dir + "/" + name).dictionary
    }
    for name in ["pytorch_model.bin", "open_clip_pytorch_model.bin"] where fm.fileExists(atPath: dir + "/" + name) {
      return try PyTorchCheckpoint.read(dir + "/" + name).tensors
    }
    throw PretrainedError.noWeights(dir: dir)
  }
}

public enum PretrainedError: Error, LocalizedError {
  case notFound(repo: String, looked: [String], hint: String)
  case noWeights(dir: String)

  public var errorDescription: String? {
    switch self {
    case .notFound(let repo, let looked, let hint):
      return "pretrained weights for \(repo) not found (looked in \(looked.joined(separator: ", "))): \(hint)"
    case .noWeights(let dir):
      return "\(dir): no model.safetensors, model.safetensors.index.json or pytorch_model.bin"
    }
  }
}

/// A model directory's preprocessor_config.json as a JSON object (empty when the file is absent:
/// the processor's defaults apply).
func preprocessorJSON(_ dir: String) throws -> [String: Any] {
  let path = dir + "/preprocessor_config.json"
  guard let d = FileManager.default.contents(atPath: path) else { return [:] }
  guard let j = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any] else {
    throw ModelError.config(file: path, reason: "not a JSON object")
  }
  return j
}

/// `image_mean` / `image_std` of a preprocessor_config.json: one value for every channel (a number
/// or a one-value list, as the HF processors and torchvision's Normalize broadcast it) or three;
/// absent or null means the processor's default. Anything else names the file and key.
func channelValues(_ o: [String: Any], _ key: String, file: String, default d: [Double]) throws -> [Double] {
  guard let v = o[key], !(v is NSNull) else { return d }
  if let x = v as? Double { return [x, x, x] }
  guard let list = v as? [Double], list.count == 1 || list.count == 3 else {
    let got = (v as? [Any]).map { "\($0.count) values" } ?? "\(v)"
    throw ModelError.config(file: file, reason: "\(key) needs 1 value (for every channel) or 3 (R, G, B), got \(got)")
  }
  return list.count == 1 ? [list[0], list[0], list[0]] : list
}

/// A size of a preprocessor_config.json (`size.height`, `patch_size`, …): a positive integer
/// small enough that pixel and patch counts built from it cannot overflow.
func positiveSize(_ v: Any?, _ key: String, file: String) throws -> Int? {
  guard let v, !(v is NSNull) else { return nil }
  guard let n = v as? Int, n >= 1 && n <= 1 << 16 else {
    throw ModelError.config(file: file, reason: "\(key) must be an integer in 1...65536, got \(v)")
  }
  return n
}

/// preprocessor_config.json of a Hugging Face image processor.
public struct ImageProcessorConfig: Sendable {
  public var transform: ImageTransform

  public static func load(_ dir: String, defaultSize: Int) throws -> ImageProcessorConfig {
    let o = try preprocessorJSON(dir)
    let file = dir + "/preprocessor_config.json"
    var resize = ImageTransform.Resize.squash(width: defaultSize, height: defaultSize)
    if let size = o["size"] as? [String: Any] {
      if let h = try positiveSize(size["height"], "size.height", file: file), let w = try positiveSize(size["width"], "size.width", file: file) {
        resize = .squash(width: w, height: h)
      } else if let s = try positiveSize(size["shortest_edge"], "size.shortest_edge", file: file) {
        resize = .shortestTorchvision(size: s)
      }
    } else if let s = try positiveSize(o["size"], "size", file: file) {
      resize = .squash(width: s, height: s)
    }
    let resample = (o["resample"] as? Int).flatMap(ResampleFilter.init(pillowCode:)) ?? .bicubic
    let rescale = (o["do_rescale"] as? Bool) == false ? 1.0 : ((o["rescale_factor"] as? Double) ?? 1.0 / 255)
    let normalize = (o["do_normalize"] as? Bool) ?? true
    let mean = normalize ? try channelValues(o, "image_mean", file: file, default: [0.5, 0.5, 0.5]) : [0, 0, 0]
    let std = normalize ? try channelValues(o, "image_std", file: file, default: [0.5, 0.5, 0.5]) : [1, 1, 1]
    return ImageProcessorConfig(transform: ImageTransform(resize: resize, filter: resample, mean: mean, std: std, rescale: rescale))
  }
}

/// preprocessor_config.json of a Siglip2ImageProcessor (NaFlex).
public struct NaFlexProcessorConfig: Sendable {
  public var transform: NaFlexTransform

  public static func load(_ dir: String) throws -> NaFlexProcessorConfig {
    let o = try preprocessorJSON(dir)
    let file = dir + "/preprocessor_config.json"
    // Siglip2ImageProcessor's defaults: patch 16, 256 patches, bilinear, mean/std 0.5.
    let resample = (o["resample"] as? Int).flatMap(ResampleFilter.init(pillowCode:)) ?? .bilinear
    let normalize = (o["do_normalize"] as? Bool) ?? true
    let patch = try positiveSize(o["patch_size"], "patch_size", file: file) ?? 16
    let maxPatches = try positiveSize(o["max_num_patches"], "max_num_patches", file: file) ?? 256
    // One image's patch buffer holds max_num_patches × 3·P² floats.
    guard maxPatches * 3 * patch * patch <= Int(Int32.max) else {
      throw ModelError.config(file: file, reason: "max_num_patches=\(maxPatches) patches of \(patch)×\(patch) pixels are more than 2^31 values per image")
    }
    return NaFlexProcessorConfig(transform: NaFlexTransform(
      patchSize: patch, maxNumPatches: maxPatches, filter: resample,
      mean: normalize ? try channelValues(o, "image_mean", file: file, default: [0.5, 0.5, 0.5]) : [0, 0, 0],
      std: normalize ? try channelValues(o, "image_std", file: file, default: [0.5, 0.5, 0.5]) : [1, 1, 1],
      rescale: (o["do_rescale"] as? Bool) == false ? 1.0 : ((o["rescale_factor"] as? Double) ?? 1.0 / 255)))
  }
}
