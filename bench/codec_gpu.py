#!/usr/bin/env python
"""GPU benchmark of engine "cuda" against nvCOMP's ANS, in the same run, on the same symbols.

    python bench/codec_gpu.py                       # synthetic ReLU features (labelled as such)
    python bench/codec_gpu.py --features feats.npy  # real features, e.g. ResNet-50 layer2 (N, 512, 28, 28)

Workloads: one 401,408-element tensor (1, 512, 28, 28), batches of 8 and 64 such tensors.
For each: splitwire decode+dequantize (one launch for the whole batch), splitwire encode of one
tensor, nvCOMP ANS decode/encode of the same quantized symbols (uint8, 1 byte each).

Timing: CUDA events around the launch(es) after warm-up, median of --runs runs; inputs rotate
over --rotate distinct sets so no run re-reads the previous run's data from L2. "GB/s" is decoded
symbols (1 byte per element) per second; "bits/elem" is the compressed size in bits per element,
next to the order-0 entropy of the symbols. Kernel-only times exclude the host work (container
parse, launch planning, host-to-device copy of the blob); the "end-to-end" line includes it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPE = (1, 512, 28, 28)          # 401,408 elements: ResNet-50 layer2 output


def fail(msg: str, code: int = 2):
    print(f"codec_gpu: {msg}", file=sys.stderr)
    sys.exit(code)


def entropy_bits(q: np.ndarray) -> float:
    counts = np.bincount(q.ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / q.size
    return float(-(p * np.log2(p)).sum())


def synthetic(rng, n):
    out = []
    for _ in range(n):
        scale = np.exp(rng.normal(size=(1, SHAPE[1], 1, 1)))
        x = np.maximum(rng.laplace(size=SHAPE) * scale - 0.5 * scale, 0).astype(np.float32)
        dead = rng.random(SHAPE[1]) < 0.05
        x[:, dead] = 0
        out.append(x)
    return out


def load_features(path, n, rng):
    a = np.load(path).astype(np.float32)
    if a.ndim == 3:
        a = a[None]
    if a.shape[1:] != SHAPE[1:]:
        fail(f"--features must hold tensors of shape (N, {SHAPE[1]}, {SHAPE[2]}, {SHAPE[3]}), got {a.shape}")
    idx = rng.integers(0, a.shape[0], size=n) if a.shape[0] < n else np.arange(n)
    return [a[i:i + 1] for i in idx]


def time_events(cp, fn, runs, warmup, rotate):
    """Median / p10 / p90 GPU time in microseconds of fn(r), r rotating over range(rotate)."""
    for i in range(warmup):
        fn(i % rotate)
    cp.cuda.Device().synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for i in range(runs):
        start.record()
        fn(i % rotate)
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) * 1e3)
    times.sort()
    return statistics.median(times), times[len(times) // 10], times[(9 * len(times)) // 10]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", help=".npy of real features (N, 512, 28, 28); default: synthetic")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--granularity", default="channel", choices=("tensor", "channel"))
    ap.add_argument("--stream-overhead", type=float, default=None, help="CodecConfig.stream_overhead")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rotate", type=int, default=4, help="distinct input sets cycled through")
    ap.add_argument("--threads", type=int, default=None, help="streams per decode block")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    try:
        import cupy as cp
    except ImportError:
        fail("CuPy is not installed (pip install 'splitwire[gpu]'); this benchmark needs a CUDA GPU")
    import codec_cupy as cc
    from codec_cupy import _container, _cuda, _encoder, _reference
    if not _cuda.available():
        fail("no CUDA device is visible; this benchmark needs a GPU (nothing was measured)")
    try:
        from nvidia import nvcomp
    except ImportError:
        nvcomp = None
        print("nvCOMP not installed (pip install nvidia-nvcomp-cu13): its rows are skipped", file=sys.stderr)

    batches = [int(b) for b in args.batches.split(",")]
    rng = np.random.default_rng(0)
    ntensors = max(batches) * args.rotate
    xs = load_features(args.features, ntensors, rng) if args.features else synthetic(rng, ntensors)
    source = args.features or "synthetic ReLU features (Laplace, per-channel scale, 5% dead channels)"
    cfg_kw = dict(bits=args.bits, granularity=args.granularity)
    if args.stream_overhead is not None:
        cfg_kw["stream_overhead"] = args.stream_overhead
    cfg = cc.CodecConfig(**cfg_kw)

    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    print(f"device: {props['name'].decode()}  |  data: {source}  |  {cfg}")
    backend = _cuda._backend()
    threads = args.threads or _cuda.DEFAULT_THREADS

    # ---- encode everything once (CPU engine) and collect the symbols for nvCOMP ----
    t0 = time.perf_counter()
    blobs = [cc.encode(x, cfg, engine="cpu") for x in xs]
    headers = [_container.parse(b) for b in blobs]
    qs = []
    for x in xs:
        xv = x.reshape(1, SHAPE[1], -1)
        params = _encoder.choose_params(_reference, xv, cfg)
        qs.append(_reference.quantize(xv, params, cfg.bits)[0])
    print(f"prepared {len(xs)} tensors in {time.perf_counter() - t0:.1f} s; "
          f"streams/tensor={headers[0].num_streams}, P={headers[0].symbols_per_stream}, "
          f"pack={headers[0].pack}, tables={headers[0].ntables}, prob_bits={headers[0].prob_bits}")
    n = xs[0].size
    h_bits = statistics.mean(entropy_bits(q) for q in qs)
    sw_bits = statistics.mean(8 * len(b) / n for b in blobs)
    results = {"device": props["name"].decode(), "data": source, "config": repr(cfg),
               "entropy_bits_per_element": h_bits, "rows": []}

    def row(codec, op, batch, med, p10, p90, bits_el):
        gbs = batch * n / (med * 1e-6) / 1e9
        print(f"{codec:<24} {op:<22} batch={batch:<3} {med:9.1f} us (p10 {p10:8.1f}, p90 {p90:8.1f})  "
              f"{gbs:8.1f} GB/s  {bits_el:6.3f} bits/elem  ({bits_el / h_bits:5.3f} x entropy)")
        results["rows"].append(dict(codec=codec, op=op, batch=batch, median_us=med, p10_us=p10, p90_us=p90,
                                    gbps=gbs, bits_per_element=bits_el))

    print(f"order-0 entropy of the symbols: {h_bits:.3f} bits/element")
    for batch in batches:
        # ---- splitwire decode: kernel only (inputs staged on the device beforehand) ----
        staged = []
        for r in range(args.rotate):
            items = [(headers[i], blobs[i]) for i in range(r * batch, (r + 1) * batch)]
            plan = _cuda.plan_decode(items, threads=threads, smem_budget=backend.smem_budget)
            devbuf = backend.upload(plan.buffer)
            ins = [backend.section(devbuf, plan.sections, name) for name in _cuda.DECODE_INPUTS]
            out = cp.empty(plan.out_elements, cp.float32)
            err = cp.zeros(len(items), cp.uint32)
            staged.append((plan, ins + [out, err], items))

        def launch(r):
            plan, kargs, _ = staged[r]
            backend.launch("sw_decode_f32", plan.grid, plan.block, plan.smem, kargs)

        med, p10, p90 = time_events(cp, launch, args.runs, args.warmup, args.rotate)
        row("splitwire cuda", "decode+dequant kernel", batch, med, p10, p90, sw_bits)
        for plan, kargs, items in staged:                       # the timed launches decoded correctly
            assert not int(kargs[-1].max()), "decode flagged an error"
        ref_y = cc.decode(staged[0][2][0][1], engine="cpu")
        got = cp.asnumpy(staged[0][1][-2][:n]).reshape(ref_y.shape)
        assert np.array_equal(got.view(np.uint32), ref_y.view(np.uint32)), "GPU decode != CPU decode"

        # ---- splitwire decode: end to end (parse + plan + H2D + launch + error check) ----
        def e2e(r):
            items = [(_container.parse(blobs[i]), blobs[i]) for i in range(r * batch, (r + 1) * batch)]
            _cuda.decode_batch(items)

        med, p10, p90 = time_events(cp, e2e, max(20, args.runs // 4), 3, args.rotate)
        row("splitwire cuda", "decode end-to-end", batch, med, p10, p90, sw_bits)

        # ---- nvCOMP ANS on the same symbols ----
        if nvcomp is not None:
            codec = nvcomp.Codec(algorithm="ANS")
            sets = []
            for r in range(args.rotate):
                arrs = [nvcomp.as_array(cp.asarray(qs[i]).ravel()) for i in range(r * batch, (r + 1) * batch)]
                comp = codec.encode(arrs)
                sets.append((arrs, comp))
            nv_bits = statistics.mean(8 * c.buffer_size / n for c in sets[0][1])
            med, p10, p90 = time_events(cp, lambda r: codec.decode(sets[r][1]), args.runs, args.warmup, args.rotate)
            row("nvCOMP ANS", "decode", batch, med, p10, p90, nv_bits)
            if batch == 1:
                med, p10, p90 = time_events(cp, lambda r: codec.encode(sets[r][0]), args.runs, args.warmup,
                                            args.rotate)
                row("nvCOMP ANS", "encode", batch, med, p10, p90, nv_bits)

        # ---- splitwire encode of one tensor (device input, bytes out; includes host planning) ----
        if batch == 1:
            xd = [cp.asarray(xs[r]) for r in range(args.rotate)]
            assert _cuda.encode(xd[0], cfg) == blobs[0], "GPU encode != CPU encode"
            med, p10, p90 = time_events(cp, lambda r: _cuda.encode(xd[r], cfg), max(20, args.runs // 4), 3,
                                        args.rotate)
            row("splitwire cuda", "encode end-to-end", 1, med, p10, p90, sw_bits)

    print("targets (H100): decode one tensor <= 30 us; batch 64 >= 400 GB/s; encode one tensor <= 50 us")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
