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
      #expect(m.hasPrefix("CUDA: ") && !m.contains("\n"), "\(m)")
      if Tensor.workStarted {
        // Other tests already made tensors in this process: too late for CUDA, and it says so.
        #expect(m.contains("before any tensor work"), "\(m)")
      } else {
        // Either libtorch_cuda.so is absent, or its NVIDIA dependencies are (named by the loader).
        #expect(m.contains("libtorch_cuda.so") && m.contains("CLIPKIT_DEVICE=cpu"), "\(m)")
      }
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

@Suite struct PinnedBatches {
  @Test func writesLandAtTheirOffsetAndAreBounded() throws {
    let t = try Tensor.zeros([2, 3])
    try t.write([1, 2, 3] as [Float], at: 3)
    #expect(try t.toArray(Float.self) == [0, 0, 0, 1, 2, 3])
    #expect(throws: TorchError.self) { try t.write([1, 2] as [Float], at: 5) }
    #expect(throws: TorchError.self) { try t.write([1] as [Int64], at: 0) }
    #expect(throws: TorchError.self) { try t.transpose(0, 1).write([1] as [Float], at: 0) }
  }

  @Test func pinnedMemoryNeedsAGPUOrSaysSo() throws {
    // Page-locked memory comes from the CUDA allocator: without CUDA it is an error, never a crash.
    if CUDA.libraryDirectory == nil {
      #expect(throws: TorchError.self) { try Tensor.emptyPinned([4]) }
    } else {
      #expect(try Tensor.emptyPinned([4]).count == 4)
    }
  }
}
