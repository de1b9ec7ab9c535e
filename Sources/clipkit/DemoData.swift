import ArgumentParser
import Foundation
import Imaging

/// `clipkit demo-data DIR`: a small generated image-caption set in TAO's custom layout (coloured
/// shapes with matching captions), for the README's main command and for trying a spec end to end.
struct DemoData: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "demo-data",
    abstract: "Generate coloured-shape images with captions (custom layout: train/ and val/ folders).")

  @Argument(help: "Output folder.") var folder: String
  @Option(help: "Training images per colour-shape combination.") var perClass = 24
  @Option(help: "Image side in pixels.") var size = 32
  @Option(help: "Random seed.") var seed: UInt64 = 7

  static let colors: [(String, (UInt8, UInt8, UInt8))] = [
    ("red", (220, 30, 30)), ("green", (30, 170, 40)), ("blue", (30, 60, 220)), ("yellow", (235, 215, 30)),
    ("purple", (140, 40, 180)), ("orange", (245, 140, 20)), ("black", (20, 20, 20)), ("white", (245, 245, 245)),
  ]
  static let shapes = ["circle", "horizontal bar", "vertical bar"]

  func run() throws {
    var rng = SeededRandom(seed: seed)
    var written = 0
    for split in ["train", "val"] {
      let dir = folder + "/" + split
      try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
      let count = split == "train" ? perClass : 1
      for (ci, color) in Self.colors.enumerated() {
        for (si, shape) in Self.shapes.enumerated() {
          for k in 0..<count {
            let img = DemoData.draw(shape: shape, color: color.1, size: size, rng: &rng)
            let stem = "\(split)_\(ci)\(si)_\(String(format: "%03d", k))"
            try img.writePNG(dir + "/" + stem + ".png")
            try "a \(color.0) \(shape)".write(toFile: dir + "/" + stem + ".txt", atomically: true, encoding: .utf8)
            written += 1
          }
        }
      }
    }
    print("Wrote \(written) image-caption pairs (\(Self.colors.count * Self.shapes.count) colour-shape combinations) under \(folder)/train and \(folder)/val")
  }

  static func draw(shape: String, color: (UInt8, UInt8, UInt8), size s: Int, rng: inout SeededRandom) -> RGBImage {
    // Grey background with noise; the shape at a random place and scale.
    let bg = UInt8(90 + Int.random(in: 0..<80, using: &rng))
    var img = RGBImage(width: s, height: s, fill: bg)
    for i in 0..<img.pixels.count { img.pixels[i] = UInt8(clamping: Int(img.pixels[i]) + Int.random(in: -10...10, using: &rng)) }
    let r = Double(s) * (0.26 + 0.12 * Double.random(in: 0..<1, using: &rng))
    let cx = r + (Double(s) - 2 * r) * Double.random(in: 0..<1, using: &rng), cy = r + (Double(s) - 2 * r) * Double.random(in: 0..<1, using: &rng)
    for y in 0..<s {
      for x in 0..<s {
        let dx = Double(x) + 0.5 - cx, dy = Double(y) + 0.5 - cy
        let inside: Bool
        switch shape {
        case "circle": inside = dx * dx + dy * dy <= r * r
        case "horizontal bar": inside = abs(dy) <= r * 0.35 && abs(dx) <= r * 1.2
        default: inside = abs(dx) <= r * 0.35 && abs(dy) <= r * 1.2
        }
        if inside {
          let o = (y * s + x) * 3
          img.pixels[o] = color.0; img.pixels[o + 1] = color.1; img.pixels[o + 2] = color.2
        }
      }
    }
    return img
  }
}
