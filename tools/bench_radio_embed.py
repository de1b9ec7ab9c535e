#!/usr/bin/env python3
"""NVlabs/RADIO's own code on the same job as `clipkit bench embed --model-type c-radio_v3-b`:
images decoded with Pillow, open_clip's eval transform (shortest side bicubic, centre crop, OpenAI
statistics) at --size, TAO's path (hubconf.radio_model, make_preprocessor_external, eval), the
adaptor's summary L2-normalised, batch B, fp32 or autocast. --make-checkpoint writes a random
ViT-B-sized C-RADIOv3 hub checkpoint (RADIO's own model construction; siglip2 teacher) first.
Usage:
  bench_radio_embed.py --radio-src DIR --checkpoint FILE [--make-checkpoint] --images DIR
                       [--batch-size 16] [--threads 2] [--workers 0] [--repeats 2] [--precision fp32|bf16] [--size 224]
The siglip2 adaptor loads its text tower from the Hugging Face cache (HF_HUB_CACHE): point it at
any google/siglip2-so400m-patch16-naflex copy (ClipKit's tiny fixture will do; text is not timed)."""
import argparse
import os
import sys
import time
from argparse import Namespace

p = argparse.ArgumentParser()
p.add_argument("--radio-src", default=os.environ.get("RADIO_SRC"), required=False)
p.add_argument("--checkpoint", required=True)
p.add_argument("--make-checkpoint", action="store_true")
p.add_argument("--images")
p.add_argument("--batch-size", type=int, default=16)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--workers", type=int, default=0)
p.add_argument("--repeats", type=int, default=2)
p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
p.add_argument("--size", type=int, default=224)
a = p.parse_args()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms as T  # noqa: E402

torch.set_num_threads(a.threads)
sys.path.insert(0, os.path.abspath(a.radio_src))
import hubconf  # noqa: E402,F401  (registers RADIO's timm models)
from radio.radio_model import create_model_from_args  # noqa: E402
from radio.adaptor_mlp import MLP2  # noqa: E402

if a.make_checkpoint:
    torch.manual_seed(0)
    teachers = [dict(name="clip", type="open_clip", model="ViT-H-14-378-quickgelu", pretrained="dfn5b"),
                dict(name="siglip2", type="siglip2", model="siglip2-so400m"),
                dict(name="dino_v2", type="dino_v2", model="dinov2_vitg14_reg"),
                dict(name="sam", type="sam", model="vit-h", use_summary=False)]
    args = Namespace(model="vit_base_patch16_v2_224", pretrained=False, in_chans=None, input_size=[3, 432, 432], num_classes=0,
                     drop=0.0, drop_path=0.0, drop_block=None, gp=None, bn_momentum=None, bn_eps=None, torchscript=False,
                     initial_checkpoint="", model_kwargs={}, cpe_max_size=2048, teachers=teachers, cls_token_per_teacher=True,
                     spectral_reparam=False, mlp_version="v2", register_multiple=8, dtype=torch.float32, model_norm=False)
    vit = create_model_from_args(Namespace(**{**vars(args), "model_kwargs": {}}))
    sd = {"base_model." + k: v.half() for k, v in vit.state_dict().items()}
    for i, t in enumerate(teachers):
        head, feat = MLP2(768, 1520, 1152, num_inner=1), MLP2(768, 1520, 1152, num_inner=1)
        sd.update({f"_heads.{i}.{k}": v.half() for k, v in head.state_dict().items()})
        sd.update({f"_feature_projections.{i}.{k}": v.half() for k, v in feat.state_dict().items()})
    sd["input_conditioner.norm_mean"] = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    sd["input_conditioner.norm_std"] = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    os.makedirs(os.path.dirname(os.path.abspath(a.checkpoint)), exist_ok=True)
    torch.save({"args": args, "state_dict_ema": sd}, a.checkpoint)
    print("wrote", a.checkpoint, sum(v.numel() for k, v in sd.items() if k.startswith("base_model.")) / 1e6, "M ViT parameters")
    if not a.images:
        sys.exit(0)

radio = hubconf.radio_model(version=a.checkpoint, adaptor_names=["siglip2"])
radio.make_preprocessor_external()
radio.eval()
tf = T.Compose([T.Resize(a.size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(a.size), T.ToTensor(),
                T.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])
exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
files = sorted(os.path.join(r, f) for r, _, fs in os.walk(a.images) for f in fs if os.path.splitext(f)[1].lower() in exts)
cast = {"fp32": None, "bf16": torch.bfloat16}[a.precision]


class Images(torch.utils.data.Dataset):
    def __len__(self):
        return len(files)

    def __getitem__(self, i):
        return tf(Image.open(files[i]).convert("RGB"))


def batches():
    if a.workers > 0:
        yield from torch.utils.data.DataLoader(Images(), batch_size=a.batch_size, num_workers=a.workers)
    else:
        for i in range(0, len(files), a.batch_size):
            yield torch.stack([tf(Image.open(f).convert("RGB")) for f in files[i:i + a.batch_size]])


best = float("inf")
for r in range(a.repeats):
    t = time.time()
    with torch.no_grad(), torch.autocast("cpu", dtype=cast or torch.bfloat16, enabled=cast is not None):
        for x in batches():
            emb = torch.nn.functional.normalize(radio(x)["siglip2"].summary.float(), dim=-1)
    s = time.time() - t
    if a.repeats == 1 or r > 0:
        best = min(best, s)
print(f"RADIO    image embedding: {len(files)} images, batch {a.batch_size}, {a.threads} threads, {a.precision}: {len(files) / best:.2f} images/s")
