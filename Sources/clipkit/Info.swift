import ArgumentParser
import Foundation
import Torch

/// Prints what this build runs on: libtorch version, threads, devices.
struct Info: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Show the libtorch version, CPU threads and visible CUDA devices.")

  @Option(help: "Load this libtorch_cuda.so before looking for GPUs.")
  var cudaLibrary: String?

  func run() throws {
    if let lib = cudaLibrary { try Torch.loadLibrary(lib) }
    print("clipkit \(ClipKitVersion.string)")
    print("libtorch \(Torch.version)")
    print("cpu threads \(Torch.threads)")
    print("cuda devices \(Torch.cudaDeviceCount)")
  }
}
