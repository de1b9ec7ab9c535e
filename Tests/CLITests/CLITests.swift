import Foundation
import Jobs
import Testing

/// Runs a program to completion; `stdin` is written to its standard input when given.
func runProcess(_ executable: URL, _ args: [String], cwd: String? = nil, env: [String: String] = [:],
                stdin: Data? = nil) throws -> (code: Int32, out: String, err: String) {
  let p = Process()
  p.executableURL = executable
  p.arguments = args
  p.environment = ProcessInfo.processInfo.environment.merging(env) { _, new in new }
  if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
  let out = Pipe(), err = Pipe(), input = Pipe()
  p.standardOutput = out
  p.standardError = err
  if stdin != nil { p.standardInput = input }
  try p.run()
  if let stdin {
    input.fileHandleForWriting.write(stdin)
    try input.fileHandleForWriting.close()
  }
  let o = out.fileHandleForReading.readDataToEndOfFile()
  let e = err.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// Runs a `clipkit` command. A spec-driven action (`train|evaluate|inference|export|gen_trt_engine|
/// deploy evaluate|deploy inference -e spec …`) runs in this process through the Jobs library,
/// exactly as the command line calls it, with its lines captured; anything else (help, other
/// commands, a working directory, environment beyond CLIPKIT_LOG_LOSS, or the crash hooks that
/// end a process) runs the built binary, which sits beside the test bundle in the build directory.
/// `env` is added to the child's environment only (tests run in parallel, so nothing here changes
/// the shared environment).
func clipkit(_ args: [String], cwd: String? = nil, env: [String: String] = [:]) throws -> (code: Int32, out: String, err: String) {
  if cwd == nil, env.keys.allSatisfy({ $0 == "CLIPKIT_LOG_LOSS" }), let (job, spec, overrides) = inProcessJob(args) {
    let captured = CapturedConsole()
    // One job at a time: jobs share libtorch's intra-op thread pool, and side by side they would
    // get varying thread counts, so reductions (losses) would differ in their last bits.
    inProcessJobs.lock()
    defer { inProcessJobs.unlock() }
    do {
      try Console.$current.withValue(captured.console) {
        try job.run(specFile: spec, overrides: overrides, hooks: JobHooks(logLoss: env["CLIPKIT_LOG_LOSS"] != nil, launchEnvironment: [:]))
      }
      return (0, captured.out, captured.err)
    } catch {
      return (1, captured.out, captured.err + "error: \(oneLine(error))\n")
    }
  }
  var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
  while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("clipkit").path), dir.path != "/" {
    dir = dir.deletingLastPathComponent()
  }
  return try runProcess(dir.appendingPathComponent("clipkit"), args, cwd: cwd, env: env)
}

private let inProcessJobs = NSLock()

/// The job, spec and overrides of `action -e spec overrides…` (the form every test uses).
private func inProcessJob(_ args: [String]) -> (Job, String, [String])? {
  var rest = args[...]
  let name = rest.first == "deploy" ? rest.prefix(2).joined(separator: " ") : rest.first ?? ""
  rest = rest.dropFirst(name.split(separator: " ").count)
  guard let job = Job(rawValue: name), let flag = rest.first, ["-e", "--experiment_spec", "--experiment-spec"].contains(flag), rest.count >= 2 else {
    return nil
  }
  let overrides = Array(rest.dropFirst(2))
  // Options after the spec are the command line's to parse (and reject): leave them to the binary.
  guard overrides.allSatisfy({ !$0.hasPrefix("-") }) else { return nil }
  return (job, rest[rest.startIndex + 1], overrides)
}

func writeSpec(_ text: String) throws -> (dir: String, spec: String) {
  let dir = NSTemporaryDirectory() + "clipkit-cli-\(UUID().uuidString)"
  try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  let spec = dir + "/spec.yaml"
  try text.write(toFile: spec, atomically: true, encoding: .utf8)
  return (dir, spec)
}

@Suite struct CommandLineBehaviour {
  @Test func helpListsEveryAction() throws {
    let r = try clipkit(["--help"])
    #expect(r.code == 0)
    for action in ["train", "evaluate", "inference", "export", "gen_trt_engine", "deploy"] {
      #expect(r.out.contains(action), "\(action) missing from --help")
    }
    let d = try clipkit(["deploy", "--help"])
    #expect(d.out.contains("evaluate") && d.out.contains("inference"))
    for action in ["train", "evaluate", "inference", "export", "gen_trt_engine"] {
      let h = try clipkit([action, "--help"])
      #expect(h.code == 0 && h.out.contains("-e"), "\(action) --help")
    }
  }

  @Test func specErrorsAreOneLineAndNonZero() throws {
    let (dir, spec) = try writeSpec("results_dir: RESULTS\nmodel:\n  type: siglip2-so400m-patch16-256\n")
    let typo = try clipkit(["train", "-e", spec, "model.typo=1"])
    #expect(typo.code != 0)
    #expect(typo.err.contains("model.typo") && typo.err.contains("did you mean 'model.type'"))
    #expect(typo.err.split(separator: "\n").count == 1)
    let abc = try clipkit(["train", "-e", spec, "train.num_epochs=abc"])
    #expect(abc.code != 0 && abc.err.contains("train.num_epochs") && abc.err.contains("integer"))
    let missing = try clipkit(["evaluate", "-e", dir + "/absent.yaml"])
    #expect(missing.code != 0 && missing.err.contains("absent.yaml"))
    let (_, bad) = try writeSpec("model: [unclosed\n  type: x\n")
    let malformed = try clipkit(["export", "-e", bad])
    #expect(malformed.code != 0 && malformed.err.contains("malformed YAML") && malformed.err.split(separator: "\n").count == 1)
    let (_, mandatory) = try writeSpec("results_dir: ???\n")
    let m = try clipkit(["train", "-e", mandatory])
    #expect(m.code != 0 && m.err.contains("'results_dir'"))
    let (_, noDir) = try writeSpec("model:\n  type: x\n")
    let n = try clipkit(["inference", "-e", noDir])
    #expect(n.code != 0 && n.err.contains("results_dir"))
  }

  @Test func actionsWriteTheResolvedSpecAndStatus() throws {
    let (dir, spec) = try writeSpec("results_dir: \(NSTemporaryDirectory())ck-\(UUID().uuidString)\ntrain:\n  num_epochs: 3\n")
    let out = dir + "/own_export_dir"
    let r = try clipkit(["export", "-e", spec, "export.results_dir=\(out)", "export.opset_version=16"])
    // Nothing to export to: a failure recorded after the resolved spec.
    #expect(r.code != 0 && r.err.contains("export.onnx_file or export.checkpoint"), "\(r.err)")
    let yaml = try String(contentsOfFile: out + "/experiment.yaml", encoding: .utf8)
    #expect(yaml.contains("opset_version: 16") && yaml.contains("num_epochs: 3"))
    let lines = try String(contentsOfFile: out + "/status.json", encoding: .utf8).split(separator: "\n")
    #expect(lines.count == 2)
    let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
    let last = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as! [String: Any]
    #expect(first["status"] as? String == "STARTED" && last["status"] as? String == "FAILURE")
    #expect((first["date"] as? String)?.split(separator: "/").count == 3)
    #expect((last["message"] as? String)?.contains("export.onnx_file") == true)
  }
}
