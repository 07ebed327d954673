"""Codec benchmark (issue 2): splitwire's CPU engines against general-purpose peers, one core.

    python bench/codec_cpu.py [--json] [--quick]       (also: splitwire bench codec [--json])

For each tensor (real EfficientNet-Lite0 features and a synthetic sparse one, see features.py) and
bit depth it measures, in the same run and process:

* splitwire: whole-blob size (header included), bits per element, size over the order-0 entropy of
  the quantized symbols, encode/decode MB/s of float32 for engine "cpu" (and "reference" on the
  smallest tensor);
* peers on the same uint8 symbols: zstd -3, zstd -19, lz4, zlib -6, constriction's ANS;
* the "NumPy quantization + zstd -3" pipeline, float32 in to bytes out and back (the speed target);
* an ablation: bits per element and reconstruction error at 8, 6, 4, 3, 2 bits for each codec part;
* transform coding (block DCT) next to the scalar codec on the dense tensors: rate, error, speed.

Every number printed is measured here; what could not be measured is reported as such.
"""

from __future__ import annotations

import os

# One core: thread pools must be sized before numba/BLAS initialise (a no-op if already imported;
# the measurements are additionally pinned to one CPU with sched_setaffinity).
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import contextlib
import gc
import json
import math
import pathlib
import platform
import statistics
import struct
import sys
import time
import zlib

import numpy as np

_HERE = pathlib.Path(__file__).resolve().parent
try:                                    # imported as bench.codec_cpu (the CLI)
    from bench import features
except ImportError:                     # run as a script: bench/ is sys.path[0]
    sys.path.insert(0, str(_HERE))
    import features                     # type: ignore[no-redef]

RESULTS_DIR = _HERE / "results"
BITS_MAIN = (2, 4, 8)
BITS_ABLATION = (8, 6, 4, 3, 2, 1)
MB = 1e6


# ------------------------------------------------------------------------------------------ setup

def import_codec():
    """codec_cupy, from the installed package or the repository root; None (and why) if absent."""
    try:
        import codec_cupy as cc
        return cc, None
    except ImportError:
        sys.path.insert(0, str(_HERE.parent))
        try:
            import codec_cupy as cc
            return cc, None
        except Exception as exc:   # noqa: BLE001 - report any import failure, keep measuring peers
            return None, f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def one_core():
    """Pin this process to a single CPU while measuring (restored afterwards)."""
    if not hasattr(os, "sched_getaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def measure(fn, *, samples: int, min_sample_s: float, budget_s: float = 20.0) -> dict:
    """Time ``fn`` after one warm-up call (JIT compilation, caches, page faults).

    Each sample repeats ``fn`` enough times to last ``min_sample_s`` so timer resolution does not
    matter for small tensors; slow functions get fewer samples to stay within ``budget_s``."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-9)
    number = max(1, math.ceil(min_sample_s / once))
    samples = max(1, min(samples, int(budget_s / (once * number))))
    times = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(samples):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            times.append((time.perf_counter() - t0) / number)
    finally:
        if gc_was:
            gc.enable()
    return {"median_s": statistics.median(times), "best_s": min(times), "samples": samples, "number": number}


STAT = "best_s"   # which sample statistic MB/s uses; main() sets it from --stat


def measure_paired(fa, fb, *, rounds: int, min_sample_s: float) -> dict:
    """Speed of ``fa`` over ``fb`` (time_b / time_a) with the samples interleaved: a, b, a, b, ...

    Other jobs on a shared machine change the speed of both alike within one round, so the median
    of the per-round ratios moves far less between runs than a ratio of two separately timed
    measurements."""
    fa()
    fb()
    numbers = []
    for f in (fa, fb):
        t0 = time.perf_counter()
        f()
        numbers.append(max(1, math.ceil(min_sample_s / max(time.perf_counter() - t0, 1e-9))))
    ratios = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            times = []
            for f, number in zip((fa, fb), numbers):
                t0 = time.perf_counter()
                for _ in range(number):
                    f()
                times.append((time.perf_counter() - t0) / number)
            ratios.append(times[1] / times[0])
    finally:
        if gc_was:
            gc.enable()
    return {"median_ratio": statistics.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios),
            "rounds": rounds, "numbers": numbers}


def mbps(nbytes: int, timing: dict) -> float:
    return nbytes / timing[STAT] / MB


# ------------------------------------------------------------------------ quantizer and entropy

def uniform_params(x: np.ndarray, bits: int) -> tuple[np.float32, int]:
    """Per-tensor min/max scale and zero point as in docs/FORMAT.md section 2 (0.0 exact)."""
    qmax = (1 << bits) - 1
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    span = hi - lo
    scale = np.float32(span / qmax if span > 0 else 1.0)
    zero = int(np.clip(np.rint(-lo / float(scale)), 0, qmax))
    return scale, zero


def numpy_quantize(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.float32, int]:
    """q = clip(rint(x / s) + z, 0, 2^b - 1) in float32 (the codec's uniform quantizer), uint8."""
    scale, zero = uniform_params(x, bits)
    t = np.divide(x, scale, dtype=np.float32)
    np.rint(t, out=t)
    t += np.float32(zero)
    np.clip(t, 0, (1 << bits) - 1, out=t)
    return t.astype(np.uint8), scale, zero


def numpy_dequantize(q: np.ndarray, scale: np.float32, zero: int) -> np.ndarray:
    y = q.astype(np.float32)
    y -= np.float32(zero)
    y *= scale
    return y


def entropy_bytes(q: np.ndarray) -> float:
    """Order-0 entropy of the symbols in bytes: n * H0(q) / 8."""
    counts = np.bincount(q.ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / q.size
    return float(-(p * np.log2(p)).sum() * q.size / 8.0)


def error_stats(x: np.ndarray, y: np.ndarray) -> dict:
    """RMSE and SQNR (signal power over error power, dB) of a reconstruction."""
    err = (x.astype(np.float64) - y.astype(np.float64)).ravel()
    sig = float(np.dot(x.ravel().astype(np.float64), x.ravel().astype(np.float64)))
    noise = float(np.dot(err, err))
    return {"rmse": math.sqrt(noise / x.size),
            "sqnr_db": (10 * math.log10(sig / noise)) if noise > 0 else None}   # None: lossless


def ratio(size: float, entropy: float):
    return size / entropy if entropy > 0 else None


# ----------------------------------------------------------------------------------------- peers

def peer_codecs(bits: int) -> list[tuple[str, object, object, str]]:
    """(name, encode(q uint8 array) -> bytes-like, decode(blob, n) -> uint8 array, note)."""
    import constriction
    import lz4.frame
    import zstandard

    def zstd(level):
        c, d = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
        return (lambda q: c.compress(q.data),
                lambda b, n: np.frombuffer(d.decompress(b), np.uint8))

    alphabet = 1 << bits
    Categorical = constriction.stream.model.Categorical
    AnsCoder = constriction.stream.stack.AnsCoder

    side = {}   # constriction transmits no model: its decoder is handed the encoder's histogram

    def ans_encode(q):
        # The empirical histogram is the model; building it is part of the encoder's work.
        hist = np.bincount(q, minlength=alphabet).astype(np.float64)
        coder = AnsCoder()
        coder.encode_reverse(q.astype(np.int32), Categorical(hist, perfect=False))
        side["hist"] = hist
        return coder.get_compressed()

    def ans_decode(words, n):
        coder = AnsCoder(words)
        return coder.decode(Categorical(side["hist"], perfect=False), n).astype(np.uint8)

    return [
        ("zstd -3", *zstd(3), ""),
        ("zstd -19", *zstd(19), ""),
        ("lz4", lambda q: lz4.frame.compress(q.data), lambda b, n: np.frombuffer(lz4.frame.decompress(b), np.uint8),
         "lz4.frame, default level"),
        ("zlib -6", lambda q: zlib.compress(q.data, 6), lambda b, n: np.frombuffer(zlib.decompress(b), np.uint8), ""),
        ("constriction ANS", ans_encode, ans_decode,
         "size excludes the frequency table (constriction does not transmit it)"),
    ]


def blob_size(blob) -> int:
    return int(blob.nbytes) if isinstance(blob, np.ndarray) else len(blob)


def bench_peers(q: np.ndarray, bits: int, entropy: float, timing: dict) -> list[dict]:
    """Each peer on the same uint8 symbols; MB/s counts symbol bytes (1 byte per element)."""
    flat = np.ascontiguousarray(q.ravel())
    rows = []
    for name, enc, dec, note in peer_codecs(bits):
        blob = enc(flat)
        if not np.array_equal(dec(blob, flat.size), flat):
            raise AssertionError(f"{name} did not round-trip")
        te = measure(lambda: enc(flat), **timing)
        td = measure(lambda: dec(blob, flat.size), **timing)
        size = blob_size(blob)
        rows.append({"codec": name, "bytes": size, "bpe": 8 * size / flat.size, "x_entropy": ratio(size, entropy),
                     "enc_MBps_u8": mbps(flat.size, te), "dec_MBps_u8": mbps(flat.size, td),
                     "enc_timing": te, "dec_timing": td, "note": note})
    return rows


# ------------------------------------------------------------------ NumPy quantization + zstd -3

def pipeline_encode(x: np.ndarray, bits: int, cctx) -> bytes:
    """float32 -> bytes: quantize with NumPy, header (scale, zero point, shape), zstd -3 payload."""
    q, scale, zero = numpy_quantize(x, bits)
    head = struct.pack(f"<fBB{x.ndim}I", scale, zero, x.ndim, *x.shape)
    return head + cctx.compress(q.data)


def pipeline_decode(blob: bytes, dctx) -> np.ndarray:
    scale, zero, ndim = struct.unpack_from("<fBB", blob)
    shape = struct.unpack_from(f"<{ndim}I", blob, 6)
    q = np.frombuffer(dctx.decompress(memoryview(blob)[6 + 4 * ndim:]), np.uint8)   # no copy
    return numpy_dequantize(q, np.float32(scale), zero).reshape(shape)


def bench_pipeline(x: np.ndarray, bits: int, entropy: float, timing: dict) -> dict:
    import zstandard
    cctx, dctx = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    blob = pipeline_encode(x, bits, cctx)
    y = pipeline_decode(blob, dctx)
    te = measure(lambda: pipeline_encode(x, bits, cctx), **timing)
    td = measure(lambda: pipeline_decode(blob, dctx), **timing)
    return {"codec": "NumPy quant + zstd -3", "bytes": len(blob), "bpe": 8 * len(blob) / x.size,
            "x_entropy": ratio(len(blob), entropy), "enc_MBps_f32": mbps(x.nbytes, te),
            "dec_MBps_f32": mbps(x.nbytes, td), "enc_timing": te, "dec_timing": td, **error_stats(x, y)}


def bench_paired(cc, x: np.ndarray, bits: int, timing: dict, cfg=None) -> dict:
    """Issue 2's speed ratios, codec and pipeline timed in alternation (see ``measure_paired``)."""
    import zstandard
    cctx, dctx = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    cfg = cc.CodecConfig(bits=bits) if cfg is None else cfg
    blob, pblob = cc.encode(x, cfg, engine="cpu"), pipeline_encode(x, bits, cctx)
    rounds = max(3, 2 * timing["samples"] + 1)
    kw = {"rounds": rounds, "min_sample_s": timing["min_sample_s"]}
    return {"encode": measure_paired(lambda: cc.encode(x, cfg, engine="cpu"),
                                     lambda: pipeline_encode(x, bits, cctx), **kw),
            "decode": measure_paired(lambda: cc.decode(blob, engine="cpu"),
                                     lambda: pipeline_decode(pblob, dctx), **kw)}


# ------------------------------------------------------------------------------------ splitwire

def plan_summary(info: dict) -> dict:
    """The inspect() fields worth a column: sizes and the planner's choice."""
    keep = ("total_bytes", "header_bytes", "payload_bytes")
    out = {k: info[k] for k in keep if k in info}
    if "sizes" in info and isinstance(info["sizes"], dict):
        out.update({k: info["sizes"][k] for k in keep if k in info["sizes"]})
    if isinstance(info.get("plan"), dict):
        out["plan"] = {k: v for k, v in info["plan"].items() if not isinstance(v, (list, tuple)) or len(v) <= 16}
    return out


def bench_splitwire(cc, x, bits, engine, entropy, timing, ref_q=None) -> dict:
    """Default planner, uniform per tensor: size, ratio, error, encode/decode MB/s of float32."""
    cfg = cc.CodecConfig(bits=bits)
    blob = cc.encode(x, cfg, engine=engine)
    y = cc.decode(blob, engine=engine)
    te = measure(lambda: cc.encode(x, cfg, engine=engine), **timing)
    td = measure(lambda: cc.decode(blob, engine=engine), **timing)
    row = {"codec": f"splitwire {engine}", "bytes": len(blob), "bpe": 8 * len(blob) / x.size,
           "x_entropy": ratio(len(blob), entropy), "enc_MBps_f32": mbps(x.nbytes, te),
           "dec_MBps_f32": mbps(x.nbytes, td), "enc_timing": te, "dec_timing": td, **error_stats(x, y),
           "inspect": plan_summary(cc.inspect(blob)), "blob": blob}
    if ref_q is not None:
        # The entropy is computed on our NumPy symbols; check they are the codec's symbols.
        q, scale, zero = ref_q
        row["same_symbols_as_numpy_quantizer"] = bool(np.array_equal(y, numpy_dequantize(q, scale, zero)))
    return row


def calibration_samples(name: str, tensors: dict) -> tuple[list, str] | None:
    """Held-out samples for ``cc.calibrate`` and what they are: the batch's other images for a
    one-image tensor (``*_1`` is image 0 of ``*_8``), two synthetic tensors of other seeds for the
    synthetic one; None for the batch tensors (no second batch in the cache)."""
    batch = tensors.get(name[:-2] + "_8") if name.endswith("_1") else None
    if batch is not None:
        return [batch[i:i + 1] for i in range(1, batch.shape[0])], f"images 1-{batch.shape[0] - 1} of {name[:-2]}_8"
    if name == "synthetic_relu":
        seeds = (features.SYNTH_SEED + 1, features.SYNTH_SEED + 2)
        return [features.synthetic_relu(seed=s) for s in seeds], f"synthetic_relu with seeds {seeds[0]}, {seeds[1]}"
    return None


def bench_calibrated(cc, x, bits, samples, entropy, timing) -> dict:
    """splitwire cpu with the plan fixed by ``cc.calibrate`` on other tensors: the encoder skips the
    planner's search. Size, ratio, error, MB/s, and for 4 bits the paired speed ratios."""
    t0 = time.perf_counter()
    cfg = cc.calibrate(samples[0], cc.CodecConfig(bits=bits), engine="cpu")
    calibrate_s = time.perf_counter() - t0
    blob = cc.encode(x, cfg, engine="cpu")
    y = cc.decode(blob, engine="cpu")
    te = measure(lambda: cc.encode(x, cfg, engine="cpu"), **timing)
    td = measure(lambda: cc.decode(blob, engine="cpu"), **timing)
    row = {"codec": "splitwire cpu, calibrated plan", "calibrated_on": samples[1], "calibrate_s": calibrate_s,
           "config": {"pack": cfg.pack, "tables": cfg.tables, "prob_bits": cfg.prob_bits},
           "bytes": len(blob), "bpe": 8 * len(blob) / x.size, "x_entropy": ratio(len(blob), entropy),
           "enc_MBps_f32": mbps(x.nbytes, te), "dec_MBps_f32": mbps(x.nbytes, td), "enc_timing": te,
           "dec_timing": td, **error_stats(x, y), "inspect": plan_summary(cc.inspect(blob))}
    if bits == 4:
        row["paired"] = bench_paired(cc, x, bits, timing, cfg)
    return row


def codec_engines(cc) -> list[str]:
    try:
        return list(cc.available_engines())
    except Exception:   # noqa: BLE001
        return []


# --------------------------------------------------------------------------------------- ablation

ABLATION = (
    ("baseline (uniform, tensor, auto)", {}),
    ("quantizer=ecsq", {"quantizer": "ecsq"}),
    ("granularity=channel", {"granularity": "channel"}),
    ("clip=percentile", {"clip": "percentile"}),
    ("clip=mse", {"clip": "mse"}),
    ("sparse=on", {"sparse": "on"}),
    ("sparse=off", {"sparse": "off"}),
    ("tables=1", {"tables": 1}),
    ("pack=1", {"pack": 1}),
    ("search=full", {"search": "full"}),                         # every pack through tables and precision
    ("sparse=off,tables=1", {"sparse": "off", "tables": 1}),    # zero mask's gain with one table
    ("sparse=off,tables=1,pack=1", {"sparse": "off", "tables": 1, "pack": 1}),
)


def ablation_cell(cc, x, bits, overrides, engine) -> dict:
    try:
        cfg = cc.CodecConfig(bits=bits, **overrides)
        blob = cc.encode(x, cfg, engine=engine)
        y = cc.decode(blob, engine=engine)
    except Exception as exc:   # noqa: BLE001 - an unsupported combination is a result, not a crash
        return {"bits": bits, "error": f"{type(exc).__name__}: {exc}"}
    info = plan_summary(cc.inspect(blob))
    return {"bits": bits, "bytes": len(blob), "bpe": 8 * len(blob) / x.size, **error_stats(x, y),
            "plan": info.get("plan")}


def bench_ablation(cc, x, bits_list, engine) -> list[dict]:
    return [{"variant": name, "overrides": ov, "cells": [ablation_cell(cc, x, b, ov, engine) for b in bits_list]}
            for name, ov in ABLATION]


# ------------------------------------------------------------------------------- transform coding

TRANSFORM_ROWS = (      # the scalar codec next to transform="dct" (format version 2) on the same tensor
    ("scalar 2 bits", {"bits": 2}),
    ("scalar 3 bits", {"bits": 3}),
    ("scalar 4 bits", {"bits": 4}),
    ("dct7 step 0.09", {"transform": "dct", "block": 7, "step": 0.09}),
    ("dct7 step 0.04", {"transform": "dct", "block": 7, "step": 0.04}),
    ("dct7 step 0.02", {"transform": "dct", "block": 7, "step": 0.02}),
    ("dct7 w=0.25 step 0.09", {"transform": "dct", "block": 7, "step": 0.09, "frequency_weight": 0.25}),
    ("dct7 w=0.25 step 0.04", {"transform": "dct", "block": 7, "step": 0.04, "frequency_weight": 0.25}),
)


def bench_transform(cc, x, timing) -> list[dict]:
    """Rate, error and engine-cpu speed of each TRANSFORM_ROWS setting; also whether the reference
    engine writes the same bytes (the forward DCT is specified, so it must)."""
    rows = []
    for name, overrides in TRANSFORM_ROWS:
        cfg = cc.CodecConfig(**overrides)
        blob = cc.encode(x, cfg, engine="cpu")
        y = cc.decode(blob, engine="cpu")
        te = measure(lambda: cc.encode(x, cfg, engine="cpu"), **timing)
        td = measure(lambda: cc.decode(blob, engine="cpu"), **timing)
        rows.append({"setting": name, "overrides": overrides, "bytes": len(blob), "bpe": 8 * len(blob) / x.size,
                     **error_stats(x, y), "enc_MBps_f32": mbps(x.nbytes, te), "dec_MBps_f32": mbps(x.nbytes, td),
                     "enc_timing": te, "dec_timing": td,
                     "reference_same_bytes": cc.encode(x, cfg, engine="reference") == blob})
    return rows


def render_transform(name: str, rows: list[dict]) -> str:
    body = [[r["setting"], f"{r['bytes']:,}", f"{r['bpe']:.3f}", fmt(r["sqnr_db"], ".2f"),
             fmt(r["enc_MBps_f32"], ".1f"), fmt(r["dec_MBps_f32"], ".1f"), "yes" if r["reference_same_bytes"] else "NO"]
            for r in rows]
    return (f"== transform coding on {name} (engine cpu; MB/s of float32; 'ref': reference engine wrote the same bytes)\n"
            + table(["setting", "bytes", "bits/elem", "SQNR dB", "enc MB/s", "dec MB/s", "ref"], body))


# ---------------------------------------------------------------------------------------- targets

def check_targets(rows: list[dict]) -> list[dict]:
    """Issue 2's targets, evaluated on this run's measurements."""
    out = []
    for r in rows:
        sw = r.get("splitwire", {}).get("cpu")
        if sw is None:
            continue
        limit = 1.01 if r["elements"] >= 200_000 else 1.03
        if sw["x_entropy"] is not None:
            out.append({"tensor": r["tensor"], "bits": r["bits"], "target": f"size <= {limit} x H0",
                        "measured": round(sw["x_entropy"], 4), "ok": sw["x_entropy"] <= limit})
        if r["bits"] == 4:
            p = r["pipeline"]
            enc, dec = sw["enc_MBps_f32"] / p["enc_MBps_f32"], sw["dec_MBps_f32"] / p["dec_MBps_f32"]
            spread = {"encode": "", "decode": ""}
            if "paired" in r:               # interleaved timing: less sensitive to other jobs
                pe, pd = r["paired"]["encode"], r["paired"]["decode"]
                enc, dec = pe["median_ratio"], pd["median_ratio"]
                spread = {k: f"{v['min_ratio']:.2f}-{v['max_ratio']:.2f}" for k, v in (("encode", pe), ("decode", pd))}
            out.append({"tensor": r["tensor"], "bits": 4, "target": "encode >= 2 x NumPy+zstd-3",
                        "measured": round(enc, 2), "ok": enc >= 2.0, "rounds": spread["encode"]})
            out.append({"tensor": r["tensor"], "bits": 4, "target": "decode >= 1 x NumPy+zstd-3",
                        "measured": round(dec, 2), "ok": dec >= 1.0, "rounds": spread["decode"]})
            cal = r.get("calibrated")
            if cal and "paired" in cal:     # not issue 2's target (that is the default config): shown next to it
                for what, floor in (("encode", 2.0), ("decode", 1.0)):
                    v = cal["paired"][what]
                    out.append({"tensor": r["tensor"], "bits": 4,
                                "target": f"{what} >= {floor:g} x NumPy+zstd-3 (calibrated plan)",
                                "measured": round(v["median_ratio"], 2), "ok": v["median_ratio"] >= floor,
                                "rounds": f"{v['min_ratio']:.2f}-{v['max_ratio']:.2f}", "informational": True})
    return out


# ----------------------------------------------------------------------------------------- report

def fmt(v, spec=".3f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, spec)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def render_main(r: dict) -> str:
    head = (f"== {r['tensor']}  shape {tuple(r['shape'])}  {r['elements']:,} elements  bits={r['bits']}  "
            f"H0 = {r['entropy_bits_per_symbol']:.4f} bit/sym = {r['entropy_bytes']:,.1f} B")
    rows = []
    for eng, sw in r.get("splitwire", {}).items():
        rows.append([sw["codec"], f"{sw['bytes']:,}", fmt(sw["bpe"], ".4f"), fmt(sw["x_entropy"], ".4f"),
                     fmt(sw["enc_MBps_f32"], ".1f"), fmt(sw["dec_MBps_f32"], ".1f"), "f32",
                     fmt(sw["sqnr_db"], ".2f")])
    cal = r.get("calibrated")
    if cal:
        rows.append([cal["codec"], f"{cal['bytes']:,}", fmt(cal["bpe"], ".4f"), fmt(cal["x_entropy"], ".4f"),
                     fmt(cal["enc_MBps_f32"], ".1f"), fmt(cal["dec_MBps_f32"], ".1f"), "f32",
                     fmt(cal["sqnr_db"], ".2f")])
    p = r["pipeline"]
    rows.append([p["codec"], f"{p['bytes']:,}", fmt(p["bpe"], ".4f"), fmt(p["x_entropy"], ".4f"),
                 fmt(p["enc_MBps_f32"], ".1f"), fmt(p["dec_MBps_f32"], ".1f"), "f32", fmt(p["sqnr_db"], ".2f")])
    for pr in r["peers"]:
        rows.append([pr["codec"] + (" *" if pr["note"].startswith("size excludes") else ""), f"{pr['bytes']:,}",
                     fmt(pr["bpe"], ".4f"), fmt(pr["x_entropy"], ".4f"), fmt(pr["enc_MBps_u8"], ".1f"),
                     fmt(pr["dec_MBps_u8"], ".1f"), "u8", ""])
    text = [head, table(["codec", "bytes", "bits/elem", "x H0", "enc MB/s", "dec MB/s", "of", "SQNR dB"], rows)]
    for eng, sw in r.get("splitwire", {}).items():
        insp = sw.get("inspect", {})
        extra = f" header {insp['header_bytes']} B" if "header_bytes" in insp else ""
        text.append(f"   {sw['codec']}:{extra} plan {json.dumps(insp.get('plan'), default=str)}"
                    + ("" if sw.get("same_symbols_as_numpy_quantizer", True)
                       else "  [WARNING: codec symbols differ from the NumPy quantizer's]"))
    if cal:
        text.append(f"   {cal['codec']}: {json.dumps(cal['config'])} from cc.calibrate on {cal['calibrated_on']} "
                    f"({cal['calibrate_s']:.2f} s); plan {json.dumps(cal['inspect'].get('plan'), default=str)}")
    if "engines_identical_bytes" in r:
        text.append(f"   cpu and reference engines wrote identical bytes: {r['engines_identical_bytes']}")
    for eng, msg in r.get("splitwire_errors", {}).items():
        text.append(f"   splitwire {eng}: not measured ({msg})")
    return "\n".join(text)


def render_ablation(name: str, variants: list[dict], bits_list) -> str:
    rows = []
    for v in variants:
        cells = []
        for c in v["cells"]:
            cells.append("error" if "error" in c else f"{c['bpe']:.3f} / {fmt(c['sqnr_db'], '.1f')}")
        rows.append([v["variant"], *cells])
    out = [f"== ablation on {name}: bits/elem / SQNR dB (engine auto)",
           table(["variant"] + [f"{b} bits" for b in bits_list], rows)]
    errs = {(v["variant"], c["bits"]): c["error"] for v in variants for c in v["cells"] if "error" in c}
    out += [f"   {k[0]} @ {k[1]} bits: {e}" for k, e in errs.items()]
    return "\n".join(out)


def render_targets(targets: list[dict]) -> str:
    rows = [[t["tensor"], str(t["bits"]), t["target"], fmt(t["measured"], ".4g"), "yes" if t["ok"] else "NO",
             t.get("rounds", "")] for t in targets]
    return ("== issue 2 targets (splitwire cpu; speed: median over rounds timed in alternation with the peer)\n"
            + table(["tensor", "bits", "target", "measured", "met", "rounds min-max"], rows))


# ------------------------------------------------------------------------------------------ main

def machine_info(cc, cpu) -> dict:
    from importlib.metadata import version
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.processor())
    vers = {m: version(m) for m in ("numpy", "numba", "zstandard", "lz4", "constriction")
            if _has_dist(m)}
    return {"cpu": model, "pinned_cpu": cpu, "logical_cpus": os.cpu_count(),
            "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(), "versions": vers,
            "codec_engines": codec_engines(cc) if cc else [], "codec_sources_sha256": codec_fingerprint(cc),
            "timing": None}


def codec_fingerprint(cc) -> str | None:
    """sha256 over the codec package's .py sources: which codec revision these numbers belong to."""
    if cc is None:
        return None
    import hashlib
    h = hashlib.sha256()
    for f in sorted(pathlib.Path(cc.__file__).parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _has_dist(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version
    try:
        version(name)
        return True
    except PackageNotFoundError:
        return False


def run_tensor(cc, name, x, bits, engines, timing, ref_timing, log, calibration=None) -> dict:
    """All main-table measurements for one tensor at one bit depth (``calibration``: see
    ``calibration_samples``)."""
    q, scale, zero = numpy_quantize(x, bits)
    ent = entropy_bytes(q)
    row = {"tensor": name, "shape": list(x.shape), "elements": int(x.size), "bits": bits,
           "entropy_bytes": ent, "entropy_bits_per_symbol": 8 * ent / x.size, "splitwire": {},
           "splitwire_errors": {}}
    for eng in engines:
        log(f"  splitwire {eng} ...")
        try:
            row["splitwire"][eng] = bench_splitwire(cc, x, bits, eng, ent, ref_timing if eng == "reference"
                                                    else timing, (q, scale, zero))
        except Exception as exc:   # noqa: BLE001 - e.g. EngineUnavailableError: report, keep going
            row["splitwire_errors"][eng] = f"{type(exc).__name__}: {exc}"
    if "reference" in row["splitwire"] and "cpu" in row["splitwire"]:
        row["engines_identical_bytes"] = row["splitwire"]["reference"]["blob"] == row["splitwire"]["cpu"]["blob"]
    for sw in row["splitwire"].values():
        sw.pop("blob")
    log("  NumPy + zstd -3 pipeline, peers ...")
    row["pipeline"] = bench_pipeline(x, bits, ent, timing)
    if bits == 4 and "cpu" in row["splitwire"]:
        log("  paired speed ratios (splitwire cpu vs NumPy + zstd -3) ...")
        row["paired"] = bench_paired(cc, x, bits, timing)
    if calibration is not None and "cpu" in row["splitwire"]:
        log(f"  calibrated plan ({calibration[1]}) ...")
        row["calibrated"] = bench_calibrated(cc, x, bits, calibration, ent, timing)
    row["peers"] = bench_peers(q, bits, ent, timing)
    return row


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="splitwire bench codec", description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print the JSON document instead of tables")
    ap.add_argument("--quick", action="store_true", help="small subset for CI smoke tests (< 60 s)")
    ap.add_argument("--out", type=pathlib.Path, default=None,
                    help="JSON output path (default bench/results/codec_cpu[_quick].json)")
    ap.add_argument("--stat", choices=("best", "median"), default="best",
                    help="sample statistic for MB/s (best resists other load on a shared machine)")
    ap.add_argument("--regenerate", action="store_true", help="re-extract the feature tensors")
    ap.add_argument("--features-dir", type=pathlib.Path, default=features.CACHE_DIR,
                    help="feature tensor cache (.npy), regenerated when missing")
    ap.add_argument("--doc", type=pathlib.Path, default=None,
                    help=f"also write the tables into this markdown file between {DOC_BEGIN} and {DOC_END}")
    ap.add_argument("--report", type=pathlib.Path, default=None,
                    help="measure nothing: render the tables of a saved JSON document")
    return ap.parse_args(argv)


def plan_run(quick: bool) -> dict:
    """What to measure: the full benchmark, or a CI smoke subset (< 60 s)."""
    if quick:
        return {"names": ("effnet_dense_1", "synthetic_relu"), "bits_main": (4,), "bits_ablation": (4, 2),
                "ablation_tensors": ("effnet_dense_1",), "reference_tensors": (), "transform_tensors": ("effnet_dense_1",),
                "timing": {"samples": 3, "min_sample_s": 0.01, "budget_s": 1.0}}
    return {"names": features.NAMES, "bits_main": BITS_MAIN, "bits_ablation": BITS_ABLATION,
            "ablation_tensors": ("effnet_dense_8", "effnet_relu_8", "synthetic_relu"),
            "reference_tensors": ("effnet_dense_1",), "transform_tensors": ("effnet_dense_1", "effnet_dense_8"),
            "timing": {"samples": 7, "min_sample_s": 0.05, "budget_s": 10.0}}


def get_tensors(args, names, log):
    """Real features when torch/foolbox or the cache are there; otherwise the synthetic tensor only."""
    try:
        tensors, manifest = features.load_features(args.features_dir, regenerate=args.regenerate, names=names)
        return tensors, manifest, None
    except (ImportError, RuntimeError) as exc:
        note = f"real features unavailable ({exc}); install torch==2.13.0 and the efficientnet packages"
        log(note)
        tensors, manifest = features.load_features(args.features_dir, names=names, real=False)
        return tensors, manifest, note


def run_all(args, log) -> dict:
    cc, codec_error = import_codec()
    plan = plan_run(args.quick)
    timing, ref_timing = plan["timing"], {"samples": 3, "min_sample_s": 0.0, "budget_s": 30.0}
    tensors, manifest, feature_note = get_tensors(args, plan["names"], log)
    engines_avail = codec_engines(cc) if cc else []
    results = {"command": "python bench/codec_cpu.py" + (" --quick" if args.quick else "")
               + ("" if args.stat == "best" else f" --stat {args.stat}"),
               "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
               "notes": [
                   "splitwire and 'NumPy quant + zstd -3' MB/s count float32 input bytes (4 B/element); "
                   "peer MB/s count uint8 symbol bytes (1 B/element) of the same quantized symbols.",
                   f"Times: {args.stat} of {timing['samples']} samples after one warm-up call; each sample "
                   f"repeats the call to last >= {timing['min_sample_s']} s; process pinned to one CPU; "
                   "NUMBA/OMP/MKL threads = 1.",
                   "x H0: whole size (header/frame included) over n*H0(q)/8, q = uniform per-tensor "
                   "min/max symbols (FORMAT.md section 2).",
                   "constriction ANS size excludes its frequency table: constriction does not transmit "
                   "the model; its decoder is handed the encoder's histogram. Histogram + model "
                   "construction are inside its timed encode, model construction inside its decode.",
               ],
               "codec_error": codec_error, "feature_note": feature_note,
               "tensors": {n: manifest["tensors"].get(n, {}) for n in tensors},
               "provenance": manifest.get("provenance", {}), "main": [], "ablation": {}, "transform": {}}
    if cc is None:
        log(f"codec_cupy not importable: {codec_error}; measuring peers only")
    elif "cpu" not in engines_avail:
        results["notes"].append(f"engine 'cpu' unavailable (available: {engines_avail}); reference only")

    with one_core() as cpu:
        results["machine"] = {**machine_info(cc, cpu), "timing": timing}
        for name in (n for n in plan["names"] if n in tensors):
            calibration = None if cc is None else calibration_samples(name, tensors)   # once for every bit depth
            for bits in plan["bits_main"]:
                log(f"{name} {tensors[name].shape} bits={bits}")
                engines = [] if cc is None else (
                    ["cpu"] + (["reference"] if name in plan["reference_tensors"] else []))
                results["main"].append(run_tensor(cc, name, tensors[name], bits, engines, timing, ref_timing, log,
                                                  calibration))
        if cc is not None:
            for name in [n for n in plan["ablation_tensors"] if n in tensors] or list(tensors)[:1]:
                log(f"ablation {name} ...")
                results["ablation"][name] = bench_ablation(cc, tensors[name], plan["bits_ablation"], "auto")
            if "cpu" in engines_avail:
                for name in (n for n in plan["transform_tensors"] if n in tensors):
                    log(f"transform coding {name} ...")
                    results["transform"][name] = bench_transform(cc, tensors[name], timing)
    results["targets"] = check_targets(results["main"])
    return results


def render_report(results: dict) -> str:
    """All human-readable tables of one run."""
    m = results.get("machine", {})
    parts = [f"{results['command']}   ({results.get('date_utc', '?')} UTC, {m.get('cpu')}, pinned to CPU "
             f"{m.get('pinned_cpu')}, codec sources {m.get('codec_sources_sha256')}, "
             f"load average at start {fmt((m.get('loadavg_at_start') or [None])[0], '.1f')})"]
    notes = results["notes"] + [results[k] for k in ("codec_error", "feature_note") if results.get(k)]
    parts.append("\n".join(f"note: {n}" for n in notes))
    parts += [render_main(r) for r in results["main"]]
    parts += [render_ablation(n, v, [c["bits"] for c in v[0]["cells"]]) for n, v in results["ablation"].items()]
    parts += [render_transform(n, rows) for n, rows in results.get("transform", {}).items()]
    if results["targets"]:
        parts.append(render_targets(results["targets"]))
    return "\n\n".join(parts)


DOC_BEGIN, DOC_END = "<!-- BEGIN GENERATED: bench/codec_cpu.py --doc -->", "<!-- END GENERATED -->"


def write_doc(path: pathlib.Path, report: str) -> None:
    """Replace the generated block of a markdown file (appended if the markers are absent)."""
    block = f"{DOC_BEGIN}\n```text\n{report}\n```\n{DOC_END}"
    text = path.read_text() if path.exists() else ""
    if DOC_BEGIN in text and DOC_END in text:
        head, rest = text.split(DOC_BEGIN, 1)
        text = head + block + rest.split(DOC_END, 1)[1]
    else:
        text = text + ("\n" if text else "") + block + "\n"
    path.write_text(text)


def main(argv=None) -> int:
    args = parse_args(argv)
    global STAT
    STAT = f"{args.stat}_s"
    log = lambda msg: print(msg, file=sys.stderr, flush=True)   # progress: stderr, results: stdout
    if args.report:
        results = json.loads(args.report.read_text())
    else:
        results = run_all(args, log)
        out = args.out or RESULTS_DIR / ("codec_cpu_quick.json" if args.quick else "codec_cpu.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1, default=_json_default) + "\n")
        log(f"JSON written to {out}")
    report = render_report(results)
    print(json.dumps(results, indent=1, default=_json_default) if args.json else report, flush=True)
    if args.doc:
        write_doc(args.doc, report)
        log(f"tables written into {args.doc}")
    return 0


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, bytes):
        return o.hex()
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
