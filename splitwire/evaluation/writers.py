"""Store a sweep's results: ``results.json`` (everything) and ``results.csv`` (one row per point)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

CSV_FIELDS = ["model", "split", "feature_shape", "elements", "dataset", "metric", "inputs", "labelled", "type",
              "line", "label", "params", "bytes_per_sample", "kb_per_sample", "bpe", "top1", "agreement",
              "top1_unsplit", "exact", "mse", "psnr_db", "encode_ms", "decode_ms", "tail_s", "point_s", "error"]


def _clean(v):
    """JSON has no inf/nan: write them as strings."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def write_results(results: dict, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath, cpath = out / "results.json", out / "results.csv"
    jpath.write_text(json.dumps(_clean(results), indent=1) + "\n")
    with cpath.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in results["points"]:
            r = dict(r)
            r["params"] = json.dumps(r.get("params", {}), sort_keys=True)
            w.writerow({k: r.get(k) for k in CSV_FIELDS})
    return {"json": jpath, "csv": cpath}


def read_results(path: str | Path) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    return json.loads(p.read_text())
