"""The sweep: models x split points x codec points, one row per (model, split, codec point).

For each model: load it, build its inputs, compute the unsplit model's logits (the reference).
For each split point: cut, run the head once (features cached under ``<out>/cache``). For each
codec point: encode every sample separately (one blob per sample, as deployed; ``workers`` forked
processes share the samples), decode, run the tail on the decoded batch, score. A codec that reproduces the features exactly reuses the
uncompressed tail's logits.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from . import metrics
from .codecs import FeatureInfo, FoldFisher, hevc_available, make_codec
from .config import EvalConfig
from .features import reference_logits, split_model, tail_logits
from .forking import fork_map
from .inputs import env_threads, model_inputs

KB = 1024.0


class _SimpleBar:
    """Fallback progress bar on stderr when tqdm is not installed."""

    def __init__(self, total: int, desc: str = ""):
        self.total, self.n, self.desc, self.t0, self.postfix = total, 0, desc, time.time(), ""

    def update(self, n: int = 1):
        self.n += n
        el = time.time() - self.t0
        eta = el / self.n * (self.total - self.n) if self.n else 0
        sys.stderr.write(f"\r{self.desc} {self.n}/{self.total} [{el:5.0f}s elapsed, ~{eta:4.0f}s left] "
                         f"{self.postfix[:60]:<60}")
        sys.stderr.flush()

    def set_postfix_str(self, s: str):
        self.postfix = s

    def write(self, s: str):
        sys.stderr.write("\r" + s + "\n")

    def close(self):
        sys.stderr.write("\n")


def progress_bar(total: int, desc: str, enabled: bool = True):
    if not enabled:
        class _Null(_SimpleBar):
            def update(self, n=1):
                self.n += n

            def close(self):
                pass

            def write(self, s):
                print(s, file=sys.stderr)
        return _Null(total, desc)
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="pt", dynamic_ncols=True, file=sys.stderr)
    except ImportError:
        return _SimpleBar(total, desc)


def resolve_splits(spec, entry) -> list[str]:
    if isinstance(entry.splits, list):
        return list(entry.splits)
    if entry.splits == "recommended":
        pts = list(getattr(spec, "split_points", None) or [])
        if pts:
            return pts
    if spec.default_split:
        return [spec.default_split]
    raise ValueError(f"{entry.name} has no default split point; list `splits:` in the config")


def _load_model(name: str):
    from .. import models

    try:
        return models.load(name)
    except SystemExit as e:  # models.load reports unknown names / missing packages this way
        raise RuntimeError(str(e)) from None


def run_sweep(cfg: EvalConfig, out_dir: str | Path, progress: bool = True, log=None) -> dict:
    """Run the whole sweep; returns the results dict (also what writers.write_results stores)."""
    log = log or (lambda s: print(s, file=sys.stderr))
    env_threads(cfg.threads)
    out_dir = Path(out_dir)
    t_start = time.time()
    r0, k0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = r0.ru_utime + r0.ru_stime + k0.ru_utime + k0.ru_stime
    hevc_reason = hevc_available() if any(p["type"] == "hevc" for ps in cfg.codecs.values() for p in ps) else None
    if hevc_reason:
        log(f"WARNING: HEVC points skipped: no libx265 encoder via PyAV ({hevc_reason}); "
            "`pip install av` provides one")

    # Load every model first so the progress bar knows the total.
    plan, skipped = [], []
    for entry in cfg.models:
        try:
            spec = _load_model(entry.name)
        except Exception as e:
            if not entry.optional:
                raise
            skipped.append({"model": entry.name, "reason": f"{type(e).__name__}: {e}"})
            log(f"WARNING: optional model {entry.name} skipped: {e}")
            continue
        plan.append((entry, spec, resolve_splits(spec, entry)))
    total = sum(len(s) * len(cfg.codecs[e.codecs]) for e, _, s in plan)
    bar = progress_bar(total, f"eval {cfg.name}", progress)

    rows: list[dict] = []
    model_info: list[dict] = []
    try:
        for entry, spec, splits in plan:
            t0 = time.time()
            inp = model_inputs(spec, entry)
            ref = reference_logits(spec.module, inp.x, entry.batch)
            ref_top1 = ref.argmax(1)
            info = {"model": entry.name, "dataset": entry.dataset, "metric": entry.metric,
                    "inputs": int(len(inp.x)), "labelled": inp.labelled, "sources": inp.sources,
                    "input_shape": list(inp.x.shape[1:]),
                    "top1": metrics.top1(ref, inp.labels), "splits": []}
            bar.write(f"{entry.name}: {len(inp.x)} inputs ({inp.labelled} labelled; "
                      + ", ".join(f"{k} {v}" for k, v in inp.sources.items())
                      + f"), unsplit top-1 {_fmt(info['top1'])}")
            for split in splits:
                sm = split_model(spec, entry.name, split, inp.x, inp.names, entry.batch, out_dir / "cache")
                base = tail_logits(sm, sm.features, entry.batch)
                feature = FeatureInfo(sm.sample_shape, sm.channel_axis,
                                      fisher=FoldFisher(sm.tail, sm.features, sm.channel_axis, entry.batch))
                info["splits"].append({"split": split, "kind": sm.kind, "feature_shape": list(sm.sample_shape[1:]),
                                       "elements": sm.elements, "split_top1": metrics.top1(base, inp.labels),
                                       "split_agreement": metrics.agreement(base, ref_top1)})
                for point in cfg.codecs[entry.codecs]:
                    bar.set_postfix_str(f"{entry.name} {split} {point['label']}")
                    row = {"model": entry.name, "split": split, "dataset": entry.dataset, "metric": entry.metric,
                           "feature_shape": "x".join(map(str, sm.sample_shape[1:])), "elements": sm.elements,
                           "inputs": int(len(inp.x)), "labelled": inp.labelled,
                           "type": point["type"], "line": point["line"], "label": point["label"],
                           "params": point["params"], "top1_unsplit": info["top1"], "error": None}
                    if point["type"] == "hevc" and hevc_reason:
                        row["error"] = f"skipped: no HEVC encoder ({hevc_reason})"
                    else:
                        t_point = time.time()
                        try:
                            row.update(_measure(point, feature, sm, base, inp.labels, ref_top1, entry.batch, cfg.workers))
                        except Exception as e:  # one broken point must not lose the sweep
                            row["error"] = f"{type(e).__name__}: {e}"
                            bar.write(f"ERROR {entry.name} {split} {point['label']}: {row['error']}\n"
                                      + traceback.format_exc(limit=3))
                        # Wall time of the whole point (fitting, coding, tail): what a sweep line costs.
                        row["point_s"] = time.time() - t_point
                    rows.append(row)
                    bar.update(1)
            info["seconds"] = time.time() - t0
            model_info.append(info)
    finally:
        bar.close()
    ru_self, ru_kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = ru_self.ru_utime + ru_self.ru_stime + ru_kids.ru_utime + ru_kids.ru_stime - cpu0
    return {"config": cfg.name, "source": cfg.source, "tolerance": cfg.tolerance,
            "wall_s": time.time() - t_start, "cpu_s": cpu_s,
            "load_avg_at_end": list(os.getloadavg()), "hevc": hevc_reason or "libx265 via PyAV",
            "machine": {"python": platform.python_version(), "platform": platform.platform(),
                        "threads": cfg.threads, "workers": cfg.workers},
            "models": model_info, "skipped_models": skipped, "points": rows}


def _code_range(codec, feats: np.ndarray, lo: int, hi: int):
    """Encode and decode samples lo..hi-1 (in a worker or inline): (sizes, decoded, enc_s, dec_s)."""
    sizes, out, enc, dec = [], [], 0.0, 0.0
    for i in range(lo, hi):
        coder = codec.for_sample(i)
        t0 = time.perf_counter()
        blob = coder.encode(feats[i:i + 1])
        t1 = time.perf_counter()
        out.append(coder.decode(blob))
        dec += time.perf_counter() - t1
        enc += t1 - t0
        sizes.append(len(blob))
    return sizes, np.concatenate(out), enc, dec


def _code_all(codec, feats: np.ndarray, workers: int):
    n = len(feats)
    if workers <= 1 or n < 2 * workers:
        return _code_range(codec, feats, 0, n)
    # The first sample runs here: JIT compilation (Numba) then happens once, in the parent, and the
    # forked workers inherit the compiled code instead of compiling it again each.
    parts = [_code_range(codec, feats, 0, 1)]
    bounds = np.linspace(1, n, workers + 1).astype(int).tolist()
    parts += fork_map(lambda b: _code_range(codec, feats, *b), zip(bounds[:-1], bounds[1:]), workers)
    return ([s for p in parts for s in p[0]], np.concatenate([p[1] for p in parts]),
            sum(p[2] for p in parts), sum(p[3] for p in parts))


def _measure(point, feature, sm, base_logits, labels, ref_top1, batch, workers=1) -> dict:
    codec = make_codec(point, feature)
    feats = sm.features
    n = len(feats)
    codec.prepare(feats, workers)    # e.g. fit the priors of ``prior: 2fold`` (before the workers fork)
    sizes, dec, enc_s, dec_s = _code_all(codec, feats, workers)
    dec = dec.reshape(feats.shape)
    t2 = time.perf_counter()
    exact = bool(np.array_equal(dec, feats))
    logits = base_logits if exact else tail_logits(sm, dec, batch)
    t3 = time.perf_counter()
    sizes = np.asarray(sizes, np.float64)
    mean_bytes = float(sizes.mean())
    return {"bytes_per_sample": mean_bytes, "bytes_min": int(sizes.min()), "bytes_max": int(sizes.max()),
            "kb_per_sample": mean_bytes / KB, "bpe": 8.0 * mean_bytes / sm.elements,
            "top1": metrics.top1(logits, labels), "agreement": metrics.agreement(logits, ref_top1),
            "exact": exact, **metrics.feature_error(feats, dec),
            "encode_ms": enc_s / n * 1e3, "decode_ms": dec_s / n * 1e3, "tail_s": t3 - t2}


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.1f}%"
