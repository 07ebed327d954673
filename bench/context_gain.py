"""How much richer entropy models save on real split features: estimates, and splitwire's shared prior.

    python bench/context_gain.py [--limit 1000] [--json PATH] [--quick]

splitwire codes each symbol with an order-0 table chosen per channel group, per blob (the tables
travel in the header). Two richer models are common in feature and image coding; this script
measures, on the scalar codec's operating points (its cheapest point within 1 point of the unsplit
model in docs/RESULTS.md), how many bits per element each would need, next to what splitwire
spends today:

* ``blob``: splitwire's measured blob (header, tables and CRC included), bits per element.
* ``H0``: the order-0 entropy of each sample's symbols (one table, its cost not counted).
* ``H|sig``: the in-sample conditional entropy given the significance (symbol != zero point) of
  the left and upper neighbours in the same map: what a four-context coder would reach before
  paying for its four tables. Cross-map neighbours are not used.
* ``prior/elem``: cross-entropy of the test half under a static per-element (channel x position)
  model estimated on the other half (add-1/2 counts): what a calibrated prior shared by the edge and
  the server would reach with no table in the header at all.
* ``prior blob``: splitwire's measured blobs with a shared prior (``codec_cupy.fit_prior`` with its
  defaults, format version 3) fitted on one half of the samples and used on the other, both ways:
  header, quantizer and CRC included, the prior itself (held by both ends) not.

Symbols are the codec's own: each sample is encoded with the listed config, decoded, and mapped back
with the blob's scale and zero point (exact for the uniform quantizer). Features come from the
evaluation's models (``splitwire eval``'s machinery; needs torch and the committed Fashion-MNIST
weights, and the EfficientNet-Lite0 package for the ImageNet split). Every number printed is measured
in this run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import codec_cupy as cc  # noqa: E402

# (model, split, CodecConfig fields): the scalar codec's "within 1 point" points in docs/RESULTS.md
# (channels-first splits; Swin-T's channels-last maps are left out).
POINTS = (
    ("fmnist_resnet50", "layer1", dict(bits=2, clip="percentile", percentile=99.0)),
    ("fmnist_resnet50", "layer2", dict(bits=2, clip="percentile", percentile=99.5)),
    ("fmnist_resnet50", "layer3", dict(bits=1, clip="percentile", percentile=99.0)),
    ("fmnist_vgg16", "features.13", dict(bits=2, clip="percentile", percentile=99.8)),
    ("fmnist_mobilenet_v2", "features.3", dict(bits=3, granularity="channel")),
    ("fmnist_densenet121", "features.transition1", dict(bits=4)),
    ("fmnist_efficientnet_b0", "features.2", dict(bits=3)),
    ("efficientnet_lite0", "_blocks.8", dict(bits=5, granularity="channel")),
)
QUICK_POINTS = POINTS[:1]
RESULTS_JSON = ROOT / "bench" / "results" / "context_gain.json"


def features(model: str, split: str, limit: int) -> np.ndarray:
    """The head's output on the evaluation inputs of ``model`` (float32, N x C x H x W)."""
    from splitwire.evaluation import runner
    from splitwire.evaluation.config import parse_config
    from splitwire.evaluation.features import split_model
    from splitwire.evaluation.inputs import model_inputs

    entry = {"name": model, "splits": [split], "codecs": "c"}
    if model.startswith("fmnist_"):
        entry.update(limit=limit, batch=500)
    else:
        entry.update(photos=["foolbox", "skimage", "sklearn", "debian"], crops=1)
    cfg = parse_config({"name": "context_gain", "models": [entry], "codecs": {"c": [{"type": "float32"}]}})
    spec = runner._load_model(model)
    inp = model_inputs(spec, cfg.models[0])
    return split_model(spec, model, split, inp.x, inp.names, cfg.models[0].batch).features


def symbols(x: np.ndarray, config: cc.CodecConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """(symbols, per-channel zero points, blob bytes) of one sample (1 x C x H x W)."""
    blob = cc.encode(x, config)
    info = cc.inspect(blob)
    y = cc.decode(blob)
    shape = (1, -1, 1, 1) if len(info["scale"]) > 1 else (1, 1, 1, 1)
    scale = np.asarray(info["scale"], np.float64).reshape(shape)
    zero = np.asarray(info["zero_point"], np.int64).reshape(shape)
    q = np.rint(y / scale).astype(np.int64) + zero
    return q[0], np.broadcast_to(zero, (1, x.shape[1], 1, 1))[0], len(blob)


def entropy(values: np.ndarray) -> float:
    """Total order-0 information of ``values`` in bits (empirical distribution)."""
    if values.size == 0:
        return 0.0
    counts = np.unique(values, return_counts=True)[1].astype(np.float64)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def significance_context(q: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """0..3 per element: left neighbour significant + 2 x upper neighbour significant."""
    sig = q != zero
    ctx = np.zeros(q.shape, np.int8)
    ctx[:, :, 1:] += sig[:, :, :-1]
    ctx[:, 1:, :] += 2 * sig[:, :-1, :]
    return ctx


def conditional_bits(q: np.ndarray, ctx: np.ndarray) -> float:
    return sum(entropy(q[ctx == c]) for c in np.unique(ctx))


def prior_bits(train: np.ndarray, test: np.ndarray) -> float:
    """Bits of ``test`` (n x E symbols) under per-element add-1/2 models counted on ``train``."""
    alphabet = int(max(train.max(), test.max())) + 1
    elems = train.shape[1]
    counts = np.full((elems, alphabet), 0.5)
    np.add.at(counts, (np.broadcast_to(np.arange(elems), train.shape), train), 1.0)
    logp = np.log2(counts / counts.sum(1, keepdims=True))
    return float(-logp[np.arange(elems)[None, :], test].sum())


def measure(model: str, split: str, fields: dict, limit: int) -> dict:
    t0 = time.time()
    feats = features(model, split, limit)
    config = cc.CodecConfig(**fields)
    n, elems = len(feats), int(np.prod(feats.shape[1:]))
    qs, blob_bytes, h0, hsig = [], 0, 0.0, 0.0
    for i in range(n):
        q, zero, nbytes = symbols(feats[i:i + 1], config)
        blob_bytes += nbytes
        h0 += entropy(q)
        hsig += conditional_bits(q, significance_context(q, zero))
        qs.append(q.reshape(-1))
    qs = np.stack(qs)
    half = n // 2
    prior = prior_bits(qs[:half], qs[half:]) + prior_bits(qs[half:], qs[:half])
    prior_blob = 0
    for fit, coded in ((range(half), range(half, n)), (range(half, n), range(half))):
        p = cc.fit_prior([feats[i:i + 1] for i in fit], config)
        prior_blob += sum(len(cc.encode(feats[i:i + 1], config, prior=p)) for i in coded)
    per_elem = lambda bits: bits / (n * elems)  # noqa: E731
    return {"model": model, "split": split, "shape": list(feats.shape[1:]), "samples": n,
            "config": fields, "blob_bpe": 8 * blob_bytes / (n * elems), "h0_bpe": per_elem(h0),
            "h_sig_bpe": per_elem(hsig), "prior_element_bpe": per_elem(prior),
            "prior_blob_bpe": 8 * prior_blob / (n * elems),
            "seconds": time.time() - t0}


def render(rows: list[dict]) -> str:
    head = ("model / split", "shape", "config", "blob", "H0", "H|sig", "prior/elem", "prior blob", "H|sig/H0",
            "prior/H0", "prior blob/blob")
    lines = []
    for r in rows:
        cfg = " ".join(f"{k}={v}" for k, v in r["config"].items())
        lines.append((f"{r['model']} {r['split']}", "x".join(map(str, r["shape"])), cfg,
                      f"{r['blob_bpe']:.3f}", f"{r['h0_bpe']:.3f}", f"{r['h_sig_bpe']:.3f}",
                      f"{r['prior_element_bpe']:.3f}", f"{r['prior_blob_bpe']:.3f}",
                      f"{r['h_sig_bpe'] / r['h0_bpe']:.3f}", f"{r['prior_element_bpe'] / r['h0_bpe']:.3f}",
                      f"{r['prior_blob_bpe'] / r['blob_bpe']:.3f}"))
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 3 else c.rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    out = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(l) for l in lines]
    return "\n".join(out) + ("\n(bits per element; blob and prior blob include header and CRC, the estimates "
                               "count no table)\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=1000, help="Fashion-MNIST test images per model")
    ap.add_argument("--quick", action="store_true", help="one split point, 100 images (smoke test)")
    ap.add_argument("--json", default=None, help=f"write the rows here (default {RESULTS_JSON.relative_to(ROOT)}"
                    " for a full run, nothing for --quick)")
    args = ap.parse_args(argv)
    points, limit = (QUICK_POINTS, 100) if args.quick else (POINTS, args.limit)
    rows = []
    for model, split, fields in points:
        try:
            rows.append(measure(model, split, fields, limit))
        except (ImportError, FileNotFoundError) as e:  # a model whose package or weights are missing
            print(f"skipped {model} {split}: {type(e).__name__}: {e}", file=sys.stderr)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"python bench/context_gain.py  ({stamp}, {platform.python_version()})\n")
    print(render(rows))
    target = args.json or (None if args.quick else RESULTS_JSON)
    if target:
        Path(target).write_text(json.dumps({"date": stamp, "limit": limit, "rows": rows}, indent=1) + "\n")
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
