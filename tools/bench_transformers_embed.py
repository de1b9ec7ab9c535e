#!/usr/bin/env python3
"""transformers on the same job as `clipkit bench embed`: Pillow SigLIP processor + SiglipModel
get_image_features, batch B, T torch threads, fp32 or bf16 autocast. Usage:
  bench_transformers_embed.py --model DIR --images DIR [--batch-size 16] [--threads 2] [--repeats 2] [--precision bf16]"""
import argparse
import os
import time

import torch
from PIL import Image
from transformers import SiglipModel
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--images", required=True)
p.add_argument("--batch-size", type=int, default=16)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--repeats", type=int, default=2)
p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
a = p.parse_args()
torch.set_num_threads(a.threads)
exts = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
files = sorted(os.path.join(r, f) for r, _, fs in os.walk(a.images) for f in fs if os.path.splitext(f)[1].lower() in exts)
model = SiglipModel.from_pretrained(a.model).eval()
proc = SiglipImageProcessorPil.from_pretrained(a.model)
best = float("inf")
for rep in range(a.repeats):
    t = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
        for i in range(0, len(files), a.batch_size):
            ims = [Image.open(f).convert("RGB") for f in files[i:i + a.batch_size]]
            px = proc(images=ims, return_tensors="pt")["pixel_values"]
            model.get_image_features(pixel_values=px)
    s = time.perf_counter() - t
    if a.repeats == 1 or rep > 0:
        best = min(best, s)
print("transformers image embedding: %d images, batch %d, %d threads, %s: %.2f images/s (torch %s)" % (
    len(files), a.batch_size, a.threads, a.precision, len(files) / best, torch.__version__))
