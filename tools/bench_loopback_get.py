#!/usr/bin/env python3
"""The floor under `clipkit bench shards` on S3 URLs: how fast this machine moves bytes from an HTTP
server on loopback into a process at all. Plain sockets, no HTTP library: GET each object, receive
its body into one reused buffer (no copy, nothing kept), N connections at once.

    python3 tools/bench_loopback_get.py PORT BUCKET KEY... [--connections 2] [--buffer-kb 1024]

PORT is `clipkit bench serve-files`' (or any server that answers GET /BUCKET/KEY with a
Content-Length). Prints MB/s over all objects.
"""
import argparse
import socket
import threading
import time


def get(port, path, buf):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit(f"{path}: the connection closed before a response")
        head += chunk
    head, body = head.split(b"\r\n\r\n", 1)
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise SystemExit(f"{path}: {status.decode(errors='replace')}")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    got, view = len(body), memoryview(buf)
    while got < length:
        n = s.recv_into(view, min(len(buf), length - got))
        if n == 0:
            raise SystemExit(f"{path}: body ended at byte {got} of {length}")
        got += n
    s.close()
    return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("bucket")
    ap.add_argument("keys", nargs="+")
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--buffer-kb", type=int, default=1024)
    a = ap.parse_args()
    total = [0] * a.connections

    def worker(k):
        buf = bytearray(a.buffer_kb << 10)
        for key in a.keys[k::a.connections]:
            total[k] += get(a.port, f"/{a.bucket}/{key}", buf)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(a.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    print(f"loopback GET  {len(a.keys)} objects, {sum(total) / 1e6:.1f} MB in {seconds:.2f} s = {sum(total) / 1e6 / seconds:.1f} MB/s "
          f"({a.connections} connections, {a.buffer_kb} KB reads)")


if __name__ == "__main__":
    main()
