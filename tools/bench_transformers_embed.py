#!/usr/bin/env python3
"""transformers on the same job as `clipkit bench embed`: Pillow SigLIP processor + SiglipModel
get_image_features (SDPA), batch B, fp32 or autocast, on CPU or a GPU. With --workers N, images
are decoded and preprocessed by a torch DataLoader with N worker processes (pinned memory on
GPUs), as a PyTorch user would feed a GPU. Usage:
  bench_transformers_embed.py --model DIR --images DIR [--batch-size 16] [--threads 2] [--workers 0]
                              [--repeats 2] [--precision fp32|bf16|fp16] [--device cpu|cuda] [--random-init]"""
import argparse
import os
import time

import torch
from PIL import Image
from transformers import SiglipConfig, SiglipModel
try:  # the Pillow-only processor of newer transformers; the classic one otherwise
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil as Processor
except ImportError:
    from transformers import SiglipImageProcessor as Processor

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--images", required=True)
p.add_argument("--batch-size", type=int, default=16)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--workers", type=int, default=0)
p.add_argument("--repeats", type=int, default=2)
p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
p.add_argument("--device", default="cpu")
p.add_argument("--random-init", action="store_true")
a = p.parse_args()
torch.set_num_threads(a.threads)
dev = torch.device(a.device)
exts = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
files = sorted(os.path.join(r, f) for r, _, fs in os.walk(a.images) for f in fs if os.path.splitext(f)[1].lower() in exts)
if a.random_init:
    torch.manual_seed(0)
    model = SiglipModel._from_config(SiglipConfig.from_pretrained(a.model), attn_implementation="sdpa")
else:
    model = SiglipModel.from_pretrained(a.model, attn_implementation="sdpa")
model = model.to(dev).eval()
proc = Processor.from_pretrained(a.model)
cast = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a.precision]


class Images(torch.utils.data.Dataset):
    def __len__(self):
        return len(files)

    def __getitem__(self, i):
        return proc(images=[Image.open(files[i]).convert("RGB")], return_tensors="pt")["pixel_values"][0]


def batches():
    if a.workers > 0:
        yield from torch.utils.data.DataLoader(Images(), batch_size=a.batch_size, num_workers=a.workers,
                                               pin_memory=dev.type == "cuda", persistent_workers=False)
    else:
        for i in range(0, len(files), a.batch_size):
            ims = [Image.open(f).convert("RGB") for f in files[i:i + a.batch_size]]
            yield proc(images=ims, return_tensors="pt")["pixel_values"]


best = float("inf")
for rep in range(a.repeats):
    t = time.perf_counter()
    with torch.inference_mode(), torch.autocast(dev.type, dtype=cast or torch.bfloat16, enabled=cast is not None):
        for px in batches():
            out = model.get_image_features(pixel_values=px.to(dev, non_blocking=True))
            getattr(out, "pooler_output", out).float().cpu()  # the embeddings reach the host, as clipkit's do
    s = time.perf_counter() - t
    if a.repeats == 1 or rep > 0:
        best = min(best, s)
extra = ", peak memory %.2f GiB" % (torch.cuda.max_memory_allocated(dev) / 2**30) if dev.type == "cuda" else ""
print("transformers image embedding: %d images, batch %d, %d threads, %d workers, %s, %s: %.2f images/s%s (torch %s)" % (
    len(files), a.batch_size, a.threads, a.workers, a.precision, a.device, len(files) / best, extra, torch.__version__))
