import Foundation
import FuzzTargets

// Built two ways. With -DCLIPKIT_FUZZING and libFuzzer (scripts/fuzz.sh): libFuzzer's driver,
// target chosen by CLIPKIT_FUZZ_TARGET. Otherwise: `clipkit-fuzz TARGET FILE...` replays inputs.

#if CLIPKIT_FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

nonisolated(unsafe) var fuzzTarget: FuzzTarget = .pickle

@main struct FuzzDriver {
  static func main() {
    guard let name = ProcessInfo.processInfo.environment["CLIPKIT_FUZZ_TARGET"], let t = FuzzTarget(rawValue: name) else {
      FileHandle.standardError.write("set CLIPKIT_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n".data(using: .utf8)!)
      exit(2)
    }
    fuzzTarget = t
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
      fuzzTarget.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
      return 0
    })
  }
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
