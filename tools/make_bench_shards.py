#!/usr/bin/env python3
"""Writes WebDataset shards for `clipkit bench shards`: N shards of M samples, each an image-sized
member of random bytes (`.jpg`, ~`--kb` KB; the benchmark reads bytes, it does not decode) and a
caption, plus `local.txt` listing them.

    python3 tools/make_bench_shards.py /tmp/bench-shards --shards 20 --samples 1000 --kb 100
"""
import argparse
import io
import os
import random
import tarfile

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--shards", type=int, default=20)
ap.add_argument("--samples", type=int, default=1000)
ap.add_argument("--kb", type=int, default=100)
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
rng = random.Random(0)
names = []
for s in range(a.shards):
    name = os.path.join(a.out, f"shard-{s:06d}.tar")
    with tarfile.open(name, "w", format=tarfile.USTAR_FORMAT) as t:
        for i in range(a.samples):
            key = f"{s:06d}{i:06d}"
            for ext, data in (("jpg", rng.randbytes(a.kb * 1024 + rng.randrange(-a.kb * 256, a.kb * 256))),
                              ("txt", f"sample {i} of shard {s}".encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    names.append(name)
open(os.path.join(a.out, "local.txt"), "w").write("\n".join(names) + "\n")
print(f"{len(names)} shards, {sum(os.path.getsize(n) for n in names) / 1e9:.2f} GB in {a.out}")
