"""NumPy references for `clipkit search`, `classify` and `dedup` (the tests compare against them).

Reads TAO-layout embedding files with h5py and prints JSON on stdout.

  numpy_retrieval.py search FILE QUERIES.json K           QUERIES: a list of vectors
  numpy_retrieval.py classify IMAGES.h5 TEXTS.h5 N_TEMPLATES SCALE BIAS sigmoid|softmax K
  numpy_retrieval.py dedup FILE THRESHOLD
  numpy_retrieval.py planted OUT.h5 N D SEED              random float16 rows with planted near-duplicates
  numpy_retrieval.py random OUT.h5 N D                    N random unit rows, float16, uncompressed (benchmarks)
  numpy_retrieval.py bench FILE QUERIES K                 brute-force top-k throughput (the first QUERIES rows as queries)
"""
import json
import sys

import h5py
import numpy as np


def load(path):
    with h5py.File(path, "r") as f:
        x = f["embeddings"][()].astype(np.float32)
        names = f["image_paths"] if "image_paths" in f else f["texts"]
        names = [n.decode() if isinstance(n, bytes) else n for n in names[()]]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), names


def search(path, queries, k):
    x, names = load(path)
    q = np.asarray(queries, dtype=np.float32)
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    s = q @ x.T
    out = []
    for row in s:
        top = np.argsort(-row, kind="stable")[:k]
        out.append([{"name": names[i], "score": float(row[i])} for i in top])
    return out


def classify(images, texts, n_templates, scale, bias, kind, k):
    x, names = load(images)
    t, _ = load(texts)
    w = t.reshape(-1, n_templates, t.shape[1]).mean(axis=1)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    logits = scale * (x @ w.T)
    if kind == "sigmoid":
        p = 1 / (1 + np.exp(-(logits + bias)))
    else:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return {"names": names, "top": top.tolist(), "scores": np.take_along_axis(p, top, axis=1).tolist()}


def dedup(path, threshold):
    x, names = load(path)
    n = len(names)
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    s = x @ x.T
    for i, j in zip(*np.nonzero(np.triu(s >= threshold, k=1))):
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(names[i])
    return sorted([g for g in groups.values() if len(g) > 1], key=lambda g: names.index(g[0]))


def planted(out, n, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    # Every 10th row is a noisy copy of the row before it, and every 50th + 1 a copy of that copy
    # (chains of three: groups joined transitively).
    for i in range(1, n):
        if i % 10 == 0 or i % 50 == 1:
            x[i] = x[i - 1] + 0.05 * rng.standard_normal(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with h5py.File(out, "w") as f:
        f.create_dataset("embeddings", data=x.astype(np.float16), chunks=(min(n, 128), d), compression="gzip")
        f.create_dataset("image_paths", data=[f"img/{i:05d}.jpg" for i in range(n)], dtype=h5py.string_dtype())
        f.attrs["num_images"] = n
        f.attrs["embedding_dim"] = d
        f.attrs["embedding_type"] = "image"
    return {"queries": x[:3].astype(np.float32).tolist()}


def random_file(out, n, d):
    rng = np.random.default_rng(0)
    with h5py.File(out, "w") as f:
        ds = f.create_dataset("embeddings", shape=(n, d), dtype=np.float16, chunks=(min(n, 16384), d))
        for start in range(0, n, 65536):
            x = rng.standard_normal((min(65536, n - start), d)).astype(np.float32)
            ds[start:start + len(x)] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
        f.create_dataset("image_paths", data=[f"img/{i:07d}.jpg" for i in range(n)], dtype=h5py.string_dtype())
        f.attrs["num_images"] = n
        f.attrs["embedding_dim"] = d
        f.attrs["embedding_type"] = "image"
    return {"rows": n, "dim": d}


def bench(path, nq, k):
    import time
    t = time.perf_counter()
    with h5py.File(path, "r") as f:
        x = f["embeddings"][()]
    load = time.perf_counter() - t
    t = time.perf_counter()
    x = x.astype(np.float32)  # numpy has no fast float16 product
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    prep = time.perf_counter() - t
    q = x[:nq].copy()
    t = time.perf_counter()
    s = q @ x.T
    top = np.argpartition(-s, k, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, axis=1), axis=1), axis=1)
    search = time.perf_counter() - t
    total = load + prep + search
    return {"rows": len(x), "dim": x.shape[1], "queries": nq, "read_s": round(load, 2), "to_fp32_s": round(prep, 2),
            "search_s": round(search, 2), "queries_per_s_search_only": round(nq / search, 1), "queries_per_s_with_read": round(nq / total, 1)}


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "search":
        result = search(args[0], json.load(open(args[1])), int(args[2]))
    elif cmd == "classify":
        result = classify(args[0], args[1], int(args[2]), float(args[3]), float(args[4]), args[5], int(args[6]))
    elif cmd == "dedup":
        result = dedup(args[0], float(args[1]))
    elif cmd == "random":
        result = random_file(args[0], int(args[1]), int(args[2]))
    elif cmd == "bench":
        result = bench(args[0], int(args[1]), int(args[2]))
    elif cmd == "planted":
        result = planted(args[0], int(args[1]), int(args[2]), int(args[3]))
    else:
        sys.exit(f"unknown command {cmd}")
    print(json.dumps(result))
