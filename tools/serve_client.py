"""Clients for `clipkit serve` (tests and the README's load benchmark).

  serve_client.py openai URL MODEL INPUTS.json
      waits for /v1/health/ready, then embeds INPUTS (texts and data: URLs) with the OpenAI Python
      client, once by its default (base64) and once with encoding_format="float"; prints
      {"base64": [[...]], "float": [[...]]}.
  serve_client.py load URL MODEL SECONDS CLIENTS PID IMAGE...
      CLIENTS threads send mixed requests (1-4 texts, 0-2 of the IMAGEs) for SECONDS; prints
      requests, errors, p50/p99 latency, throughput and the server's RSS (PID) over the run.
"""
import base64
import json
import random
import sys
import threading
import time
import urllib.request


def wait_ready(url, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/v1/health/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit("the server never became ready")


def openai_check(url, model, inputs_file):
    from openai import OpenAI

    wait_ready(url)
    inputs = json.load(open(inputs_file))
    client = OpenAI(base_url=url + "/v1", api_key="unused")
    out = {}
    for name, kwargs in [("base64", {}), ("float", {"encoding_format": "float"})]:
        r = client.embeddings.create(model=model, input=inputs, **kwargs)
        out[name] = [d.embedding for d in sorted(r.data, key=lambda d: d.index)]
    print(json.dumps(out))


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def load(url, model, seconds, clients, pid, images):
    wait_ready(url)
    uris = []
    for path in images:
        kind = "jpeg" if path.lower().endswith((".jpg", ".jpeg")) else path.rsplit(".", 1)[-1].lower()
        uris.append(f"data:image/{kind};base64," + base64.b64encode(open(path, "rb").read()).decode())
    words = "a photo of a red car dog cat on the street in snow at night small large".split()
    latencies, errors, items = [], [], [0]
    lock = threading.Lock()
    stop = time.time() + seconds

    def worker(seed):
        rng = random.Random(seed)
        while time.time() < stop:
            batch = [" ".join(rng.choices(words, k=rng.randint(3, 9))) for _ in range(rng.randint(1, 4))]
            batch += rng.sample(uris, k=min(len(uris), rng.randint(0, 2)))
            rng.shuffle(batch)
            body = json.dumps({"model": model, "input": batch}).encode()
            req = urllib.request.Request(url + "/v1/embeddings", data=body, headers={"Content-Type": "application/json"})
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    data = json.loads(r.read())["data"]
                    ok = len(data) == len(batch)
            except Exception as e:  # noqa: BLE001 - every failure counts
                ok = False
                with lock:
                    errors.append(repr(e)[:200])
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - t)
                    items[0] += len(batch)

    rss = [rss_kb(pid)]
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.time()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        rss.append(rss_kb(pid))
    elapsed = time.time() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0
    third = max(1, len(rss) // 3)
    print(json.dumps({
        "requests": len(latencies) + len(errors), "errors": len(errors), "first_errors": errors[:3],
        "p50_ms": round(pick(0.50) * 1000, 1), "p99_ms": round(pick(0.99) * 1000, 1),
        "requests_per_s": round(len(latencies) / elapsed, 2), "items_per_s": round(items[0] / elapsed, 2),
        "rss_mb_first_third_max": round(max(rss[:third]) / 1024, 1), "rss_mb_last_third_max": round(max(rss[-third:]) / 1024, 1),
        "seconds": round(elapsed, 1), "clients": clients,
    }))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "openai":
        openai_check(args[0], args[1], args[2])
    elif cmd == "load":
        load(args[0], args[1], float(args[2]), int(args[3]), int(args[4]), args[5:])
    else:
        sys.exit(f"unknown command {cmd}")
