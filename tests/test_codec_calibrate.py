"""``calibrate``: the modeling fields fixed once from sample tensors (codec_cupy/_calibrate.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import codec_cupy as cc
from codec_cupy import _calibrate


def _relu_maps(seed: int, shape=(1, 12, 6, 6), zeros=0.4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.2, 3.0, size=(1, shape[1], 1, 1))
    x = rng.laplace(size=shape) * scale + 0.3
    x[rng.random(shape) < zeros] = 0.0
    return np.maximum(x, 0.0).astype(np.float32)


def _total(samples, cfg) -> int:
    return sum(len(cc.encode(x, cfg, engine="cpu")) for x in samples)


def test_fixes_the_auto_fields_to_the_cheapest_combination():
    samples = [_relu_maps(s) for s in range(3)]
    base = cc.CodecConfig(bits=2, speed_slack=0.0)
    cal = cc.calibrate(samples, base, engine="cpu")
    assert (cal.pack, cal.tables, cal.prob_bits) != ("auto", "auto", "auto")
    assert cal.replace(pack="auto", tables="auto", prob_bits="auto") == base
    totals = {c: _total(samples, base.replace(pack=c[0], tables=c[1], prob_bits=c[2]))
              for c in _calibrate.candidates(base)}
    least = min(totals.values())
    assert _total(samples, cal) == least
    # with no slack: the cheapest, ties to the larger pack, then a precision <= 12, fewer tables, fewer bits
    cheapest = [c for c, n in totals.items() if n == least]
    k = max(c[0] for c in cheapest)
    t, b = min(((t, b) for kk, t, b in cheapest if kk == k), key=lambda tb: (tb[1] > 12, tb))
    assert (cal.pack, cal.tables, cal.prob_bits) == (k, t, b)


def test_never_worse_than_the_planner_on_its_own_samples_by_more_than_the_slack():
    """The per-tensor planner may adapt to each sample, but it chooses among the same combinations
    with a greedy search: one fixed combination that is cheapest over the samples is close to it."""
    samples = [_relu_maps(s, shape=(2, 16, 8, 8)) for s in range(4)]
    cfg = cc.CodecConfig(bits=4)
    cal = cc.calibrate(samples, cfg)
    assert _total(samples, cal) <= _total(samples, cfg) * 1.02


def test_keeps_fields_that_are_not_auto():
    samples = [_relu_maps(1)]
    cal = cc.calibrate(samples, cc.CodecConfig(bits=4, pack=1, prob_bits=11))
    assert cal.pack == 1 and cal.prob_bits == 11 and cal.tables in _calibrate.TABLE_COUNTS
    fixed = cc.CodecConfig(bits=4, pack=2, tables=3, prob_bits=9)
    assert cc.calibrate(samples, fixed) == fixed


def test_candidates_follow_the_config():
    assert len(_calibrate.candidates(cc.CodecConfig(bits=1))) == 4 * 5 * 7       # packs 1, 2, 4, 8
    assert len(_calibrate.candidates(cc.CodecConfig(bits=8))) == 1 * 5 * 7
    assert _calibrate.candidates(cc.CodecConfig(bits=4, tables=2, prob_bits=12)) == [(1, 2, 12), (2, 2, 12)]


def test_choose_rule():
    # a larger pack within the slack of the least wins; outside it does not
    assert _calibrate.choose({(1, 1, 10): 1000, (2, 1, 10): 1004}, 0.005) == (2, 1, 10)
    assert _calibrate.choose({(1, 1, 10): 1000, (2, 1, 10): 1006}, 0.005) == (1, 1, 10)
    # above 12 bits a precision must save more than the slack
    assert _calibrate.choose({(2, 1, 12): 1000, (2, 1, 13): 996}, 0.005) == (2, 1, 12)
    assert _calibrate.choose({(2, 1, 12): 1000, (2, 1, 13): 994}, 0.005) == (2, 1, 13)
    # ties: fewer tables, then fewer bits
    assert _calibrate.choose({(2, 4, 10): 900, (2, 2, 11): 900, (2, 2, 10): 900}, 0.0) == (2, 2, 10)
    # only precise candidates (prob_bits fixed above 12)
    assert _calibrate.choose({(2, 1, 14): 10, (2, 2, 14): 9}, 0.0) == (2, 2, 14)


def test_one_array_is_one_sample_and_empty_or_bad_input_is_refused():
    x = _relu_maps(2)
    assert cc.calibrate(x, cc.CodecConfig(bits=4)) == cc.calibrate([x], cc.CodecConfig(bits=4))
    with pytest.raises(cc.ConfigError, match="at least one sample"):
        cc.calibrate([], cc.CodecConfig(bits=4))
    with pytest.raises(cc.ConfigError, match="must be a CodecConfig"):
        cc.calibrate([x], {"bits": 4})
    with pytest.raises(cc.InputError):
        cc.calibrate([np.full((1, 2, 2, 2), np.nan, np.float32)], cc.CodecConfig(bits=4))


def test_empty_and_constant_samples():
    cal = cc.calibrate([np.zeros((1, 3, 0, 4), np.float32), np.zeros((1, 3, 2, 2), np.float32)],
                       cc.CodecConfig(bits=3))
    assert cal.pack != "auto"
    for x in (np.zeros((0,), np.float32), np.ones((1, 5), np.float32)):
        np.testing.assert_array_equal(cc.decode(cc.encode(x, cal)), cc.decode(cc.encode(x, cc.CodecConfig(bits=3))))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), bits=st.sampled_from([1, 2, 4, 8]),
       channels=st.integers(1, 9), side=st.integers(1, 7))
def test_calibrated_blobs_decode_to_the_default_reconstruction(seed, bits, channels, side):
    """Only the entropy model is fixed: the quantizer, hence the decoded tensor, is the default's, on
    tensors other than the samples too; every engine writes the same bytes."""
    samples = [_relu_maps(seed + i, shape=(1, channels, side, side)) for i in range(2)]
    cal = cc.calibrate(samples, cc.CodecConfig(bits=bits, tables="auto", prob_bits="auto"), engine="cpu")
    x = _relu_maps(seed + 7, shape=(1, channels, side + 1, side))
    blob = cc.encode(x, cal, engine="cpu")
    assert cc.encode(x, cal, engine="reference") == blob
    np.testing.assert_array_equal(cc.decode(blob), cc.decode(cc.encode(x, cc.CodecConfig(bits=bits))))
    plan = cc.inspect(blob)["plan"]
    if plan["packed_symbols"]:                       # (nothing coded: the smallest model instead)
        assert plan["pack"] == cal.pack and plan["prob_bits"] == cal.prob_bits


@pytest.mark.parametrize("base", [cc.CodecConfig(bits=6, transform="dct", block=4, step=0.05),
                                  cc.CodecConfig(bits=3, granularity="channel"),
                                  cc.CodecConfig(bits=3, quantizer="ecsq")])
def test_calibrates_every_quantizer(base):
    samples = [_relu_maps(s, shape=(1, 6, 8, 8)) for s in range(2)]
    cal = cc.calibrate(samples, base)
    assert cal.replace(pack="auto", tables="auto", prob_bits="auto") == base
    x = _relu_maps(9, shape=(1, 6, 8, 8))
    np.testing.assert_array_equal(cc.decode(cc.encode(x, cal)), cc.decode(cc.encode(x, base)))
