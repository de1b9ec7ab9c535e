import Foundation
import Spec
import Torch

/// Where a job's tensors live, from TAO's keys: `train|evaluate|inference.num_gpus/gpu_ids`,
/// `export.on_cpu/gpu_id`. As TAO, a GPU is the default; a machine without one runs on CPU and
/// says so in one line; a machine with one whose CUDA libraries cannot load fails saying what is
/// missing (CLIPKIT_DEVICE=cpu or num_gpus=0 then runs on CPU). CLIPKIT_DEVICE=cpu|cuda|cuda:N
/// overrides the spec (cuda: a GPU must be used, or the job fails).
/// A rank of a distributed launch takes the GPU numbered by its LOCAL_RANK, as under torchrun.
func placement(_ ctx: ActionContext, localRank: Int? = nil) throws -> Device {
  let c = ctx.config
  let (key, index, wantsGPU): (String, Int, Bool)
  switch ctx.name {
  case "train" where localRank != nil: (key, index, wantsGPU) = ("LOCAL_RANK", localRank!, c.train.numGpus > 0)
  case "train": (key, index, wantsGPU) = ("train.gpu_ids", c.train.gpuIds.first ?? 0, c.train.numGpus > 0)
  case "evaluate": (key, index, wantsGPU) = ("evaluate.gpu_ids", c.evaluate.gpuIds.first ?? 0, c.evaluate.numGpus > 0)
  case "inference": (key, index, wantsGPU) = ("inference.gpu_ids", c.inference.gpuIds.first ?? 0, c.inference.numGpus > 0)
  case "export": (key, index, wantsGPU) = ("export.gpu_id", c.export.gpuId, !c.export.onCpu)
  default: return .cpu
  }
  if let forced = ProcessInfo.processInfo.environment["CLIPKIT_DEVICE"], !forced.isEmpty {
    let d: Device
    do { d = try Device(parsing: forced) } catch { throw ActionError.input("CLIPKIT_DEVICE=\(forced): expected cpu, cuda or cuda:N") }
    guard case .cuda(let i) = d else {
      print("Running on CPU (CLIPKIT_DEVICE=\(forced))")
      return .cpu
    }
    return try useGPU(i, key: "CLIPKIT_DEVICE", required: true)
  }
  guard wantsGPU else {
    print("Running on CPU (\(ctx.name == "export" ? "export.on_cpu" : ctx.name + ".num_gpus=0"))")
    return .cpu
  }
  return try useGPU(index, key: key, required: false)
}

private func useGPU(_ index: Int, key: String, required: Bool) throws -> Device {
  let gpus: [CUDA.GPU]
  switch CUDA.driverGPUs() {
  case .success(let g): gpus = g
  case .failure(let e):
    if required { throw ActionError.input("\(key) asks for a GPU but there is none: \(oneLine(e))") }
    print("No GPU found (\(oneLine(e))): running on CPU")
    return .cpu
  }
  guard !gpus.isEmpty else {
    if required { throw ActionError.input("\(key) asks for a GPU but the NVIDIA driver reports none") }
    print("No GPU found (the NVIDIA driver reports none): running on CPU")
    return .cpu
  }
  guard index >= 0, index < gpus.count else {
    throw ActionError.input("\(key): GPU \(index) does not exist; this machine has \(gpus.count) (cuda:0…cuda:\(gpus.count - 1))")
  }
  try CUDA.load()
  try CUDA.setDevice(index)
  print("Running on \(gpus[index])")
  return .cuda(index)
}

/// fp32 on a GPU means fp32: TF32 off for matmuls and convolutions, so GPU results match the CPU's
/// to float precision (PyTorch turns TF32 on for cuDNN convolutions by default). The mixed
/// precisions keep PyTorch's defaults.
func setMathMode(_ device: Device, precision: String) throws {
  guard device.isCUDA else { return }
  if precision == "fp32" { try Torch.setTF32(matmul: false, cudnn: false) } else { try Torch.setTF32(matmul: false, cudnn: true) }
}

/// Peak GPU memory since the last reset, as a short text ("" on CPU).
func peakMemory(_ device: Device, reset: Bool = true) -> String {
  guard case .cuda(let i) = device, let m = try? CUDA.memory(i) else { return "" }
  if reset { try? CUDA.resetPeakMemory(i) }
  return String(format: "peak GPU memory %.2f GiB allocated, %.2f GiB reserved", Double(m.peakAllocated) / 1_073_741_824,
                Double(m.peakReserved) / 1_073_741_824)
}
