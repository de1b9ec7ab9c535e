import Foundation

public enum DataError: Error, LocalizedError {
  case input(String)
  public var errorDescription: String? { if case .input(let m) = self { return m }; return nil }
}

/// Where a sample's image bytes live: a file, or a member of a tar shard.
public enum ImageSource: Sendable, Equatable, Codable {
  case file(String)
  case member(shard: String, offset: UInt64, size: Int, name: String)

  public var name: String {
    switch self {
    case .file(let p): return p
    case .member(let s, _, _, let n): return "\(ShardLocation.display(s)):\(n)"
    }
  }

  public func bytes() throws -> [UInt8] {
    switch self {
    case .file(let p):
      guard let d = FileManager.default.contents(atPath: p) else { throw DataError.input("\(p): cannot read file") }
      return [UInt8](d)
    case .member(let shard, let offset, let size, let name) where ShardLocation.isRemote(shard):
      return try RemoteReads.shared.read(shard: shard, offset: offset, size: size, name: name)
    case .member(let shard, let offset, let size, let name):
      guard let h = FileHandle(forReadingAtPath: shard) else { throw DataError.input("\(shard): cannot open shard") }
      defer { try? h.close() }
      try h.seek(toOffset: offset)
      let d = try h.read(upToCount: size) ?? Data()
      guard d.count == size else { throw DataError.input("\(shard): member \(name) is truncated") }
      return [UInt8](d)
    }
  }
}

public struct Pair: Sendable, Codable {
  public var image: ImageSource
  public var caption: String
  public init(image: ImageSource, caption: String) { self.image = image; self.caption = caption }
}

/// What a dataset scan kept and skipped.
public struct PairSet: Sendable, Codable {
  public var pairs: [Pair] = []
  /// Images without a caption file, or with an empty one.
  public var skippedCaptions = 0
  /// Shards that ended early or could not be read.
  public var brokenShards: [String] = []
  /// What is wrong with each broken shard (truncated, a corrupt header, …), by path.
  public var damage: [String: String] = [:]
  /// Shards that could not be opened at all (a missing key, a refused request, …): no sample of
  /// theirs is known. Their reasons are in `damage` too.
  public var unopened: [String] = []
}

/// One dataset entry of the custom layout (TAO's DataPath).
public struct CustomDataset: Sendable {
  public var imageDir: String
  public var imageListFile: String?
  public var captionDir: String?
  public var captionSuffix: String
  public init(imageDir: String, imageListFile: String?, captionDir: String?, captionSuffix: String) {
    self.imageDir = imageDir
    self.imageListFile = imageListFile
    self.captionDir = captionDir
    self.captionSuffix = captionSuffix
  }
}

/// Which files a custom-layout directory contributes, and how captions are named.
public struct CustomLayoutRules: Sendable {
  public var extensions: Set<String>
  /// TAO Deploy names a listed image's caption by its file stem alone (sub-directories dropped).
  public var flattenCaptionPaths: Bool
  /// TAO PyTorch's loader.
  public static let training = CustomLayoutRules(extensions: ["jpg", "jpeg", "png", "webp"], flattenCaptionPaths: false)
  /// TAO Deploy's evaluate (dclip dataloader).
  public static let deploy = CustomLayoutRules(extensions: ["jpg", "jpeg", "png", "bmp"], flattenCaptionPaths: true)
}

/// The custom layout: every image with one of the rules' extensions in image_dir (or the
/// image_list_file entries, sorted as listed) whose caption file (caption_dir or beside the image,
/// stem + suffix) exists and is not empty; several datasets concatenated.
public func customPairs(_ datasets: [CustomDataset], section: String, rules: CustomLayoutRules = .training) throws -> PairSet {
  var out = PairSet()
  for (i, d) in datasets.enumerated() {
    var names: [String]
    if let list = d.imageListFile {
      guard let text = try? String(contentsOfFile: list, encoding: .utf8) else {
        throw DataError.input("\(section).\(i).image_list_file \(list) cannot be read")
      }
      names = text.components(separatedBy: .newlines).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    } else {
      var isDir: ObjCBool = false
      guard FileManager.default.fileExists(atPath: d.imageDir, isDirectory: &isDir), isDir.boolValue else {
        throw DataError.input("\(section).\(i).image_dir \(d.imageDir) does not exist or is not a directory")
      }
      names = try FileManager.default.contentsOfDirectory(atPath: d.imageDir)
        .filter { rules.extensions.contains(($0 as NSString).pathExtension.lowercased()) }
        .sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
    }
    let captionDir = d.captionDir ?? d.imageDir
    for name in names {
      let stem = rules.flattenCaptionPaths ? ((name as NSString).lastPathComponent as NSString).deletingPathExtension
        : (name as NSString).deletingPathExtension
      let captionPath = (captionDir as NSString).appendingPathComponent(stem + d.captionSuffix)
      guard let raw = try? String(contentsOfFile: captionPath, encoding: .utf8) else { out.skippedCaptions += 1; continue }
      let caption = raw.trimmingCharacters(in: .whitespacesAndNewlines)
      if caption.isEmpty { out.skippedCaptions += 1; continue }
      out.pairs.append(Pair(image: .file((d.imageDir as NSString).appendingPathComponent(name)), caption: caption))
    }
  }
  return out
}
