"""The main job: export, serve, classify 20 ImageNet images through the split, compare, stop.

    splitwire demo [--bits 8] [--split _blocks.8] [--out DIR] [--grpc]

1. cuts EfficientNet-Lite0 (ImageNet weights) after a middle block and writes a Triton
   repository (decoder + tail + ensemble + head);
2. starts the tritonserver bundled in nvidia-pytriton on free loopback ports;
3. classifies foolbox's 20 labelled ImageNet images through the split pipeline (head +
   codec here, decode + tail on the server) and with the unsplit model locally;
4. prints top-1 of both, KB per image, compression ratio and a latency split;
5. stops the server.
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np

from . import models, samples
from .export import export_split
from .serve import TritonServer, resolve_ports


def run(bits: int = 8, split: str | None = None, out: str | None = None, model: str = "efficientnet_lite0",
        protocol: str = "http", ports: tuple[int, int, int] = (0, 0, 0), file=sys.stdout) -> dict:
    from client import SplitClient

    def say(*a):
        print(*a, file=file, flush=True)

    spec = models.load(model)
    split = split or spec.default_split
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="splitwire-demo-")
        out = tmp.name
    try:
        t0 = time.perf_counter()
        res = export_split(spec.module, split, out, name=model, input_shape=spec.input_shape,
                           bits=bits, preprocess=spec.preprocess, labels=spec.labels)
        c, h, w = res.point.shape[1:]
        say(f"[1/4] exported {model} split after {split!r}: features {c}x{h}x{w} float32 "
            f"({c * h * w * 4 / 1024:.1f} KB raw), max |tail(head(x)) - model(x)| = {res.max_abs_error:.2e} "
            f"({time.perf_counter() - t0:.1f} s) -> {out}")
        http, grpc, metrics = resolve_ports(*ports)
        t0 = time.perf_counter()
        with TritonServer(out, http_port=http, grpc_port=grpc, metrics_port=metrics) as server:
            say(f"[2/4] tritonserver ready in {time.perf_counter() - t0:.1f} s: HTTP {server.url}, "
                f"gRPC {server.grpc_url}, metrics {server.metrics_url}")
            url = server.grpc_url if protocol == "grpc" else server.url
            client = SplitClient(url, model, protocol=protocol)
            say(f"[3/4] classifying {len(samples.imagenet_samples())} ImageNet images "
                f"(splitwire {bits}-bit over {protocol.upper()}) ...")
            summary = _classify(client, spec, say)
            client.close()
        say(f"[4/4] tritonserver stopped (exit code {server.proc.returncode})")
        return summary
    finally:
        if tmp is not None:
            tmp.cleanup()


def _classify(client, spec, say) -> dict:
    import torch

    rows, timings = [], []
    say(f"  {'image':<22} {'true label':<24} {'unsplit top-1':<24} {'split top-1':<24} {'KB':>6}")
    for path, label in samples.imagenet_samples():
        x = client.preprocess(path)
        with torch.no_grad():
            full = spec.module(torch.from_numpy(x)).numpy()
        y, t = client.infer_timed(x)
        timings.append(t)
        f1, s1 = int(full.argmax()), int(y.argmax())
        rows.append((label, f1, s1))
        name = lambda i: (spec.labels[i] if spec.labels else str(i))[:23]  # noqa: E731
        mark = "" if f1 == s1 else "  <- differs"
        say(f"  {path.name:<22} {name(label):<24} {name(f1):<24} {name(s1):<24} "
            f"{t.bytes_sent / 1024:6.2f}{mark}")
    n = len(rows)
    agree = sum(f == s for _, f, s in rows)
    acc_full = sum(lab == f for lab, f, _ in rows)
    acc_split = sum(lab == s for lab, _, s in rows)
    sent = np.array([t.bytes_sent for t in timings], float)
    raw = timings[0].raw_bytes
    ms = lambda v: 1e3 * float(np.median(v))  # noqa: E731
    summary = {
        "images": n, "split_matches_unsplit": agree, "top1_unsplit": acc_full, "top1_split": acc_split,
        "kb_per_image": float(sent.mean() / 1024), "raw_kb_per_image": raw / 1024,
        "compression_ratio": float(raw / sent.mean()),
        "median_ms": {"head": ms([t.head_s for t in timings]), "encode": ms([t.encode_s for t in timings]),
                      "round_trip": ms([t.round_trip_s for t in timings])},
    }
    say(f"  top-1 split == unsplit on {agree}/{n} images; correct labels: unsplit {acc_full}/{n}, "
        f"split {acc_split}/{n}")
    say(f"  uplink: {summary['kb_per_image']:.2f} KB per image vs {raw / 1024:.1f} KB raw float32 "
        f"-> {summary['compression_ratio']:.1f}x smaller")
    m = summary["median_ms"]
    say(f"  median latency: head {m['head']:.1f} ms, encode {m['encode']:.2f} ms, "
        f"round trip (decode + tail on the server) {m['round_trip']:.1f} ms")
    return summary
