import Foundation
import Testing
@testable import Torch

enum Fixture {
  static func path(_ name: String) -> String {
    Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil)!.path
  }
}

func tmpDir() -> String {
  let d = NSTemporaryDirectory() + "clipkit-tests-\(UUID().uuidString)"
  try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
  return d
}

/// Max |a - b| over two equally long arrays.
func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
  precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
  return zip(a, b).map { Swift.abs($0 - $1) }.max() ?? 0
}

/// Expects `body` to throw a TorchError whose message contains `fragment`.
func expectTorchError(_ fragment: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
  do {
    try body()
    Issue.record("expected an error containing '\(fragment)'", sourceLocation: sourceLocation)
  } catch {
    let text = error.localizedDescription
    #expect(text.contains(fragment), "error was: \(text)", sourceLocation: sourceLocation)
  }
}
