import Foundation
import Testing
@testable import Torch

/// What a CPU machine sees of CUDA: the driver is asked directly (never libtorch, which would
/// switch CUDA off for the process), and asking for CUDA without its libraries is one clear line.
@Suite struct CUDAOnACPUMachine {
  @Test func noDriverIsAReasonNotACrash() throws {
    guard case .failure(let e) = CUDA.driverGPUs() else { return }  // a GPU machine: nothing to check here
    #expect(e.localizedDescription.contains("libcuda.so.1"), "\(e)")
    #expect(Torch.cudaDeviceCount == 0 && !Torch.cudaAvailable)
  }

  @Test func loadingWithoutTheNVIDIALibrariesSaysWhatIsMissing() throws {
    guard case .failure = CUDA.driverGPUs() else { return }
    do {
      try CUDA.load()
      Issue.record("CUDA loaded on a machine without a driver")
    } catch let e as CUDAError {
      let m = e.localizedDescription
      #expect(m.hasPrefix("CUDA: ") && m.contains("CLIPKIT_DEVICE=cpu") && !m.contains("\n"), "\(m)")
      // Either libtorch_cuda.so is absent, or its NVIDIA dependencies are (named by the loader).
      #expect(m.contains("libtorch_cuda.so"), "\(m)")
    }
    #expect(CUDA.libraryDirectory == nil)
  }

  @Test func preloadFollowsPyTorch() {
    // torch/__init__.py: cublasLt before cublas, nvJitLink before cusparse, nvrtc before cuDNN's users.
    let order = CUDA.preloadOrder
    #expect(order.firstIndex(of: "libcublasLt.so")! < order.firstIndex(of: "libcublas.so")!)
    #expect(order.firstIndex(of: "libnvJitLink.so")! < order.firstIndex(of: "libcusparse.so")!)
    #expect(order.count == 17)
  }

  @Test func pinnedUploadsAreOnlyForGPUs() throws {
    let t = try Tensor([1, 2] as [Float])
    #expect(try t.upload(to: .cpu) === t)
    #expect(try Device(parsing: "meta") == .meta && Device.cuda(1).description == "cuda:1" && Device.cuda(0).isCUDA && !Device.cpu.isCUDA)
  }
}
