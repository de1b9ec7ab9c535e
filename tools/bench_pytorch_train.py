#!/usr/bin/env python3
"""The same training step as `clipkit bench train` in PyTorch eager: transformers SiglipModel (SDPA
attention) with TAO's adapter logit parameters, SigLIP loss, torch.optim.AdamW with TAO's groups
(fused on GPUs), torch.autocast, synthetic batch. FLOPs are counted as clipkit counts them.
Usage: bench_pytorch_train.py --model DIR [--batch-size 16] [--threads 2] [--steps 5] [--warmup 1]
                              [--precision fp32|bf16|fp16] [--device cpu|cuda] [--peak-tflops 989]"""
import argparse
import time

import torch
from transformers import SiglipConfig, SiglipModel

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--batch-size", type=int, default=16)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
p.add_argument("--device", default="cpu")
p.add_argument("--peak-tflops", type=float)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
dev = torch.device(a.device)
cfg = SiglipConfig.from_pretrained(a.model)
model = SiglipModel._from_config(cfg, attn_implementation="sdpa").to(dev).train()
scale = torch.nn.Parameter(torch.tensor(2.3026, device=dev))
bias = torch.nn.Parameter(torch.tensor(-10.0, device=dev))
named = list(model.named_parameters()) + [("logit_scale", scale), ("logit_bias", bias)]
decay, no_decay = [], []
for n, q in named:
    (no_decay if q.ndim < 2 or any(s in n for s in ["bn", "ln", "bias", "logit_scale"]) else decay).append(q)
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-4,
                        betas=(0.9, 0.95), eps=1e-6, fused=dev.type == "cuda")
cast = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a.precision]
scaler = torch.amp.GradScaler(dev.type) if cast == torch.float16 else None
v, t = cfg.vision_config, cfg.text_config
image_tokens = (v.image_size // v.patch_size) ** 2
text_tokens = t.max_position_embeddings
px = torch.randn(a.batch_size, 3, v.image_size, v.image_size).to(dev)
ids = torch.randint(0, 1000, (a.batch_size, text_tokens)).to(dev)


def flops():
    """Every forward matmul (2·in·out per token; pooling heads see one query token), the attention
    products (4·T²·D per layer), times 3 for forward + backward."""
    f = 0.0
    for n, q in model.named_parameters():
        tokens = image_tokens if "vision_model." in n else text_tokens
        if not n.endswith("weight") or ("embedding.weight" in n and "patch_embedding" not in n) or q.ndim not in (2, 4):
            continue
        if ".head." in n:
            f += 2 * q.numel() * ((1 + 2 * tokens) / 3 if n.endswith("in_proj_weight") else 1)
        else:
            f += 2 * q.numel() * tokens
    for n, q in model.named_parameters():
        if n.endswith("self_attn.q_proj.weight"):
            tk = image_tokens if "vision_model." in n else text_tokens
            f += 4 * tk * tk * q.shape[0]
    return 3 * f * a.batch_size


def step():
    with torch.autocast(dev.type, dtype=cast or torch.bfloat16, enabled=cast is not None):
        i = model.get_image_features(pixel_values=px)
        t = model.get_text_features(input_ids=ids)
        i = getattr(i, "pooler_output", i).float()
        t = getattr(t, "pooler_output", t).float()
        i = i / i.norm(dim=-1, keepdim=True)
        t = t / t.norm(dim=-1, keepdim=True)
        logits = i @ t.T * scale.exp() + bias
        labels = 2 * torch.eye(len(px), device=dev) - 1
        loss = -torch.nn.functional.logsigmoid(labels * logits).sum() / len(px)
    opt.zero_grad()
    if scaler:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


for _ in range(max(a.warmup, 1)):
    step()
sync()
t0 = time.perf_counter()
for _ in range(a.steps):
    step()
sync()
s = time.perf_counter() - t0
achieved = flops() * a.steps / s / 1e12
line = "pytorch  train step: batch %d, %d threads, %s, %s: %.2f images/s (%.3f s/step), %.1f TFLOP/s" % (
    a.batch_size, a.threads, a.precision, a.device, a.batch_size * a.steps / s, s / a.steps, achieved)
if a.peak_tflops:
    line += ", MFU %.1f %%" % (100 * achieved / a.peak_tflops)
if dev.type == "cuda":
    line += ", peak memory %.2f GiB" % (torch.cuda.max_memory_allocated(dev) / 2**30)
print(line + " (torch %s)" % torch.__version__)
