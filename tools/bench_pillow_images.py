#!/usr/bin/env python3
"""Pillow (and torchvision-free NumPy normalisation) on the same job as `clipkit bench images`:
decode + convert("RGB") + resize to size x size + scale/normalise to a float32 CHW array, one
thread. Usage: bench_pillow_images.py FOLDER [--size 256] [--filter bicubic] [--draft] [--repeats 3]"""
import argparse
import os
import time

import numpy as np
from PIL import Image

p = argparse.ArgumentParser()
p.add_argument("folder")
p.add_argument("--size", type=int, default=256)
p.add_argument("--filter", default="bicubic")
p.add_argument("--draft", action="store_true")
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--augment", action="store_true", help="torchvision RandomResizedCrop + ColorJitter + Grayscale (TAO defaults)")
a = p.parse_args()
exts = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
files = sorted(os.path.join(r, f) for r, _, fs in os.walk(a.folder) for f in fs if os.path.splitext(f)[1].lower() in exts)
flt = getattr(Image.Resampling, a.filter.upper())
if a.augment:
    import torch
    import torchvision.transforms as T
    torch.set_num_threads(1)
    aug = T.Compose([T.RandomResizedCrop(a.size, scale=(0.4, 1.0), interpolation=T.InterpolationMode.BICUBIC),
                     T.RandomApply([T.ColorJitter(0.32, 0.32, 0.32, 0.08)], p=0.8), T.RandomGrayscale(0.2),
                     T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
best = float("inf")
for _ in range(a.repeats):
    t = time.perf_counter()
    for f in files:
        im = Image.open(f)
        if a.draft:
            im.draft("RGB", (a.size, a.size))
        if a.augment:
            x = aug(im.convert("RGB"))
        else:
            im = im.convert("RGB").resize((a.size, a.size), flt)
            x = (np.asarray(im, dtype=np.float32) * np.float32(1 / 255) - 0.5) / 0.5
            x = x.transpose(2, 0, 1)
    best = min(best, time.perf_counter() - t)
print("pillow   %d images, %s %dx%d%s%s: %.1f images/s (best of %d, 1 thread, Pillow %s)" % (
    len(files), a.filter, a.size, a.size, ", draft" if a.draft else "", ", augmented" if a.augment else "", len(files) / best, a.repeats, Image.__version__))
