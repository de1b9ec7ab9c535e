import Foundation
import Testing
@testable import Spec

func fixture(_ name: String) -> String {
  Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil)!.path
}

/// Expects a SpecError whose message contains every fragment.
func expectSpecError(_ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
  do {
    try body()
    Issue.record("expected an error mentioning \(fragments)", sourceLocation: sourceLocation)
  } catch {
    let text = error.localizedDescription
    for f in fragments { #expect(text.contains(f), "message: \(text)", sourceLocation: sourceLocation) }
  }
}

@Suite struct Defaults {
  @Test func emptySpecIsTAOsDefaults() throws {
    let c = try Spec.load(yaml: "").config()
    #expect(c.modelName == "clip")
    #expect(c.resultsDir == "")
    #expect(c.model.type == "siglip2-so400m-patch16-256")
    #expect(c.model.adaptorName == nil && c.model.initLogitScale == nil && c.model.imageSize == 256)
    #expect(c.dataset.seed == 42 && c.dataset.pinMemory)
    #expect(c.dataset.train.type == "custom" && c.dataset.train.batchSize == 16 && c.dataset.train.numWorkers == 8)
    #expect(c.dataset.train.wds?.samplesPerShard == 10000)
    #expect(c.dataset.augmentation.scale == [0.4, 1.0])
    #expect(c.dataset.augmentation.colorJitter == [0.8, 0.32, 0.32, 0.32, 0.08])
    #expect(c.dataset.augmentation.grayscale == 0.2)
    #expect(c.train.numEpochs == 10 && c.train.checkpointInterval == 1 && c.train.checkpointIntervalUnit == "epoch")
    #expect(c.train.seed == 1234 && c.train.precision == "fp16" && c.train.lossType == "siglip")
    #expect(c.train.cudnn.deterministic && !c.train.cudnn.benchmark)
    #expect(c.train.optim.betas == [0.9, 0.95] && c.train.optim.eps == 1e-6 && c.train.optim.warmupSteps == 100)
    #expect(c.train.optim.visionLr == 1e-4 && c.train.optim.scheduler == "cosine")
    #expect(c.evaluate.checkpoint == nil && c.evaluate.batchSize == 16)
    #expect(c.export.opsetVersion == 17 && c.export.batchSize == -1 && c.export.inputHeight == 256 && c.export.encoderType == "combined")
    #expect(c.genTrtEngine.onnxFile == nil && c.genTrtEngine.tensorrt.maxBatchSize == 16)
    #expect(c.genTrtEngine.tensorrt.workspaceSize == 1024 && c.genTrtEngine.tensorrt.dataType == "fp32")
    #expect(c.wandb.project == "TAO Toolkit")
    #expect(!c.peft.enabled && c.peft.vision.rank == 8)
  }

  @Test func typedConfigCoversEverySchemaKey() throws {
    // Encoding the decoded config must give back exactly the schema's keys (no drift between the two).
    let spec = try Spec.load(yaml: "")
    let encoded = try JSONSerialization.jsonObject(with: JSONEncoder().encode(try spec.config())) as! [String: Any]
    func keys(_ any: Any, _ prefix: String) -> Set<String> {
      guard let d = any as? [String: Any] else { return [] }
      var out = Set<String>()
      for (k, v) in d {
        out.insert(prefix + k)
        out.formUnion(keys(v, prefix + k + "."))
      }
      return out
    }
    func schemaKeys(_ s: SpecSection, _ prefix: String) -> Set<String> {
      var out = Set<String>()
      for f in s.fields {
        out.insert(prefix + f.name)
        if case .section(let sub) = f.type { out.formUnion(schemaKeys(sub, prefix + f.name + ".")) }
      }
      return out
    }
    let expected = schemaKeys(CLIPSchema.root, "")
    // JSONEncoder omits nil optionals; compare on the keys that carry values.
    let got = keys(encoded, "")
    #expect(got.isSubset(of: expected), "unexpected: \(got.subtracting(expected))")
    let nullDefaults = expected.filter { spec.value($0) == .null || spec.value($0) == .missing }
    #expect(expected.subtracting(got) == nullDefaults)
  }
}

@Suite struct SeedExample {
  @Test func parsesToTheExpectedValues() throws {
    let spec = try Spec.load(file: fixture("seed_example.yaml"))
    let c = try spec.config()
    #expect(c.resultsDir == "/results/clip_experiment")
    #expect(c.model.type == "c-radio_v3-h" && c.model.adaptorName == "siglip")
    #expect(c.train.numEpochs == 100 && c.train.checkpointInterval == 10 && c.train.precision == "fp16")
    #expect(c.train.gradClipNorm == nil && c.train.valCheckInterval == nil)
    #expect(c.train.optim.visionLr == 1e-4 && c.train.optim.eps == 1e-6 && c.train.optim.betas == [0.9, 0.95])
    #expect(c.dataset.train.datasets.count == 1)
    #expect(c.dataset.train.datasets[0].imageDir == "/data/train/images")
    #expect(c.dataset.train.datasets[0].captionDir == "/data/train/captions")
    #expect(c.dataset.val.datasets[0].captionFileSuffix == ".txt")  // default filled into list elements
    #expect(c.inference.textFile == "/data/inference/prompts.txt")
    #expect(c.export.inputHeight == 224 && c.export.onnxFile == "/results/clip_experiment/export/clip_model.onnx")
    #expect(c.genTrtEngine.tensorrt.dataType == "fp16" && c.genTrtEngine.tensorrt.optBatchSize == 8)
    #expect(c.genTrtEngine.tensorrt.workspaceSize == 4096)
    // Untouched keys keep TAO's defaults.
    #expect(c.model.imageSize == 256 && c.train.seed == 1234 && c.evaluate.numWorkers == 8)
  }

  @Test func resolvedYAMLRoundTrips() throws {
    let spec = try Spec.load(file: fixture("seed_example.yaml"), overrides: ["model.init_logit_scale=2.5", "train.optim.eps=1e-8", "export.onnx_file='a b: c'"])
    let again = try Spec.load(yaml: spec.yaml(), name: "experiment.yaml")
    #expect(again.tree == spec.tree)
    #expect(spec.yaml().contains("eps: 1.0e-08"))
  }
}

@Suite struct Overrides {
  let seed = fixture("seed_example.yaml")

  @Test func typedByTheSchema() throws {
    let c = try Spec.load(file: seed, overrides: [
      "train.num_epochs=5", "train.optim.vision_lr=3e-5", "train.optim.betas=[0.8,0.99]", "model.adaptor_name=null",
      "train.grad_clip_norm=1", "model.canonicalize_text=true", "dataset.train.datasets.0.image_dir=/other",
      "dataset.val.datasets[0].caption_file_suffix='.caption'", "results_dir=\"/tmp/with space\"", "+train.seed=7",
      "gen_trt_engine.tensorrt.layers_precision=['a:fp32', 'b:fp16']", "dataset.train.datasets=[{image_dir: /x}, {image_dir: /y, caption_dir: /c}]",
    ]).config()
    #expect(c.train.numEpochs == 5)
    #expect(c.train.optim.visionLr == 3e-5)
    #expect(c.train.optim.betas == [0.8, 0.99])
    #expect(c.model.adaptorName == nil)
    #expect(c.train.gradClipNorm == 1.0)
    #expect(c.model.canonicalizeText)
    #expect(c.dataset.val.datasets[0].captionFileSuffix == ".caption")
    #expect(c.resultsDir == "/tmp/with space")
    #expect(c.train.seed == 7)
    #expect(c.genTrtEngine.tensorrt.layersPrecision == ["a:fp32", "b:fp16"])
    #expect(c.dataset.train.datasets.map(\.imageDir) == ["/x", "/y"])
    #expect(c.dataset.train.datasets[1].captionDir == "/c" && c.dataset.train.datasets[0].captionFileSuffix == ".txt")
    // Later overrides win; list index override applied before the list was replaced is gone.
    let d = try Spec.load(file: seed, overrides: ["train.num_epochs=5", "train.num_epochs=6"]).config()
    #expect(d.train.numEpochs == 6)
  }

  @Test func unknownKeysNameThePathAndASuggestion() throws {
    expectSpecError(["model.typo", "did you mean"]) { _ = try Spec.load(file: seed, overrides: ["model.typo=1"]) }
    expectSpecError(["train.num_epoch", "did you mean 'train.num_epochs'"]) { _ = try Spec.load(file: seed, overrides: ["train.num_epoch=3"]) }
    expectSpecError(["'num_epochs'", "did you mean 'train.num_epochs'"]) { _ = try Spec.load(file: seed, overrides: ["num_epochs=3"]) }
    expectSpecError(["train.optim.learning_rate"]) { _ = try Spec.load(file: seed, overrides: ["train.optim.learning_rate=0.1"]) }
    expectSpecError(["dataset.train.datasets.3", "1 entries"]) { _ = try Spec.load(file: seed, overrides: ["dataset.train.datasets.3.image_dir=/x"]) }
  }

  @Test func wrongTypesNameTheKeyAndTheType() throws {
    expectSpecError(["train.num_epochs", "expects an integer", "'abc'"]) { _ = try Spec.load(file: seed, overrides: ["train.num_epochs=abc"]) }
    expectSpecError(["train.num_epochs", "expects an integer"]) { _ = try Spec.load(file: seed, overrides: ["train.num_epochs=2.5"]) }
    expectSpecError(["model.freeze_text_encoder", "boolean", "'maybe'"]) { _ = try Spec.load(file: seed, overrides: ["model.freeze_text_encoder=maybe"]) }
    expectSpecError(["train.precision", "fp16, fp32, bf16", "'fp8'"]) { _ = try Spec.load(file: seed, overrides: ["train.precision=fp8"]) }
    expectSpecError(["train.num_epochs", "minimum 1"]) { _ = try Spec.load(file: seed, overrides: ["train.num_epochs=0"]) }
    // A transform size of zero or less would make an image of negative size.
    expectSpecError(["model.image_size", "minimum 1"]) { _ = try Spec.load(file: seed, overrides: ["model.image_size=-8"]) }
    expectSpecError(["train.num_epochs", "cannot be null"]) { _ = try Spec.load(file: seed, overrides: ["train.num_epochs=null"]) }
    expectSpecError(["train.optim.betas", "float"]) { _ = try Spec.load(file: seed, overrides: ["train.optim.betas=[a,b]"]) }
    expectSpecError(["expected key=value"]) { _ = try Spec.load(file: seed, overrides: ["train.num_epochs"]) }
    expectSpecError(["train.optim", "section"]) { _ = try Spec.load(file: seed, overrides: ["train.optim=3"]) }
  }
}

@Suite struct FileErrors {
  @Test func yamlMistakesPointIntoTheFile() throws {
    expectSpecError(["spec.yaml:3:", "model.tpye", "did you mean 'model.type'"]) {
      _ = try Spec.load(yaml: "results_dir: /r\nmodel:\n  tpye: x\n", name: "spec.yaml")
    }
    expectSpecError(["spec.yaml:2:", "train.num_epochs", "integer", "'ten'"]) {
      _ = try Spec.load(yaml: "train:\n  num_epochs: ten\n", name: "spec.yaml")
    }
    expectSpecError(["bad.yaml", "malformed YAML"]) { _ = try Spec.load(yaml: "model: [unclosed\n  type: x", name: "bad.yaml") }
    expectSpecError(["bad.yaml", "duplicate", "'type'"]) { _ = try Spec.load(yaml: "model:\n  type: a\n  type: b\n", name: "bad.yaml") }
    expectSpecError(["top level must be a mapping"]) { _ = try Spec.load(yaml: "- a\n- b\n", name: "list.yaml") }
    expectSpecError(["spec file not found", "/nonexistent/spec.yaml"]) { _ = try Spec.load(file: "/nonexistent/spec.yaml") }
    expectSpecError(["dataset.train.datasets", "list of mappings"]) { _ = try Spec.load(yaml: "dataset:\n  train:\n    datasets: /data\n") }
  }

  @Test func mandatoryValuesAreCheckedPerAction() throws {
    let spec = try Spec.load(yaml: "results_dir: ???\nmodel:\n  type: ???\ndataset:\n  train:\n    datasets:\n      - caption_dir: /c\n")
    expectSpecError(["'results_dir'", "'model.type'", "'dataset.train.datasets.0.image_dir'"]) {
      try spec.requireSet(["results_dir", "model", "dataset.train"])
    }
    // gen_trt_engine.onnx_file is ??? by default but only that action needs it.
    try Spec.load(yaml: "results_dir: /r").requireSet(["results_dir", "model", "train"])
    expectSpecError(["gen_trt_engine.onnx_file", "gen_trt_engine.trt_engine"]) {
      try Spec.load(yaml: "results_dir: /r").requireSet(["gen_trt_engine"])
    }
    // Unrequired ??? values decode as defaults (or nil).
    #expect(try spec.config().model.type == "siglip2-so400m-patch16-256")
  }
}

@Suite struct Interpolations {
  @Test func resolvesReferencesWithTypes() throws {
    let yaml = """
    results_dir: /runs/exp1
    train:
      num_epochs: 12
      checkpoint_interval: ${train.num_epochs}
      results_dir: ${results_dir}/train_out
      optim:
        text_lr: ${.vision_lr}
        vision_lr: 2.0e-5
    evaluate:
      checkpoint: ${results_dir}/train/epoch_${train.num_epochs}.pth
      batch_size: "${dataset.val.batch_size}"
    """
    let c = try Spec.load(yaml: yaml).config()
    #expect(c.train.checkpointInterval == 12)
    #expect(c.train.resultsDir == "/runs/exp1/train_out")
    #expect(c.train.optim.textLr == 2e-5)
    #expect(c.evaluate.checkpoint == "/runs/exp1/train/epoch_12.pth")
    #expect(c.evaluate.batchSize == 16)
    // Overrides feed interpolation.
    let d = try Spec.load(yaml: yaml, overrides: ["train.num_epochs=3"]).config()
    #expect(d.train.checkpointInterval == 3 && d.evaluate.checkpoint == "/runs/exp1/train/epoch_3.pth")
  }

  @Test func badInterpolationsAreNamed() throws {
    expectSpecError(["train.results_dir", "train.nothing", "does not exist"]) {
      _ = try Spec.load(yaml: "train:\n  results_dir: ${train.nothing}\n")
    }
    expectSpecError(["cycle"]) { _ = try Spec.load(yaml: "train:\n  num_epochs: ${train.seed}\n  seed: ${train.num_epochs}\n") }
    expectSpecError(["resolver 'eval'"]) { _ = try Spec.load(yaml: "train:\n  num_epochs: \"${eval:'1+1'}\"\n") }
    expectSpecError(["train.num_epochs", "integer", "'/r'"]) { _ = try Spec.load(yaml: "results_dir: /r\ntrain:\n  num_epochs: ${results_dir}\n") }
  }
}
