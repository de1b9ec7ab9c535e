import Foundation

/// The TAO actions, run in this process. The command line parses arguments and calls these; tests
/// call them directly.
public enum Job: String, CaseIterable, Sendable {
  case train, evaluate, inference, export
  case genTrtEngine = "gen_trt_engine"
  case deployEvaluate = "deploy evaluate"
  case deployInference = "deploy inference"

  /// Runs the action on `specFile` with Hydra-style `overrides`: validates the spec, writes
  /// experiment.yaml and status.json into the results directory, and runs. Errors are typed and
  /// say what to fix; status.json records FAILURE first.
  public func run(specFile: String, overrides: [String] = [], hooks: JobHooks = JobHooks()) throws {
    let (name, f) = (rawValue, specFile)
    switch self {
    case .train:
      try runAction(name, section: "train", specFile: f, overrides: overrides, hooks: hooks,
                    requires: ["results_dir", "model", "dataset.train", "train"], runTrain)
    case .evaluate:
      try runAction(name, section: "evaluate", specFile: f, overrides: overrides, hooks: hooks, requires: ["model", "evaluate"]) { try runEvaluate($0) }
    case .inference:
      try runAction(name, section: "inference", specFile: f, overrides: overrides, hooks: hooks, requires: ["model", "inference"]) { try runInference($0) }
    case .export:
      try runAction(name, section: "export", specFile: f, overrides: overrides, hooks: hooks, requires: ["model", "export"], runExport)
    case .genTrtEngine:
      try runAction(name, section: "gen_trt_engine", specFile: f, overrides: overrides, hooks: hooks, requires: ["gen_trt_engine"], runGenTrtEngine)
    case .deployEvaluate:
      try runAction(name, section: "evaluate", specFile: f, overrides: overrides, hooks: hooks, requires: ["evaluate"]) { ctx in
        try runEvaluate(ctx, rules: .deploy) { try loadDeployed($0.config.evaluate.trtEngine, section: "evaluate", gpu: $0.config.evaluate.gpuIds.first ?? 0) }
      }
    case .deployInference:
      try runAction(name, section: "inference", specFile: f, overrides: overrides, hooks: hooks, requires: ["inference"]) { ctx in
        try runInference(ctx) { try loadDeployed($0.config.inference.trtEngine, section: "inference", gpu: $0.config.inference.gpuIds.first ?? 0) }
      }
    }
  }
}

/// What a caller can ask of a job beyond its spec: test and diagnosis hooks.
public struct JobHooks: Sendable {
  /// Print every training step's loss ("step N loss X").
  public var logLoss = false
  /// End the process abruptly (as kill -9 would) right after this epoch's / step's checkpoint.
  public var crashAfterEpoch: Int? = nil
  public var crashAfterStep: Int? = nil
  /// Where a training job reads its launch variables (RANK, WORLD_SIZE, NODE_RANK, MASTER_ADDR,
  /// …): the process environment when nil. In-process callers pass [:] to stay one process.
  public var launchEnvironment: [String: String]? = nil

  public init(logLoss: Bool = false, crashAfterEpoch: Int? = nil, crashAfterStep: Int? = nil, launchEnvironment: [String: String]? = nil) {
    self.logLoss = logLoss
    self.crashAfterEpoch = crashAfterEpoch
    self.crashAfterStep = crashAfterStep
    self.launchEnvironment = launchEnvironment
  }

  /// CLIPKIT_LOG_LOSS, CLIPKIT_CRASH_AFTER_EPOCH=N, CLIPKIT_CRASH_AFTER_STEP=N.
  public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> JobHooks {
    JobHooks(logLoss: env["CLIPKIT_LOG_LOSS"] != nil, crashAfterEpoch: env["CLIPKIT_CRASH_AFTER_EPOCH"].flatMap { Int($0) },
             crashAfterStep: env["CLIPKIT_CRASH_AFTER_STEP"].flatMap { Int($0) })
  }
}
