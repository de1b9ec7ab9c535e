import Foundation
import Paths

/// TAO Deploy's model discovery (`create_clip_inferencer`, tao-spec-reference §7.2), for `.engine`
/// and `.onnx` files alike, and the lookup of the `_config.yaml` / `_tokenizer` sidecars.
public struct DeployedFiles: Equatable, Sendable {
  public var combined: String?
  public var vision: String?
  public var text: String?
  public var config: String
  public var tokenizer: String

  public var all: [String] { [combined, vision, text].compactMap { $0 } }

  public static func discover(_ path: String) throws -> DeployedFiles {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    var combined: String?, vision: String?, text: String?
    func stemExt(_ p: String) -> (String, String) {
      let ext = (p as NSString).pathExtension
      return ((p as NSString).deletingPathExtension, ext.isEmpty ? "" : "." + ext)
    }
    if fm.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
      let names = ((try? fm.contentsOfDirectory(atPath: path)) ?? []).sorted()
      // Runnable ONNX first, then engines.
      for ext in [".onnx", ".engine"] {
        let files = names.filter { $0.hasSuffix(ext) }.map { path + "/" + $0 }
        let v = files.first { $0.hasSuffix("_vision" + ext) }, t = files.first { $0.hasSuffix("_text" + ext) }
        if v != nil && t != nil { vision = v; text = t; break }
        if let c = files.first(where: { !$0.hasSuffix("_vision" + ext) && !$0.hasSuffix("_text" + ext) }) { combined = c; break }
        if v != nil || t != nil { vision = v; text = t; break }
      }
      if combined == nil && vision == nil && text == nil {
        throw DeployError.input("\(path) holds no .onnx or .engine model")
      }
    } else if fm.fileExists(atPath: path) {
      let (stem, ext) = stemExt(path)
      if stem.hasSuffix("_vision") || stem.hasSuffix("_text") {
        let base = String(stem.dropLast(stem.hasSuffix("_vision") ? 7 : 5))
        let v = base + "_vision" + ext, t = base + "_text" + ext
        vision = fm.fileExists(atPath: v) ? v : nil
        text = fm.fileExists(atPath: t) ? t : nil
      } else {
        combined = path
      }
    } else {
      let (stem, ext) = stemExt(path)
      let v = stem + "_vision" + ext, t = stem + "_text" + ext
      vision = fm.fileExists(atPath: v) ? v : nil
      text = fm.fileExists(atPath: t) ? t : nil
      if vision == nil && text == nil {
        throw DeployError.input("\(path) does not exist (nor \(v) or \(t))")
      }
    }
    let anchor = combined ?? vision ?? text!
    let dir = anchor.parentPath
    let parent = dir.parentPath
    var config: String?, tokenizer: String?
    for d in [dir, parent + "/export", parent] {
      let names = ((try? fm.contentsOfDirectory(atPath: d)) ?? []).sorted()
      if config == nil, let c = names.first(where: { $0.hasSuffix("_config.yaml") }) { config = d + "/" + c }
      if tokenizer == nil, let t = names.first(where: { n in
        var isDir: ObjCBool = false
        return n.hasSuffix("_tokenizer") && fm.fileExists(atPath: d + "/" + n, isDirectory: &isDir) && isDir.boolValue
      }) { tokenizer = d + "/" + t }
    }
    guard let config else { throw DeployError.input("no *_config.yaml beside \(anchor) (looked in \(dir), \(parent)/export, \(parent)); export writes it") }
    guard let tokenizer else { throw DeployError.input("no *_tokenizer folder beside \(anchor) (looked in \(dir), \(parent)/export, \(parent)); export writes it") }
    return DeployedFiles(combined: combined, vision: vision, text: text, config: config, tokenizer: tokenizer)
  }
}
