import Foundation

// TensorRT has no C API and its C++ headers may not be shipped with ClipKit, so where `trtexec`
// is absent ClipKit drives TensorRT's Python package (what `pip install tensorrt` gives, and what
// TAO Deploy itself uses) through this helper, kept inside the binary so the binary stays one
// file. `probe` reports the version and whether the weak-typing precision flags exist (removed in
// TensorRT 11); `build` builds an engine; `serve` loads an engine and answers run requests on
// stdin/stdout (see TensorRTEngine.swift for the framing). Device buffers come from torch when it
// has CUDA, else from libcudart through ctypes. `serve --backend onnxruntime` answers the same
// requests from an ONNX file with onnxruntime: the tests exercise the framing with it.
enum TensorRTPython {
  static let script = #"""
import json, os, sys

# Replies go to a private copy of stdout; fd 1 is pointed at stderr so that library logs
# (TensorRT's logger, CUDA, torch) can never corrupt the framing.
reply = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)

def out(obj):
    reply.write((json.dumps(obj) + "\n").encode())
    reply.flush()

def die(msg):
    out({"error": msg})
    sys.exit(3)

def probe():
    import tensorrt as trt
    out({"version": trt.__version__, "precision_flags": hasattr(trt.BuilderFlag, "FP16")})

def build(cfg):
    import tensorrt as trt
    logger = trt.Logger(trt.Logger.VERBOSE if cfg["verbose"] else trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(cfg["onnx"]):
        die("TensorRT could not parse %s: %s" % (cfg["onnx"], "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg["workspace_mb"] << 20)
    if cfg["profile"]:
        profile = builder.create_optimization_profile()
        for p in cfg["profile"]:
            profile.set_shape(p["name"], p["min"], p["opt"], p["max"])
        config.add_optimization_profile(profile)
    if cfg["fp16"]:
        config.set_flag(trt.BuilderFlag.FP16)
    if cfg["layer_precisions"]:
        import re
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        types = {"fp32": trt.float32, "float32": trt.float32, "fp16": trt.float16, "float16": trt.float16}
        # trtexec's rules: exact names first, then `*` patterns; only layers computing in floating point.
        exact = {n: p for n, p in cfg["layer_precisions"] if "*" not in n}
        patterns = [(re.compile("^" + ".*".join(map(re.escape, n.split("*"))) + "$"), p) for n, p in cfg["layer_precisions"] if "*" in n]
        skip = {getattr(trt.LayerType, t) for t in ("CONSTANT", "SHAPE", "IDENTITY", "CAST") if hasattr(trt.LayerType, t)}
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            p = exact.get(layer.name) or next((q for r, q in patterns if r.match(layer.name)), None)
            if p is None or layer.type in skip:
                continue
            if any(layer.get_output(k).dtype not in (trt.float32, trt.float16) for k in range(layer.num_outputs)):
                continue
            if p not in types:
                die("layers_precision %s:%s: precision must be fp32 or fp16" % (layer.name, p))
            layer.precision = types[p]
    cache_path = cfg["timing_cache"]
    blob = b""
    if cache_path and os.path.exists(cache_path):
        with open(cache_path, "rb") as f:
            blob = f.read()
    cache = config.create_timing_cache(blob)
    config.set_timing_cache(cache, False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        die("TensorRT failed to build an engine from %s (run with gen_trt_engine.verbose=true for its log)" % cfg["onnx"])
    tmp = cfg["engine"] + ".partial"
    with open(tmp, "wb") as f:
        f.write(plan)
    os.replace(tmp, cfg["engine"])
    if cache_path:
        with open(cache_path + ".partial", "wb") as f:
            f.write(config.get_timing_cache().serialize())
        os.replace(cache_path + ".partial", cache_path)
    out({"engine": cfg["engine"], "version": trt.__version__})

class TorchMemory:
    def __init__(self, gpu):
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        torch.cuda.set_device(gpu)
        self.torch = torch
        self.stream = torch.cuda.current_stream().cuda_stream
    def upload(self, a):
        t = self.torch.from_numpy(a).cuda()
        return t, t.data_ptr()
    def empty(self, shape, dtype):
        import numpy as np
        t = self.torch.empty(tuple(shape), dtype=self.torch.from_numpy(np.empty(0, dtype)).dtype, device="cuda")
        return t, t.data_ptr()
    def download(self, buf, shape, dtype):
        return buf.cpu().numpy()
    def sync(self):
        self.torch.cuda.synchronize()

class CudartMemory:
    def __init__(self, gpu):
        import ctypes, glob, ctypes.util, site
        dirs = site.getsitepackages() + [site.getusersitepackages()] + sys.path
        names = [n for n in [ctypes.util.find_library("cudart")] if n]
        names += sorted(p for d in dirs for p in glob.glob(os.path.join(d, "nvidia", "*", "lib", "libcudart.so*")))
        names += ["libcudart.so.13", "libcudart.so.12"]
        self.rt = None
        for n in names:
            try:
                lib = ctypes.CDLL(n)
            except OSError:
                continue
            if hasattr(lib, "cudaMalloc"):
                self.rt = lib
                break
        if self.rt is None:
            raise RuntimeError("neither torch with CUDA nor libcudart was found for device buffers")
        self.c = ctypes
        self.check(self.rt.cudaSetDevice(gpu), "cudaSetDevice")
        self.stream = 0
    def check(self, code, what):
        if code != 0:
            raise RuntimeError("%s failed with CUDA error %d" % (what, code))
    def empty(self, shape, dtype):
        import numpy as np
        n = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        p = self.c.c_void_p()
        self.check(self.rt.cudaMalloc(self.c.byref(p), self.c.c_size_t(n)), "cudaMalloc")
        return Freed(self, p.value), p.value
    def upload(self, a):
        buf, ptr = self.empty(a.shape, a.dtype)
        self.check(self.rt.cudaMemcpy(self.c.c_void_p(ptr), self.c.c_void_p(a.ctypes.data), self.c.c_size_t(a.nbytes), 1), "cudaMemcpy")
        return buf, ptr
    def download(self, buf, shape, dtype):
        import numpy as np
        a = np.empty(shape, dtype)
        self.check(self.rt.cudaMemcpy(self.c.c_void_p(a.ctypes.data), self.c.c_void_p(buf.ptr), self.c.c_size_t(a.nbytes), 2), "cudaMemcpy")
        return a
    def sync(self):
        self.check(self.rt.cudaDeviceSynchronize(), "cudaDeviceSynchronize")

class Freed:
    def __init__(self, mem, ptr):
        self.mem, self.ptr = mem, ptr
    def __del__(self):
        self.mem.rt.cudaFree(self.mem.c.c_void_p(self.ptr))

class TensorRTBackend:
    def __init__(self, path, gpu):
        import numpy as np
        import tensorrt as trt
        self.trt = trt
        try:
            self.mem = TorchMemory(gpu)
        except Exception:
            self.mem = CudartMemory(gpu)
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")
        with open(path, "rb") as f:
            self.engine = trt.Runtime(logger).deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeError("%s: TensorRT %s could not load this engine (engines only run on the TensorRT version and GPU that built them)" % (path, trt.__version__))
        self.context = self.engine.create_execution_context()
        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            n = self.engine.get_tensor_name(i)
            d = {"name": n, "dtype": np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))).name, "shape": list(self.engine.get_tensor_shape(n))}
            if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT:
                if -1 in d["shape"]:
                    lo, _, hi = self.engine.get_tensor_profile_shape(n, 0)
                    d["min"], d["max"] = list(lo), list(hi)
                self.inputs.append(d)
            else:
                self.outputs.append(d)
    def run(self, feeds, wanted):
        import numpy as np
        keep = []
        for d in self.inputs:
            a = feeds[d["name"]] if d["name"] in feeds else filler(d, feeds)
            a = np.ascontiguousarray(a.astype(d["dtype"], copy=False))
            if self.context.set_input_shape(d["name"], a.shape) is False:
                raise RuntimeError("input %s of shape %s is outside the engine's profile (%s to %s)" % (d["name"], list(a.shape), d.get("min", d["shape"]), d.get("max", d["shape"])))
            buf, ptr = self.mem.upload(a)
            keep.append(buf)
            self.context.set_tensor_address(d["name"], ptr)
        results = {}
        for d in self.outputs:
            shape = tuple(self.context.get_tensor_shape(d["name"]))
            buf, ptr = self.mem.empty(shape, d["dtype"])
            keep.append(buf)
            results[d["name"]] = (buf, shape, d["dtype"])
            self.context.set_tensor_address(d["name"], ptr)
        if not self.context.execute_async_v3(self.mem.stream):
            raise RuntimeError("TensorRT execution failed")
        self.mem.sync()
        return {n: self.mem.download(*results[n]) for n in wanted}

class OnnxRuntimeBackend:
    TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool"}
    def __init__(self, path, gpu):
        import onnxruntime as ort
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        def sig(v):
            return {"name": v.name, "dtype": self.TYPES.get(v.type, v.type), "shape": [d if isinstance(d, int) else -1 for d in v.shape]}
        self.inputs = [sig(v) for v in self.session.get_inputs()]
        self.outputs = [sig(v) for v in self.session.get_outputs()]
        for d in self.inputs:
            if -1 in d["shape"]:
                d["min"] = [1 if s == -1 else s for s in d["shape"]]
    def run(self, feeds, wanted):
        full = {d["name"]: feeds[d["name"]] if d["name"] in feeds else filler(d, feeds) for d in self.inputs}
        return dict(zip(wanted, self.session.run(wanted, full)))

def filler(d, feeds):
    # The other tower of a combined model: every input must be bound, and inputs whose batch axes
    # share a name must agree, so zeros (a mask of ones) at the batch of the inputs given.
    import numpy as np
    batch = next((a.shape[0] for a in feeds.values() if a.ndim > 0), None)
    lo = d.get("min", d["shape"])
    shape = [(batch if k == 0 and batch is not None else lo[k]) if s == -1 else s for k, s in enumerate(d["shape"])]
    return (np.ones if d["name"] == "attention_mask" else np.zeros)(shape, d["dtype"])  # as TAO Deploy

def read_exact(n):
    b = sys.stdin.buffer.read(n)
    if len(b) != n:
        sys.exit(0)
    return b

def serve(path, backend, gpu):
    if backend == "tensorrt":
        import tensorrt  # a missing TensorRT is the first thing to report
    import numpy as np
    model = (OnnxRuntimeBackend if backend == "onnxruntime" else TensorRTBackend)(path, gpu)
    out({"inputs": model.inputs, "outputs": model.outputs})
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            return
        req = json.loads(line)
        feeds = {}
        for t in req["inputs"]:
            dt = np.dtype(t["dtype"])
            n = int(np.prod(t["shape"])) * dt.itemsize
            feeds[t["name"]] = np.frombuffer(read_exact(n), dt).reshape(t["shape"])
        try:
            res = model.run(feeds, req["outputs"])
        except Exception as e:
            out({"error": str(e)})
            continue
        arrays = [np.ascontiguousarray(res[n]) for n in req["outputs"]]
        out({"outputs": [{"name": n, "dtype": a.dtype.name, "shape": list(a.shape)} for n, a in zip(req["outputs"], arrays)]})
        for a in arrays:
            reply.write(a.tobytes())
        reply.flush()

def main():
    cmd = sys.argv[1]
    try:
        if cmd == "probe":
            probe()
        elif cmd == "build":
            build(json.loads(sys.argv[2]))
        elif cmd == "serve":
            serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    except ImportError as e:
        die("ImportError: %s" % e)
    except Exception as e:
        die("%s: %s" % (type(e).__name__, e))

main()
"""#
}
