import Foundation

/// What loading a state dict into a module found.
public struct LoadReport: Sendable, Equatable, CustomStringConvertible {
  public struct Mismatch: Sendable, Equatable {
    public let key: String
    public let expected: [Int]
    public let found: [Int]
  }
  public var missing: [String] = []
  public var unexpected: [String] = []
  public var mismatched: [Mismatch] = []
  public var loaded: Int = 0

  public var isClean: Bool { missing.isEmpty && unexpected.isEmpty && mismatched.isEmpty }

  public var description: String {
    var lines: [String] = []
    if !missing.isEmpty { lines.append("missing keys (\(missing.count)): " + missing.joined(separator: ", ")) }
    if !unexpected.isEmpty { lines.append("unexpected keys (\(unexpected.count)): " + unexpected.joined(separator: ", ")) }
    if !mismatched.isEmpty {
      lines.append("wrong shapes (\(mismatched.count)): " + mismatched.map { "\($0.key) expects \($0.expected), checkpoint has \($0.found)" }.joined(separator: ", "))
    }
    return lines.isEmpty ? "all \(loaded) tensors loaded" : lines.joined(separator: "; ")
  }
}

public enum StateDictError: Error, LocalizedError {
  case mismatch(source: String, report: LoadReport)

  public var errorDescription: String? {
    switch self {
    case .mismatch(let source, let report): return "\(source) does not fit the model: \(report)"
    }
  }
}

extension Module {
  /// Copies checkpoint tensors into the module's own (keeping the module's dtype and device).
  /// Strict by default: any missing, unexpected or wrong-shaped key fails the whole load and every
  /// one of them is listed. `strict: false` loads what fits and returns the report.
  /// `assign: true` adopts the checkpoint's tensors (cast to the module's dtype and device) instead
  /// of copying into the existing ones: loading pretrained weights into a model built with empty
  /// tensors then needs no second copy.
  @discardableResult
  public func load(stateDict: [String: Tensor], strict: Bool = true, assign: Bool = false,
                   source: String = "checkpoint") throws -> LoadReport {
    var report = LoadReport()
    let slots = namedSlots().filter { $0.1.persistent && $0.1.tensor != nil }
    var known = Set<String>()
    var plan: [(TensorSlot, Tensor)] = []
    for (key, slot) in slots {
      known.insert(key)
      guard let src = stateDict[key] else { report.missing.append(key); continue }
      let dst = slot.tensor!
      if src.shape != dst.shape {
        report.mismatched.append(.init(key: key, expected: dst.shape, found: src.shape))
        continue
      }
      plan.append((slot, src))
    }
    report.unexpected = stateDict.keys.filter { !known.contains($0) }.sorted()
    if strict && !report.isClean { throw StateDictError.mismatch(source: source, report: report) }
    try noGrad {
      for (slot, src) in plan {
        let dst = slot.tensor!
        if assign {
          let t = src.dtype == dst.dtype && src.device == dst.device ? try src.detach() : try src.to(dst.dtype, device: dst.device)
          if dst.requiresGrad { try t.requiresGrad(true) }
          slot.replace(t)
        } else {
          try dst.copy_(src)
        }
      }
    }
    report.loaded = plan.count
    return report
  }
}
