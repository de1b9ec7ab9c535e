import ArgumentParser
import Foundation
import Spec

// The TAO actions. Each validates its spec, writes experiment.yaml and status.json, and then runs.
// Actions whose engine has not landed yet stop with a non-zero exit saying so: they never print
// made-up results.

struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Fine-tune a CLIP model on image-caption data (train/epoch_N.pth, logs).")
  @OptionGroup var options: SpecOptions
  func run() throws {
    try runAction("train", section: "train", options: options, requires: ["results_dir", "model", "dataset.train", "train"], runTrain)
  }
}

struct Evaluate: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Retrieval metrics (R@1/5/10, mAP, MedR, AUC) on image-caption pairs.")
  @OptionGroup var options: SpecOptions
  func run() throws {
    try runAction("evaluate", section: "evaluate", options: options, requires: ["model", "evaluate"]) { try runEvaluate($0) }
  }
}

struct Inference: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Embed images and prompts into HDF5 files.")
  @OptionGroup var options: SpecOptions
  func run() throws {
    try runAction("inference", section: "inference", options: options, requires: ["model", "inference"]) { try runInference($0) }
  }
}

struct Export: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Export to ONNX with tokenizer and config sidecars.")
  @OptionGroup var options: SpecOptions
  func run() throws {
    try runAction("export", section: "export", options: options, requires: ["model", "export"], runExport)
  }
}

struct GenTrtEngine: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "gen_trt_engine",
    abstract: "Build a TensorRT engine from an exported ONNX model.",
    aliases: ["gen-trt-engine"])
  @OptionGroup var options: SpecOptions
  func run() throws {
    try runAction("gen_trt_engine", section: "gen_trt_engine", options: options, requires: ["gen_trt_engine"], runGenTrtEngine)
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
      try runAction("deploy evaluate", section: "evaluate", options: options, requires: ["evaluate"]) { ctx in
        try runEvaluate(ctx, rules: .deploy) { try loadDeployed($0.config.evaluate.trtEngine, section: "evaluate", gpu: $0.config.evaluate.gpuIds.first ?? 0) }
      }
    }
  }

  struct DeployInference: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inference", abstract: "Embeddings from an exported model or engine.")
    @OptionGroup var options: SpecOptions
    func run() throws {
      try runAction("deploy inference", section: "inference", options: options, requires: ["inference"]) { ctx in
        try runInference(ctx) { try loadDeployed($0.config.inference.trtEngine, section: "inference", gpu: $0.config.inference.gpuIds.first ?? 0) }
      }
    }
  }
}
