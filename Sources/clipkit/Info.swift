import ArgumentParser
import Deploy
import Foundation
import Jobs
import Torch

/// Prints what this build runs on: libtorch version, threads, devices.
struct Info: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Show the libtorch version, CPU threads, visible CUDA devices and the TensorRT gen_trt_engine would use.")

  @Option(help: "Load this libtorch_cuda.so before looking for GPUs.")
  var cudaLibrary: String?

  func run() throws {
    if let lib = cudaLibrary { try Torch.loadLibrary(lib) }
    print("clipkit \(ClipKitVersion.string)")
    print("libtorch \(Torch.version)")
    print("cpu threads \(Torch.threads)")
    print("cuda devices \(Torch.cudaDeviceCount)")
    switch try? TensorRTBuilder.find() {
    case .trtexec(let path, let flags)?: print("tensorrt trtexec \(path)\(flags ? "" : " (strongly typed: fp16 builds get a typed graph)")")
    case .python(let py, let version, let flags)?: print("tensorrt \(version) (Python package of \(py))\(flags ? "" : ", strongly typed: fp16 builds get a typed graph")")
    case nil: print("tensorrt not found (trtexec on PATH or CLIPKIT_TRTEXEC, or `pip install tensorrt` for CLIPKIT_PYTHON/python3)")
    }
  }
}
