"""Runs an ONNX model on onnxruntime (CPU) for ClipKit's export tests.

usage: run_onnx.py MODEL.onnx INPUTS.safetensors OUTPUTS.safetensors

Inputs are fed by name from the safetensors file; every graph output is written back, float32
and int64 only. The graph is validated with onnx.checker first. Needs only numpy, onnx and onnxruntime (the safetensors format is parsed here), so CI
does not need the Python torch wheel. Also prints the graph signature as JSON on stdout.
"""
import json
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort

DTYPES = {"F32": np.float32, "I64": np.int64}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=DTYPES[v["dtype"]]).reshape(v["shape"])
    return out


def write(tensors, path):
    header, blobs, off = {}, [], 0
    for k, v in tensors.items():
        v = np.ascontiguousarray(v)
        b = v.tobytes()
        header[k] = {"dtype": NAMES[v.dtype], "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    model, inp, outp = sys.argv[1:4]
    onnx.checker.check_model(model, full_check=True)  # structure and shape inference
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feeds = read(inp)
    names = [i.name for i in session.get_inputs()]
    results = session.run(None, {n: feeds[n] for n in names})
    write({o.name: np.asarray(r) for o, r in zip(session.get_outputs(), results)}, outp)
    sig = {
        "inputs": [[i.name, i.type, [d if isinstance(d, (int, str)) else None for d in i.shape]] for i in session.get_inputs()],
        "outputs": [[o.name, o.type, [d if isinstance(d, (int, str)) else None for d in o.shape]] for o in session.get_outputs()],
    }
    print(json.dumps(sig))


if __name__ == "__main__":
    main()
