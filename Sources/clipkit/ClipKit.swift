import ArgumentParser
import Foundation
import Jobs
import Spec
import Torch

@main
struct ClipKit: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "clipkit",
    abstract: "Fine-tune, evaluate, embed with and export CLIP-family models from a TAO CLIP experiment spec.",
    discussion: "Every action reads a TAO CLIP spec (-e spec.yaml) plus Hydra-style overrides such as train.num_epochs=5 or dataset.train.batch_size=64, and writes experiment.yaml and status.json into {results_dir}/{action}/ (or {action}.results_dir).",
    version: ClipKitVersion.string,
    subcommands: [Train.self, Evaluate.self, Inference.self, Export.self, GenTrtEngine.self, Deploy.self, Serve.self, Search.self, Classify.self, Dedup.self, Info.self, SpecKeys.self, Bench.self, DemoData.self],
    helpNames: [.short, .long]
  )

  /// Runs the command, turning any error into one line on stderr and a non-zero exit.
  static func mainReportingErrors() -> Never {
    do {
      var command = try parseAsRoot()
      try command.run()
      Foundation.exit(0)
    } catch let e as CleanExit {
      exit(withError: e)
    } catch let e as ExitCode {
      Foundation.exit(e.rawValue)
    } catch {
      if isArgumentParserError(error) { exit(withError: error) }
      FileHandle.standardError.write(Data("error: \(oneLine(error))\n".utf8))
      Foundation.exit(1)
    }
  }

  static func main() {
    Torch.keepFreedMemory()
    lineBufferedStdout()
    mainReportingErrors()
  }
}

/// ArgumentParser's own usage errors keep its formatting (they include usage help).
func isArgumentParserError(_ error: Error) -> Bool {
  String(reflecting: type(of: error)).contains("ArgumentParser")
}

/// `clipkit spec-keys`: every key of TAO's CLIP schema and what ClipKit does with it.
struct SpecKeys: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "spec-keys", abstract: "List every TAO CLIP spec key: honoured, refused unless default, or a no-op (and why).")
  func run() throws { print(KeyPolicy.markdownTable(), terminator: "") }
}
