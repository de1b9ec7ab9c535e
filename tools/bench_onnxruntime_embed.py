#!/usr/bin/env python3
"""ONNX Runtime (CPU) on an exported vision graph (`clipkit export`, encoder_type separate):
model only, no decoding, batch B of random pixels, T intra-op threads, fp32. Usage:
  bench_onnxruntime_embed.py MODEL_vision.onnx [--batch-size 16] [--threads 2] [--runs 3]"""
import argparse
import time

import numpy as np
import onnxruntime as ort

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("--batch-size", type=int, default=16)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--runs", type=int, default=3)
a = p.parse_args()
so = ort.SessionOptions()
so.intra_op_num_threads = a.threads
so.inter_op_num_threads = 1
s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
shape = [a.batch_size] + list(s.get_inputs()[0].shape[1:])
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
s.run(["image_embedding"], {"image": x})  # warm-up
t = time.perf_counter()
for _ in range(a.runs):
    s.run(["image_embedding"], {"image": x})
dt = time.perf_counter() - t
print("onnxruntime %s image embedding (model only): batch %d, %d threads, fp32: %.2f images/s" % (
    ort.__version__, a.batch_size, a.threads, a.batch_size * a.runs / dt))
