"""bench/codec_cpu.py runs: the transform-coding table on a small tensor, and the --quick smoke run
(the benchmark's numbers live in docs/BENCH_CODEC.md; here only that it measures and renders)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

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


# ---------------------------------------------------------------- bench/context_gain.py

from bench import context_gain  # noqa: E402


def test_context_gain_entropies_on_known_symbols():
    assert context_gain.entropy(np.array([0, 0, 1, 1])) == 4.0                       # 1 bit each
    assert context_gain.entropy(np.zeros(7, np.int64)) == 0.0
    q = np.array([[[0, 1, 0, 1], [1, 0, 1, 0]]])                                    # one 2 x 4 map
    ctx = context_gain.significance_context(q, np.zeros((1, 1, 1), np.int64)[0])
    assert ctx.tolist() == [[[0, 0, 1, 0], [0, 3, 0, 3]]]
    # contexts 1 and 3 predict their symbols (0) exactly; context 0 holds 0, 1, 1, 1, 1
    assert context_gain.conditional_bits(q, ctx) == context_gain.entropy(np.array([0, 1, 1, 1, 1]))


def test_context_gain_prior_bits_uses_per_element_counts():
    train = np.array([[0, 1]] * 8)
    test = np.array([[0, 1], [1, 0]])
    # add-1/2 counts: element 0 is 0 with p = 8.5/9, element 1 is 1 with p = 8.5/9
    expected = -2 * np.log2(8.5 / 9) - 2 * np.log2(0.5 / 9)
    assert np.isclose(context_gain.prior_bits(train, test), expected)


def test_context_gain_quick_run_on_a_real_split(capsys):
    pytest.importorskip("torch")
    assert context_gain.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "fmnist_resnet50 layer1" in out and "prior/elem" in out
