"""Rate-accuracy plots (matplotlib, Agg): for each model, one row per split point, accuracy vs KB per
sample (left) and vs bits per element (right), one line per codec."""

from __future__ import annotations

from pathlib import Path

from .analysis import ok_rows, reference_score, score

# Baselines get fixed colors; splitwire variants share blue/green shades and solid lines.
_BASE_STYLE = {
    "float32": ("black", "s"), "float16": ("dimgray", "s"), "int8": ("silver", "D"),
    "int8+zstd": ("tab:brown", "D"), "int8+lz4": ("peru", "D"), "PNG (tiled)": ("tab:purple", "^"),
    "JPEG (tiled)": ("tab:orange", "v"), "WebP (tiled)": ("tab:pink", "<"), "HEVC x265 (tiled)": ("tab:red", "o"),
}
_SW_COLORS = ["tab:blue", "tab:cyan", "tab:green", "navy", "teal", "olive", "darkgreen", "slateblue",
              "deepskyblue", "seagreen", "royalblue", "lime"]


def _styles(lines: list[str]) -> dict[str, dict]:
    out, k = {}, 0
    for ln in lines:
        if ln in _BASE_STYLE:
            c, m = _BASE_STYLE[ln]
            out[ln] = {"color": c, "marker": m, "linestyle": "--", "linewidth": 1.2}
        else:
            out[ln] = {"color": _SW_COLORS[k % len(_SW_COLORS)], "marker": "o.x+*"[k // len(_SW_COLORS) % 5],
                       "linestyle": "-", "linewidth": 1.6}
            k += 1
    return out


def plot_model(results: dict, model: str, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = next(m for m in results["models"] if m["model"] == model)
    splits = [s["split"] for s in info["splits"]]
    rows = [r for r in ok_rows(results) if r["model"] == model]
    lines = list(dict.fromkeys(r["line"] for r in rows))
    sw = [ln for ln in lines if ln.startswith("splitwire")]
    lines = sw + [ln for ln in lines if not ln.startswith("splitwire")]
    style = _styles(lines)
    metric = info["metric"]
    ylab = "top-1 agreement with unsplit model (%)" if metric == "agreement" else "top-1 accuracy (%)"
    ref = reference_score(info)
    tol = results.get("tolerance", 1.0)
    fig, axes = plt.subplots(len(splits), 2, figsize=(13, 3.6 * len(splits) + 1.2), squeeze=False)
    for i, split in enumerate(splits):
        srows = [r for r in rows if r["split"] == split]
        shape = next((s["feature_shape"] for s in info["splits"] if s["split"] == split), [])
        for j, (xkey, xlab) in enumerate((("kb_per_sample", "KB per sample (one blob per sample, headers included)"),
                                          ("bpe", "bits per element"))):
            ax = axes[i][j]
            for ln in lines:
                pts = sorted((r[xkey], score(r)) for r in srows if r["line"] == ln)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], label=ln, markersize=4, **style[ln])
            if ref is not None:
                ax.axhline(ref, color="black", linewidth=0.8, linestyle=":")
                ax.axhline(ref - tol, color="red", linewidth=0.8, linestyle=":")
            if xkey == "bpe":
                ax.axvline(0.6, color="gray", linewidth=0.8, linestyle="-.")
            ax.set_xscale("log")
            lo = min((score(r) for r in srows), default=0)
            top = ref if ref is not None else 100
            ax.set_ylim(max(lo, top - 40) - 2, top + 2)
            ax.grid(True, which="both", alpha=0.3)
            ax.set_xlabel(xlab)
            ax.set_ylabel(ylab if j == 0 else "")
            ax.set_title(f"{model} @ {split} ({'x'.join(map(str, shape))})", fontsize=10)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=4, fontsize=8, frameon=False)
    n_leg_rows = (len(labels) + 3) // 4
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.02 + 0.022 * n_leg_rows) * 6 / (3.6 * len(splits) + 1.2)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_all(results: dict, out_dir: str | Path) -> list[Path]:
    return [plot_model(results, m["model"], Path(out_dir) / f"{m['model']}.png") for m in results["models"]]
