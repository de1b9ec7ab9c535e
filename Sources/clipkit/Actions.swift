import ArgumentParser
import Foundation
import Jobs
import Server

// The TAO actions' command line: each parses `-e spec.yaml` and overrides, then runs the job in
// the Jobs library.

/// Options every spec-driven action takes: TAO's `-e spec.yaml` and trailing overrides.
struct SpecOptions: ParsableArguments {
  @Option(name: [.customShort("e"), .customLong("experiment_spec"), .customLong("experiment-spec")],
          help: "Experiment spec (YAML, TAO CLIP schema).")
  var spec: String

  @Argument(help: "Hydra-style overrides: key.sub=value, lists as [a,b], null.")
  var overrides: [String] = []

  func run(_ job: Job) throws { try job.run(specFile: spec, overrides: overrides, hooks: .fromEnvironment()) }
}

struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Fine-tune a CLIP model on image-caption data (train/epoch_N.pth, logs).")
  @OptionGroup var options: SpecOptions
  func run() throws {
    try options.run(.train)
  }
}

struct Evaluate: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Retrieval metrics (R@1/5/10, mAP, MedR, AUC) on image-caption pairs.")
  @OptionGroup var options: SpecOptions
  func run() throws {
    try options.run(.evaluate)
  }
}

struct Inference: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Embed images and prompts into HDF5 files.")
  @OptionGroup var options: SpecOptions
  func run() throws {
    try options.run(.inference)
  }
}

struct Export: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Export to ONNX with tokenizer and config sidecars.")
  @OptionGroup var options: SpecOptions
  func run() throws {
    try options.run(.export)
  }
}

struct GenTrtEngine: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "gen_trt_engine",
    abstract: "Build a TensorRT engine from an exported ONNX model.",
    aliases: ["gen-trt-engine"])
  @OptionGroup var options: SpecOptions
  func run() throws {
    try options.run(.genTrtEngine)
  }
}

struct Deploy: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run an exported ONNX model or TensorRT engine (TAO Deploy).",
    subcommands: [DeployEvaluate.self, DeployInference.self])

  struct DeployEvaluate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "evaluate", abstract: "Retrieval metrics from an exported model or engine.")
    @OptionGroup var options: SpecOptions
    func run() throws {
      try options.run(.deployEvaluate)
    }
  }

  struct DeployInference: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inference", abstract: "Embeddings from an exported model or engine.")
    @OptionGroup var options: SpecOptions
    func run() throws {
      try options.run(.deployInference)
    }
  }
}

struct Serve: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Serve the spec's model over NV-CLIP's HTTP API (POST /v1/embeddings; serve.* keys).",
    discussion: "Listens on serve.host:serve.port at once (GET /v1/health/ready answers 503 until the model is loaded); SIGTERM or Ctrl-C stops it after the requests in flight.")
  @OptionGroup var options: SpecOptions
  func run() throws {
    let service = try EmbeddingService(specFile: options.spec, overrides: options.overrides)
    try blocking { try await EmbeddingServer.run(service) }
  }
}

/// Runs async work from the synchronous command line: the main thread waits, the work runs on
/// Swift's pool.
func blocking(_ work: @escaping @Sendable () async throws -> Void) throws {
  final class Box: @unchecked Sendable { var error: Error? }
  let (box, done) = (Box(), DispatchSemaphore(value: 0))
  Task {
    do { try await work() } catch { box.error = error }
    done.signal()
  }
  done.wait()
  if let e = box.error { throw e }
}
