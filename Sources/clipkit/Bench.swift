import ArgumentParser
import Foundation
import Imaging

/// Benchmarks that print figures a user can reproduce (see the README's "Benchmarks").
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Measure ClipKit's own throughput (image pipeline).",
    subcommands: [BenchImages.self])
}

struct BenchImages: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "images",
    abstract: "Decode + resize + normalise every image of a folder on one thread; prints images/s.")

  @Argument(help: "Folder of images (searched recursively).") var folder: String
  @Option(help: "Output side length (squash resize).") var size = 256
  @Option(help: "Resampling filter: nearest, box, bilinear, hamming, bicubic, lanczos.") var filter = "bicubic"
  @Flag(help: "Decode JPEGs at reduced DCT scale first, as Pillow's Image.draft().") var draft = false
  @Option(help: "Passes over the folder (the first also warms the file cache).") var repeats = 3

  func run() throws {
    let filters: [String: ResampleFilter] = ["nearest": .nearest, "box": .box, "bilinear": .bilinear,
                                             "hamming": .hamming, "bicubic": .bicubic, "lanczos": .lanczos]
    guard let f = filters[filter] else { throw ValidationError("unknown filter '\(filter)'") }
    let files = try imageFiles(in: folder)
    guard !files.isEmpty else { throw ValidationError("no images under \(folder)") }
    let transform = ImageTransform(resize: .squash(width: size, height: size), filter: f, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])
    let decoder = ImageDecoder()
    var best = Double.infinity
    var pixels = 0
    for _ in 0..<repeats {
      let start = DispatchTime.now().uptimeNanoseconds
      pixels = 0
      for path in files {
        let img = try decoder.decode(file: path, draft: draft ? (size, size) : nil)
        pixels += img.width * img.height
        let out = transform(img)
        precondition(out.count == 3 * size * size)
      }
      best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    print(String(format: "clipkit  %d images, %.1f MP decoded, %@ %dx%d%@: %.1f images/s (best of %d, 1 thread)",
                 files.count, Double(pixels) / 1e6, filter, size, size, draft ? ", draft" : "",
                 Double(files.count) / best, repeats))
  }
}

/// Image files under a folder, recursively, sorted (the extensions `clipkit inference` reads).
func imageFiles(in folder: String) throws -> [String] {
  var isDir: ObjCBool = false
  guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
    throw ValidationError("\(folder) is not a directory")
  }
  let exts: Set<String> = ["jpg", "jpeg", "png", "bmp", "gif", "webp"]
  var out: [String] = []
  let e = FileManager.default.enumerator(atPath: folder)
  while let rel = e?.nextObject() as? String {
    if exts.contains((rel as NSString).pathExtension.lowercased()) { out.append((folder as NSString).appendingPathComponent(rel)) }
  }
  return out.sorted()
}
