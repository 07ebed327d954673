"""Serving benchmark (issue 4): one ensemble, four payloads, loopback.

    python bench/serve.py [--requests 200] [--concurrency 4] [--protocol http|grpc] [--json PATH]
                          [--url HOST:PORT --model NAME]      (an already running server)
    (also: splitwire bench serve ...)

Without --url it exports EfficientNet-Lite0 cut after ``_blocks.8`` (8-bit codec, Python-
backend tail; ``--device gpu`` for KIND_GPU instances) and starts the bundled tritonserver
on free loopback ports. The features of foolbox's 20 ImageNet images are computed once by
the head, then sent as:

* ``float32``: uncompressed float32 frame (rawframe ``SPWR``),
* ``float16``: uncompressed float16 frame,
* ``splitwire-8`` / ``splitwire-4``: codec blobs at 8 and 4 bits,

all to the same ensemble. For each: request latency p50/p99 (one client, sequential), throughput
(``--concurrency`` clients, one connection each), mean bytes per request, the client's encode
time, and from Triton's statistics API the decoder's share of the server's time per request
(decoder compute / ensemble request time). Every number printed was measured in this run.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from client import SplitClient, rawframe  # noqa: E402

PAYLOADS = ("float32", "float16", "splitwire-8", "splitwire-4")


def _payloads(client: SplitClient, features: list[np.ndarray]) -> dict[str, tuple[list[np.ndarray], float]]:
    """{name: (uint8 payloads, mean client encode seconds)}."""
    import codec_cupy as cc

    enc = {
        "float32": lambda f: rawframe.encode(f.astype(np.float32)),
        "float16": lambda f: rawframe.encode(f.astype(np.float16)),
        "splitwire-8": lambda f: cc.encode(f, cc.CodecConfig(bits=8)),
        "splitwire-4": lambda f: cc.encode(f, cc.CodecConfig(bits=4)),
    }
    out = {}
    for name, fn in enc.items():
        fn(features[0])  # warm (JIT)
        t0 = time.perf_counter()
        blobs = [np.frombuffer(fn(f), np.uint8) for f in features]
        out[name] = (blobs, (time.perf_counter() - t0) / len(features))
    return out


def _stats(client: SplitClient, model: str) -> dict:
    """Cumulative (count, ns) of request success and compute for one model."""
    kw = {"as_json": True} if client.protocol == "grpc" else {}
    s = client._client.get_inference_statistics(model, **kw)["model_stats"][0]["inference_stats"]

    def get(k):
        return int(s[k]["count"]), int(s[k]["ns"])
    return {"success": get("success"), "compute": get("compute_infer"), "queue": get("queue")}


def _delta(a: dict, b: dict, key: str) -> tuple[int, int]:
    return b[key][0] - a[key][0], b[key][1] - a[key][1]


def measure(url: str, model: str, protocol: str, requests: int, concurrency: int, warmup: int,
            features: list[np.ndarray], max_seconds: float) -> list[dict]:
    main = SplitClient(url, model, protocol=protocol)
    payloads = _payloads(main, features)
    rows = []
    for name in PAYLOADS:
        blobs, enc_s = payloads[name]
        want = [int(main.send(b).argmax()) for b in blobs]  # answers for the throughput check
        for i in range(warmup):
            main.send(blobs[i % len(blobs)])
        before = {m: _stats(main, m) for m in (model, f"{model}_decoder", f"{model}_tail")}
        lat = []
        deadline = time.monotonic() + max_seconds
        for i in range(requests):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            main.send(blobs[i % len(blobs)])
            lat.append(time.perf_counter() - t0)
        after = {m: _stats(main, m) for m in before}
        ens_n, ens_ns = _delta(before[model], after[model], "success")
        dec_n, dec_ns = _delta(before[f"{model}_decoder"], after[f"{model}_decoder"], "compute")
        tail_n, tail_ns = _delta(before[f"{model}_tail"], after[f"{model}_tail"], "compute")

        def client_loop(k):
            c = SplitClient(url, model, protocol=protocol, head=None)
            done = wrong = 0
            try:
                stop = time.monotonic() + max_seconds
                for i in range(requests):
                    if time.monotonic() > stop:
                        break
                    j = (k * 7 + i) % len(blobs)
                    wrong += int(c.send(blobs[j]).argmax()) != want[j]
                    done += 1
            finally:
                c.close()
            return done, wrong

        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(concurrency) as pool:
            res = list(pool.map(client_loop, range(concurrency)))
        wall = time.perf_counter() - t0
        done = sum(r[0] for r in res)
        lat_ms = np.array(lat) * 1e3
        rows.append({
            "payload": name,
            "bytes_per_request": float(np.mean([b.size for b in blobs])),
            "client_encode_ms": enc_s * 1e3,
            "p50_ms": float(np.percentile(lat_ms, 50)),
            "p99_ms": float(np.percentile(lat_ms, 99)),
            "latency_requests": len(lat),
            "throughput_rps": done / wall,
            "throughput_requests": done,
            "throughput_wrong_answers": sum(r[1] for r in res),
            "server_request_ms": ens_ns / ens_n / 1e6 if ens_n else None,
            "decoder_compute_ms": dec_ns / dec_n / 1e6 if dec_n else None,
            "tail_compute_ms": tail_ns / tail_n / 1e6 if tail_n else None,
            "decoder_share": (dec_ns / dec_n) / (ens_ns / ens_n) if dec_n and ens_n else None,
        })
    main.close()
    return rows


def _features(head_client: SplitClient) -> list[np.ndarray]:
    from splitwire.samples import imagenet_samples
    return [head_client.head(p) for p, _ in imagenet_samples()]


def print_table(rows: list[dict], out=sys.stdout) -> None:
    cols = [("payload", "{:<12}"), ("bytes_per_request", "{:>9.0f}"), ("client_encode_ms", "{:>8.3f}"),
            ("p50_ms", "{:>7.2f}"), ("p99_ms", "{:>7.2f}"), ("throughput_rps", "{:>8.1f}"),
            ("server_request_ms", "{:>8.2f}"), ("decoder_compute_ms", "{:>8.3f}"),
            ("tail_compute_ms", "{:>8.2f}"), ("decoder_share", "{:>7.1%}")]
    heads = ["payload", "bytes/req", "enc ms", "p50 ms", "p99 ms", "req/s", "srv ms", "dec ms", "tail ms",
             "dec %"]
    widths = [12, 9, 8, 7, 7, 8, 8, 8, 8, 7]
    print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(heads, widths))), file=out)
    for r in rows:
        cells = []
        for (k, fmt), w in zip(cols, widths):
            v = r.get(k)
            cells.append(fmt.format(v) if v is not None else "n/a".rjust(w))
        print("  ".join(cells), file=out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="splitwire bench serve", description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="an already running server (HTTP host:port, or gRPC with --protocol grpc)")
    ap.add_argument("--model", default="effnet")
    ap.add_argument("--protocol", default="http", choices=["http", "grpc"])
    ap.add_argument("--requests", type=int, default=200, help="per payload, latency and per throughput client")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--max-seconds", type=float, default=60.0, help="time bound per measurement loop")
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--tail-backend", default="python", choices=["python", "onnxruntime"])
    ap.add_argument("--json", help="also write the results to this file")
    a = ap.parse_args(argv)

    info = {"bench": "serve", "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "protocol": a.protocol, "requests": a.requests, "concurrency": a.concurrency, "device": a.device}
    if a.url:
        c = SplitClient(a.url, a.model, protocol=a.protocol)
        feats = _features(c)
        c.close()
        rows = measure(a.url, a.model, a.protocol, a.requests, a.concurrency, a.warmup, feats, a.max_seconds)
    else:
        from splitwire import models
        from splitwire.export import export_split
        from splitwire.serve import TritonServer, resolve_ports

        spec = models.load("efficientnet_lite0")
        with tempfile.TemporaryDirectory(prefix="splitwire-bench-") as repo:
            export_split(spec.module, "_blocks.8", repo, name=a.model, input_shape=spec.input_shape, bits=8,
                         preprocess=spec.preprocess, labels=spec.labels, device=a.device,
                         tail_backend=a.tail_backend)
            http, grpc, metrics = resolve_ports(0, 0, 0)
            with TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics) as server:
                url = server.grpc_url if a.protocol == "grpc" else server.url
                info["server"] = "bundled tritonserver 2.51 (nvidia-pytriton)"
                c = SplitClient(url, a.model, protocol=a.protocol)
                feats = _features(c)
                c.close()
                rows = measure(url, a.model, a.protocol, a.requests, a.concurrency, a.warmup, feats, a.max_seconds)
    info["model"] = "efficientnet_lite0 cut after _blocks.8, features 112x14x14"
    print(f"# serving benchmark: {info['model']}; {a.protocol}, loopback, {info['cpus']} CPUs, "
          f"device={a.device}; p50/p99 from one sequential client, req/s from {a.concurrency} clients")
    print_table(rows)
    result = {"info": info, "rows": rows}
    text = json.dumps(result, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
