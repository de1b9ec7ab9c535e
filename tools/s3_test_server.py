#!/usr/bin/env python3
"""An S3 server on loopback for ClipKit's remote-shard tests and benchmark: moto's server mode
(a real S3 REST implementation; it does not check signatures) plus a proxy in front of it that
breaks transfers on purpose.

    python tools/s3_test_server.py --bucket shards --upload /path/a.tar=train/a.tar ... \
        [--cut-after 20000 --cuts 3]

Prints one JSON line {"s3": PORT, "proxy": PORT, "redirect": PORT, "tls": PORT, "ca": PEM, "presigned": {BUCKET/KEY: URL}} when
ready, then serves until its standard input closes. The proxy forwards to moto; for the first
`--cuts` responses that carry a body it closes the client's connection after `--cut-after` bytes
of the response. The redirect port answers every GET with a 302 to the same path and query on
moto (as a CDN in front of a store does). The tls port is moto behind HTTPS, with a certificate for localhost/127.0.0.1
from a CA made at start (its PEM file: "ca"). On exit it prints {"connections": N, "cut": M}.
"""
import argparse
import json
import socket
import sys
import threading


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_tls(folder):
    """A CA and a server certificate it signs (localhost, 127.0.0.1); returns (server context, CA PEM path)."""
    import datetime
    import ipaddress
    import os
    import ssl
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=2))

    def cert(subject, issuer, key, sign_key, ca, sans=None):
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(valid[0]).not_valid_after(valid[1])
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(sign_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("clipkit test CA", "clipkit test CA", ca_key, ca_key, True)
    leaf = cert("localhost", "clipkit test CA", key, ca_key, False,
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
    paths = {n: os.path.join(folder, n) for n in ("ca.pem", "cert.pem", "key.pem")}
    open(paths["ca.pem"], "wb").write(pem(ca))
    open(paths["cert.pem"], "wb").write(pem(leaf))
    open(paths["key.pem"], "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(paths["cert.pem"], paths["key.pem"])
    return ctx, paths["ca.pem"]


def redirector(target_port):
    """A server on loopback that sends every GET to moto with a 302; returns its port."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{target_port}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


class CuttingProxy:
    def __init__(self, target_port, cut_after, cuts, tls=None):
        self.target_port, self.cut_after, self.cuts_left, self.tls = target_port, cut_after, cuts, tls
        self.connections = self.cut = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            client, _ = self.sock.accept()
            threading.Thread(target=self.handle, args=(client,), daemon=True).start()

    def handle(self, client):
        if self.tls is not None:
            try:
                client = self.tls.wrap_socket(client, server_side=True)
            except OSError:  # a client that refused the certificate
                client.close()
                return
        with self.lock:
            self.connections += 1
        upstream = socket.create_connection(("127.0.0.1", self.target_port))

        def up():
            try:
                while True:
                    d = client.recv(65536)
                    if not d:
                        break
                    upstream.sendall(d)
            except OSError:
                pass
            finally:
                try:
                    upstream.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        threading.Thread(target=up, daemon=True).start()
        sent, cutting = 0, None
        try:
            while True:
                d = upstream.recv(65536)
                if not d:
                    break
                if cutting is None:
                    # Decide per response (by its first bytes): only 200/206 bodies are cut.
                    ok = d.startswith(b"HTTP/1.1 200") or d.startswith(b"HTTP/1.1 206")
                    with self.lock:
                        cutting = ok and self.cuts_left > 0
                        if cutting:
                            self.cuts_left -= 1
                            self.cut += 1
                if cutting and sent + len(d) > self.cut_after:
                    client.sendall(d[: self.cut_after - sent])
                    break
                client.sendall(d)
                sent += len(d)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bucket", action="append", default=[])
    ap.add_argument("--upload", action="append", default=[], help="LOCAL=BUCKET/KEY")
    ap.add_argument("--cut-after", type=int, default=0)
    ap.add_argument("--cuts", type=int, default=0)
    a = ap.parse_args()
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    for b in a.bucket:
        s3.create_bucket(Bucket=b)
    for u in a.upload:
        local, dest = u.split("=", 1)
        bucket, key = dest.split("/", 1)
        s3.upload_file(local, bucket, key)
    proxy = CuttingProxy(port, a.cut_after, a.cuts)
    import tempfile
    tls_context, ca = make_tls(tempfile.mkdtemp(prefix="clipkit-tls-"))
    tls = CuttingProxy(port, 0, 0, tls=tls_context)
    # Presigned (SigV4) GET URLs of the uploads: plain http:// shards with a signature in the query.
    from botocore.config import Config
    signer = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", config=Config(signature_version="s3v4"),
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    presigned = {dest: signer.generate_presigned_url("get_object", Params={"Bucket": dest.split("/", 1)[0], "Key": dest.split("/", 1)[1]},
                                                 ExpiresIn=3600)
                 for dest in (u.split("=", 1)[1] for u in a.upload)}
    print(json.dumps({"s3": port, "proxy": proxy.port, "redirect": redirector(port), "tls": tls.port, "ca": ca, "presigned": presigned}), flush=True)
    sys.stdin.read()
    print(json.dumps({"connections": proxy.connections, "cut": proxy.cut}), flush=True)
    server.stop()


if __name__ == "__main__":
    main()
