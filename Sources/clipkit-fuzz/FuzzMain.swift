import Foundation
import FuzzTargets

// Built two ways. With -DCLIPKIT_FUZZING and libFuzzer (scripts/fuzz.sh): libFuzzer's driver,
// target chosen by CLIPKIT_FUZZ_TARGET. Otherwise: `clipkit-fuzz TARGET FILE...` replays inputs.

#if CLIPKIT_FUZZING
// libFuzzer's own main drives these two entry points.
nonisolated(unsafe) var fuzzTarget: FuzzTarget = .pickle

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutableRawPointer?) -> Int32 {
  guard let name = ProcessInfo.processInfo.environment["CLIPKIT_FUZZ_TARGET"], let t = FuzzTarget(rawValue: name) else {
    FileHandle.standardError.write(Data("set CLIPKIT_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
    exit(2)
  }
  fuzzTarget = t
  return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  fuzzTarget.run(size == 0 || data == nil ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
  return 0
}
#else
@main struct FuzzReplay {
  static func main() {
    let args = Array(CommandLine.arguments.dropFirst())
    guard let name = args.first, let t = FuzzTarget(rawValue: name) else {
      print("usage: clipkit-fuzz TARGET FILE...   (TARGET: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")))")
      exit(2)
    }
    for f in args.dropFirst() {
      guard let d = FileManager.default.contents(atPath: f) else { print("\(f): cannot read"); exit(1) }
      print("\(f): \(t.run([UInt8](d)) ? "accepted" : "rejected")")
    }
  }
}
#endif
