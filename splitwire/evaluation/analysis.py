"""What the numbers say: the score each model is judged on, the smallest rate within tolerance,
and whether splitwire's curve lies above each baseline's."""

from __future__ import annotations

FAMILIES = ("splitwire", "HEVC x265 (tiled)", "WebP (tiled)", "JPEG (tiled)", "PNG (tiled)", "int8+zstd",
            "int8+lz4", "int8", "float16", "float32")


def ok_rows(results: dict) -> list[dict]:
    return [r for r in results["points"] if not r.get("error") and r.get("bpe") is not None]


def family(row: dict) -> str:
    return "splitwire" if row["type"] == "splitwire" else row["line"]


def score(row: dict) -> float:
    """Agreement with the unsplit model, or top-1 accuracy, as the model's ``metric`` says."""
    v = row["agreement"] if row["metric"] == "agreement" else row["top1"]
    return float("nan") if v is None else float(v)


def reference_score(model_info: dict) -> float | None:
    if model_info["metric"] == "agreement":
        return 100.0
    return model_info.get("top1")


def smallest_within(rows: list[dict], ref: float, tol: float) -> dict | None:
    """The point with the fewest bits per element whose score is >= ref - tol."""
    good = [r for r in rows if score(r) >= ref - tol - 1e-9]
    return min(good, key=lambda r: r["bpe"]) if good else None


def envelope(rows: list[dict], rate: float) -> float | None:
    """Best score among ``rows`` at a rate <= ``rate`` bits per element."""
    s = [score(r) for r in rows if r["bpe"] <= rate * (1 + 1e-9)]
    return max(s) if s else None


def dominance(sw: list[dict], base: list[dict], reference: float | None = None) -> dict:
    """For each baseline point: does some splitwire point reach at least its score at no more bits?
    A lost point scoring above ``reference`` (the unsplit model) is flagged ``above_reference``: its
    coding noise happened to fix more predictions than it broke, which no faithful codec aims at."""
    lost = []
    for b in sorted(base, key=lambda r: r["bpe"]):
        env = envelope(sw, b["bpe"])
        if env is None or env < score(b):
            lost.append({"label": b["label"], "bpe": b["bpe"], "score": score(b), "splitwire_best": env,
                         "above_reference": reference is not None and score(b) > reference + 1e-9})
    return {"points": len(base), "beaten_or_tied": len(base) - len(lost), "lost": lost}


def summarize(results: dict) -> list[dict]:
    """Per model and split: reference score, smallest rate within tolerance per family, dominance."""
    tol = results.get("tolerance", 1.0)
    rows = ok_rows(results)
    out = []
    for info in results["models"]:
        ref = reference_score(info)
        for s in info["splits"]:
            srows = [r for r in rows if r["model"] == info["model"] and r["split"] == s["split"]]
            sw = [r for r in srows if r["type"] == "splitwire"]
            fams = {}
            for fam in FAMILIES:
                fr = [r for r in srows if family(r) == fam]
                if fr:
                    fams[fam] = smallest_within(fr, ref, tol) if ref is not None else None
            dom = {}
            for fam in FAMILIES[1:]:
                fr = [r for r in srows if family(r) == fam]
                if fr and sw:
                    dom[fam] = dominance(sw, fr, ref)
            out.append({"model": info["model"], "split": s["split"], "metric": info["metric"],
                        "feature_shape": s["feature_shape"], "elements": s["elements"], "reference": ref,
                        "split_uncompressed": s["split_agreement"] if info["metric"] == "agreement" else s["split_top1"],
                        "smallest": fams, "dominance": dom})
    return out
