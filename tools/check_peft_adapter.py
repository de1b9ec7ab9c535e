#!/usr/bin/env python3
"""Loads a ClipKit `export.adapter_dir` folder with Hugging Face peft onto transformers' SiglipModel
and compares its L2-normalised embeddings with ClipKit's merged ONNX export of the same checkpoint
(onnxruntime). Needs torch, transformers, peft, onnxruntime (the reference environment):

    check_peft_adapter.py --base MODEL_DIR --adapter ADAPTER_DIR --onnx EXPORT.onnx --reference MODEL_DIR/reference.safetensors

The reference file gives pixel_values and input_ids (any safetensors with those two keys)."""
import argparse

import numpy as np
import onnxruntime as ort
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import SiglipModel

p = argparse.ArgumentParser()
p.add_argument("--base", required=True)
p.add_argument("--adapter", required=True)
p.add_argument("--onnx", required=True)
p.add_argument("--reference", required=True)
a = p.parse_args()
ref = load_file(a.reference)
px, ids = ref["pixel_values"], ref["input_ids"]
model = PeftModel.from_pretrained(SiglipModel.from_pretrained(a.base), a.adapter).eval()
with torch.no_grad():
    img, txt = model.get_image_features(pixel_values=px), model.get_text_features(input_ids=ids)
img = torch.nn.functional.normalize(getattr(img, "pooler_output", img), dim=-1).numpy()
txt = torch.nn.functional.normalize(getattr(txt, "pooler_output", txt), dim=-1).numpy()
s = ort.InferenceSession(a.onnx)
out = dict(zip([o.name for o in s.get_outputs()],
               s.run(None, {"image": px.numpy(), "input_ids": ids.numpy(), "attention_mask": np.ones_like(ids.numpy())})))
di, dt = np.abs(out["image_embedding"] - img).max(), np.abs(out["text_embedding"] - txt).max()
print(f"peft-loaded vs ClipKit's merged export: image max |diff| {di:.3g}, text {dt:.3g}")
raise SystemExit(0 if max(di, dt) < 1e-4 else 1)
