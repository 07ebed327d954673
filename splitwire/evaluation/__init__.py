"""Rate-accuracy evaluation harness (``splitwire eval``): one YAML file describes a sweep over models,
split points and codec points; the runner measures real bytes per sample and accuracy, the writers
store JSON/CSV, plots draws accuracy vs rate, report writes docs/RESULTS.md.

    config.py    YAML -> EvalConfig (validated, clear errors)
    codecs.py    codec registry: splitwire, float32/16, int8+zstd/lz4, tiled PNG/JPEG/WebP/HEVC
    inputs.py    the inputs each model sees (real photos installed offline, Fashion-MNIST)
    features.py  cut once per split, head once (cached), tail on decoded features
    metrics.py   top-1, agreement with the unsplit model, feature error
    runner.py    the sweep, with a progress bar
    writers.py   results.json / results.csv
    analysis.py  smallest rate within tolerance, dominance over baselines
    plots.py     PNG plots (matplotlib Agg)
    report.py    docs/RESULTS.md
"""

from .config import ConfigError, EvalConfig, load_config, parse_config

__all__ = ["ConfigError", "EvalConfig", "load_config", "parse_config", "evaluate"]


def evaluate(config_path, out_dir=None, progress=True):
    """Run a sweep file end to end; returns (results dict, {"json", "csv", "plots"} paths)."""
    from pathlib import Path

    from .plots import plot_all
    from .runner import run_sweep
    from .writers import write_results

    cfg = load_config(config_path)
    out = Path(out_dir) if out_dir else Path("results") / "eval" / cfg.name
    results = run_sweep(cfg, out, progress=progress)
    paths = write_results(results, out)
    paths["plots"] = plot_all(results, out / "plots")
    return results, paths
