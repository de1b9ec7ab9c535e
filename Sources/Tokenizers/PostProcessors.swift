import Foundation

/// Adds special tokens around an encoded sequence (single-sequence templates only: CLIP-family
/// text towers take one sequence).
protocol PostProcessor {
  func process(_ ids: [Int]) -> [Int]
  /// How many ids `process` adds, for truncation.
  var addedCount: Int { get }
}

enum PostProcessors {
  static func make(_ o: JSONObject) throws -> PostProcessor {
    let type = try o.type()
    switch type {
    case "TemplateProcessing":
      let specials = (o.dict["special_tokens"] as? [String: Any]) ?? [:]
      var items: [TemplateItem] = []
      for (i, any) in try o.array("single").enumerated() {
        let e = try o.sub(any, "single[\(i)]")
        if let st = e.dict["SpecialToken"] as? [String: Any], let name = st["id"] as? String {
          guard let spec = specials[name] as? [String: Any], let ids = spec["ids"] as? [Int] else {
            throw TokenizerError.malformed(file: o.file, part: o.part, reason: "special token '\(name)' has no ids in special_tokens")
          }
          items.append(.special(ids))
        } else if e.dict["Sequence"] != nil {
          items.append(.sequence)
        } else {
          throw TokenizerError.malformed(file: o.file, part: e.part, reason: "expected SpecialToken or Sequence")
        }
      }
      return Template(items: items)
    case "BertProcessing", "RobertaProcessing":
      guard let cls = o.dict["cls"] as? [Any], cls.count == 2, let clsID = cls[1] as? Int,
            let sep = o.dict["sep"] as? [Any], sep.count == 2, let sepID = sep[1] as? Int else {
        throw TokenizerError.malformed(file: o.file, part: o.part, reason: "cls and sep must be [token, id]")
      }
      return Template(items: [.special([clsID]), .sequence, .special([sepID])])
    case "ByteLevel": return Template(items: [.sequence])
    case "Sequence":
      return SequenceProcessor(items: try o.array("processors").enumerated().map { try make(o.sub($0.element, "processors[\($0.offset)]")) })
    default: throw TokenizerError.unsupported(file: o.file, part: o.part, type: type)
    }
  }
}

enum TemplateItem { case special([Int]), sequence }

struct Template: PostProcessor {
  let items: [TemplateItem]
  func process(_ ids: [Int]) -> [Int] {
    items.flatMap { item -> [Int] in
      switch item {
      case .special(let s): return s
      case .sequence: return ids
      }
    }
  }
  var addedCount: Int {
    items.reduce(0) { n, item in
      if case .special(let s) = item { return n + s.count }
      return n
    }
  }
}

struct SequenceProcessor: PostProcessor {
  let items: [PostProcessor]
  func process(_ ids: [Int]) -> [Int] { items.reduce(ids) { $1.process($0) } }
  var addedCount: Int { items.reduce(0) { $0 + $1.addedCount } }
}
