import Foundation
import Testing
@testable import FuzzTargets

/// Every input that once crashed a parser runs again through the same fuzz entry point: a trap
/// here kills the test process, a hang exceeds the suite's time.
@Suite struct FuzzRegressions {
  static let root = Bundle.module.url(forResource: "Regressions", withExtension: nil)!

  static func inputs(_ t: FuzzTarget) -> [URL] {
    let dir = root.appendingPathComponent(t.rawValue)
    return ((try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)) ?? [])
      .filter { !$0.lastPathComponent.hasPrefix(".") }.sorted { $0.path < $1.path }
  }

  @Test(arguments: FuzzTarget.allCases) func replay(_ t: FuzzTarget) throws {
    for url in Self.inputs(t) { t.run([UInt8](try Data(contentsOf: url))) }
  }
}
