"""bench/codec_cpu.py runs: the transform-coding table on a small tensor, and the --quick smoke run
(the benchmark's numbers live in docs/BENCH_CODEC.md; here only that it measures and renders)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import codec_cupy as cc
from conftest import smooth_features

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import codec_cpu  # noqa: E402

TINY = {"samples": 1, "min_sample_s": 0.0, "budget_s": 1.0}


def test_transform_table_measures_every_setting_and_checks_the_reference_bytes():
    x = smooth_features(np.random.default_rng(0), (1, 8, 14, 14))
    rows = codec_cpu.bench_transform(cc, x, TINY)
    assert [r["setting"] for r in rows] == [name for name, _ in codec_cpu.TRANSFORM_ROWS]
    for r in rows:
        assert r["reference_same_bytes"] is True
        assert r["bpe"] > 0 and r["enc_MBps_f32"] > 0 and r["dec_MBps_f32"] > 0
    by_name = {r["setting"]: r for r in rows}
    assert by_name["dct7 step 0.02"]["sqnr_db"] > by_name["dct7 step 0.09"]["sqnr_db"]     # finer step, less error
    text = codec_cpu.render_transform("smooth", rows)
    assert "dct7 w=0.25 step 0.04" in text and "NO" not in text


def test_quick_run_writes_json_and_tables(tmp_path, capsys):
    out = tmp_path / "quick.json"
    assert codec_cpu.main(["--quick", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["targets"] and results["main"]
    printed = capsys.readouterr().out
    assert "issue 2 targets" in printed
    if "effnet_dense_1" in results["transform"]:                  # real features available
        assert "transform coding on effnet_dense_1" in printed
