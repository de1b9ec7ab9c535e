#!/usr/bin/env python3
"""The same training step as `clipkit bench train` in PyTorch: transformers SiglipModel with TAO's
adapter logit parameters, SigLIP loss, torch.optim.AdamW with TAO's groups, synthetic batch.
Usage: bench_pytorch_train.py --model DIR [--batch-size 16] [--threads 2] [--steps 5] [--precision fp32|bf16]"""
import argparse
import time

import torch
from transformers import SiglipConfig, SiglipModel

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--batch-size", type=int, default=16)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--precision", default="fp32")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
model = SiglipModel(SiglipConfig.from_pretrained(a.model)).train()
scale = torch.nn.Parameter(torch.tensor(2.3026))
bias = torch.nn.Parameter(torch.tensor(-10.0))
decay, no_decay = [], []
for n, q in list(model.named_parameters()) + [("logit_scale", scale), ("logit_bias", bias)]:
    (no_decay if q.ndim < 2 or any(s in n for s in ["bn", "ln", "bias", "logit_scale"]) else decay).append(q)
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-4,
                        betas=(0.9, 0.95), eps=1e-6)
cfg = model.config
px = torch.randn(a.batch_size, 3, cfg.vision_config.image_size, cfg.vision_config.image_size)
ids = torch.randint(0, 1000, (a.batch_size, cfg.text_config.max_position_embeddings))


def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
        i = model.get_image_features(pixel_values=px)
        t = model.get_text_features(input_ids=ids)
    i = getattr(i, "pooler_output", i).float()
    t = getattr(t, "pooler_output", t).float()
    i = i / i.norm(dim=-1, keepdim=True)
    t = t / t.norm(dim=-1, keepdim=True)
    logits = i @ t.T * scale.exp() + bias
    labels = 2 * torch.eye(len(px)) - 1
    loss = -torch.nn.functional.logsigmoid(labels * logits).sum() / len(px)
    opt.zero_grad()
    loss.backward()
    opt.step()


step()
t0 = time.perf_counter()
for _ in range(a.steps):
    step()
s = time.perf_counter() - t0
print("pytorch  train step: batch %d, %d threads, %s: %.2f images/s (%.2f s/step, torch %s)" % (
    a.batch_size, a.threads, a.precision, a.batch_size * a.steps / s, s / a.steps, torch.__version__))
