import ArgumentParser
import Deploy
import Foundation
import Jobs
import Torch

/// Prints what this build runs on: libtorch version, threads, GPUs and their attention kernels.
struct Info: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Show the libtorch version, CPU threads, each GPU (name, memory, compute capability), the SDPA kernel it picks, and the TensorRT gen_trt_engine would use.")

  // The attention shapes to ask SDPA about; the defaults are siglip2-so400m-patch16-256's towers
  // (16 heads of 72, 256 patch tokens, 64 text tokens).
  @Option(help: "Attention heads.") var heads = 16
  @Option(help: "Head dimension.") var headDim = 72
  @Option(help: "Image tokens.") var imageTokens = 256
  @Option(help: "Text tokens.") var textTokens = 64

  func run() throws {
    print("clipkit \(ClipKitVersion.string)")
    print("libtorch \(Torch.version)")
    print("cpu threads \(Torch.threads)")
    switch CUDA.driverGPUs() {
    case .failure(let e):
      print("gpus none (\(oneLine(e)))")
    case .success(let gpus) where gpus.isEmpty:
      print("gpus none (the NVIDIA driver reports no device)")
    case .success(let gpus):
      print("gpus \(gpus.count)")
      do {
        try CUDA.load()
        print("cuda libtorch_cuda.so from \(CUDA.libraryDirectory ?? "?")")
      } catch {
        print("cuda not usable: \(oneLine(error))")
        for g in gpus { print("  \(g)") }
        break
      }
      for g in gpus {
        print("  \(g)")
        for dtype in [DType.bfloat16, .float16, .float32] {
          let choice = try [("image", imageTokens, false), ("text", textTokens, false)].map { tower, tokens, causal in
            let q = try Tensor.randn([1, heads, tokens, headDim], dtype: dtype, device: .cuda(g.index))
            return "\(tower) \(try SDPBackend.choice(query: q, key: q, value: q, causal: causal))"
          }
          print("    sdpa \(dtype) [\(heads)×\(headDim)]: \(choice.joined(separator: ", "))")
        }
      }
      print("  (with train.cudnn.deterministic=true, TAO's default, training uses the math kernel)")
    }
    switch try? TensorRTBuilder.find() {
    case .trtexec(let path, let flags)?: print("tensorrt trtexec \(path)\(flags ? "" : " (strongly typed: fp16 builds get a typed graph)")")
    case .python(let py, let version, let flags)?: print("tensorrt \(version) (Python package of \(py))\(flags ? "" : ", strongly typed: fp16 builds get a typed graph")")
    case nil: print("tensorrt not found (trtexec on PATH or CLIPKIT_TRTEXEC, or `pip install tensorrt` for CLIPKIT_PYTHON/python3)")
    }
  }
}
