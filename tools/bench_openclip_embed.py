#!/usr/bin/env python3
"""open_clip on the same job as `clipkit bench embed` for an open_clip model directory
(open_clip_config.json + open_clip_model.safetensors): Pillow decode + convert("RGB"), open_clip's
eval transform, CLIP.encode_image, batch B, T torch threads, fp32 or bf16 autocast. Usage:
  bench_openclip_embed.py --model DIR --images DIR [--batch-size 16] [--threads 2] [--repeats 2] [--precision bf16]"""
import argparse
import json
import os
import time

import open_clip
import torch
from open_clip.transform import image_transform
from PIL import Image
from safetensors.torch import load_file

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--images", required=True)
p.add_argument("--batch-size", type=int, default=16)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--repeats", type=int, default=2)
p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
a = p.parse_args()
torch.set_num_threads(a.threads)
cfg = json.load(open(os.path.join(a.model, "open_clip_config.json")))
mc = dict(cfg["model_cfg"])
text_cfg = {k: v for k, v in mc["text_cfg"].items() if k not in ("hf_tokenizer_name", "tokenizer_kwargs")}
model = open_clip.model.CLIP(embed_dim=mc["embed_dim"], vision_cfg=mc["vision_cfg"], text_cfg=text_cfg,
                             quick_gelu=mc.get("quick_gelu", False), init_logit_bias=mc.get("init_logit_bias")).eval()
model.load_state_dict(load_file(os.path.join(a.model, "open_clip_model.safetensors")))
pc = cfg.get("preprocess_cfg", {})
size = mc["vision_cfg"]["image_size"]
preprocess = image_transform(size, is_train=False, mean=pc.get("mean"), std=pc.get("std"),
                             resize_mode=pc.get("resize_mode"), interpolation=pc.get("interpolation"))
exts = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
files = sorted(os.path.join(r, f) for r, _, fs in os.walk(a.images) for f in fs if os.path.splitext(f)[1].lower() in exts)
best = float("inf")
for rep in range(a.repeats):
    t = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
        for i in range(0, len(files), a.batch_size):
            px = torch.stack([preprocess(Image.open(f).convert("RGB")) for f in files[i:i + a.batch_size]])
            model.encode_image(px)
    s = time.perf_counter() - t
    if a.repeats == 1 or rep > 0:
        best = min(best, s)
print("open_clip image embedding: %d images, batch %d, %d threads, %s: %.2f images/s (open_clip %s, torch %s)" % (
    len(files), a.batch_size, a.threads, a.precision, len(files) / best, open_clip.__version__, torch.__version__))
