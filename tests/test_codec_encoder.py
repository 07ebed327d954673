"""The cpu engine's encoder internals: the integer reciprocal, the stream grouping, the fused front end."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import codec_cupy as cc
from codec_cupy import _cpu
from conftest import relu_features


def _fields(freqs, n):
    tab = _cpu.encode_table(freqs[None, :], n)
    t16 = tab.view(np.uint16)
    return tab[0::4].astype(np.uint64), tab[1::4].astype(np.int64), t16[5::8], t16[6::8].astype(np.uint64)


@pytest.mark.parametrize("n", [8, 12, 15])
def test_encoder_reciprocal_quotient_is_exact(n):
    """(x + (x * r >> 32)) >> L equals x // f for every frequency, at the extremes a stream can
    reach (x < f * 2**(32 - n) after renormalisation) and at random states."""
    f = np.arange(1, (1 << n) + 1, dtype=np.int64)
    r, thr, mf, lg = _fields(f, n)
    top = f << (32 - n)                              # exclusive bound on x
    assert np.array_equal(thr, top - 1)
    want_lg = [max(0, (int(v) - 1).bit_length()) for v in f]            # ceil(log2 f), r in integers
    assert lg.tolist() == want_lg
    assert r.tolist() == [-(-(1 << (32 + g)) // int(v)) - (1 << 32) for v, g in zip(f, want_lg)]
    assert np.array_equal(mf.astype(np.int64), (1 << n) - f)
    rng = np.random.default_rng(n)
    for x in (top - 1, top - f, top - f - 1, f * 3, f * 3 - 1, np.full_like(f, 1 << 16),
              f * ((1 << 16) // f + 1), rng.integers(1 << 16, top)):
        x = np.minimum(x, top - 1).astype(np.uint64)
        q = (x + ((x * r) >> np.uint64(32))) >> lg
        assert np.array_equal(q, x // f.astype(np.uint64))


@pytest.mark.parametrize("k,bits", [(4, 1), (4, 2), (8, 1)])
def test_gather_packs_every_symbol_combination(k, bits):
    """The one-load, one-multiply packing (``_cpu.GATHER_*``) gives sum(q_u << bits * u) for all
    2**(k*bits) symbol combinations: in rows of several lengths (so words are read at unaligned
    addresses), next to the largest symbol (nothing leaks in), in symbol indices and histograms."""
    combos = np.array(np.meshgrid(*[np.arange(1 << bits)] * k, indexing="ij")).reshape(k, -1).T
    n = combos.shape[0]
    coded, zeros = np.arange(n, dtype=np.int64), np.zeros(n, np.int64)
    for extra in range(8):
        length = k + extra
        q = np.full((n, length), (1 << bits) - 1, np.uint8)
        q[:, :k] = combos
        padded = np.zeros((n, -(-length // k) * k), np.int64)        # padding: the zero symbol 0
        padded[:, :length] = q
        want = (padded.reshape(n, -1, k) << (bits * np.arange(k))).sum(axis=2)
        sidx = np.empty(want.size, np.uint16)
        _cpu._symbol_indices(q, length, coded, zeros, zeros, k, bits, sidx)
        assert np.array_equal(sidx.reshape(want.shape), want)
        hist = np.zeros((n, 1 << (k * bits)), np.int32)
        values = np.empty(want.size, np.uint8)
        _cpu._histogram(q, coded, zeros, bits, k, hist, coded, values)
        assert np.array_equal(hist, np.array([np.bincount(w, minlength=1 << (k * bits)) for w in want]))
        assert np.array_equal(values, want.ravel())


@pytest.mark.parametrize("k,bits", [(1, 8), (1, 3), (2, 4), (2, 3), (4, 2), (8, 1)])
@pytest.mark.parametrize("length", [4003, 4096])
def test_spread_histogram_counts_and_packs_like_a_plain_count(k, bits, length):
    """Enough symbols per bin: ``_histogram`` counts into four copies in turn (runs of zeros, odd
    tails, a padded last group), and its sums and packed values are those of a plain count."""
    rng = np.random.default_rng(k * 10 + bits + length)
    channels, rows = 12, np.array([0, 1, 1, 2, 0, 2, 1, 0, 2, 2, 1, 0], np.int64)
    q = rng.integers(0, 1 << bits, (channels, length)).astype(np.uint8)
    q[:, : length // 2] = 0                                        # a long run of one symbol
    coded = np.array([0, 1, 2, 4, 5, 6, 8, 9, 10, 11], np.int64)
    zsym = rng.integers(0, 1 << bits, channels).astype(np.int64)
    alphabet, groups = 1 << (k * bits), -(-length // k)
    assert coded.size * groups >= _cpu.SPREAD_BINS_PER_SYMBOL * 3 * alphabet     # the spread path
    hist = np.zeros((3, alphabet), np.int64)
    values = np.empty(coded.size * groups, np.uint8)
    _cpu._histogram(q, coded, zsym, bits, k, hist, rows, values)
    padded = np.repeat(zsym[coded, None], groups * k, axis=1)
    padded[:, :length] = q[coded]
    want = (padded.reshape(coded.size, groups, k).astype(np.int64) << (bits * np.arange(k))).sum(axis=2)
    assert np.array_equal(values, want.ravel())
    expect = np.zeros_like(hist)
    for j, c in enumerate(coded):
        expect[rows[c]] += np.bincount(want[j], minlength=alphabet)
    assert np.array_equal(hist, expect)


@pytest.mark.parametrize("streams", [1, 2, 3, 4, 5, 6, 7, 8, 9, 13])
def test_stream_groupings_decode(streams):
    """Groups of four lanes, groups with repeated lanes, a lone stream and a short last stream."""
    x = relu_features(np.random.default_rng(streams), (2, 8, 9, 7))
    blob = cc.encode(x, cc.CodecConfig(bits=4, streams=streams))
    assert blob == cc.encode(x, cc.CodecConfig(bits=4, streams=streams), engine="reference")
    assert cc.inspect(blob)["plan"]["streams"] == streams


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("length", [1, 7, 8, 29, 64])
def test_marginal_histograms_equal_direct_counts(bits, length):
    """Every pack factor's histograms, derived from the largest one's, equal a direct count."""
    rng = np.random.default_rng(bits * 100 + length)
    channels = 5
    q = rng.integers(0, 1 << bits, (channels, length)).astype(np.uint8)
    q[1] = 0
    coded = np.array([0, 1, 3, 4], np.int64)
    zsym = rng.integers(0, 1 << bits, channels).astype(np.int64)
    ks = [k for k in (1, 2, 4, 8) if k * bits <= 8]
    rows = np.arange(channels, dtype=np.int64)

    def direct(k):
        hist = np.zeros((channels, 1 << (k * bits)), np.int64)
        _cpu._histogram(q, coded, zsym, bits, k, hist, rows, np.empty(coded.size * -(-length // k), np.uint8))
        return hist

    big = direct(ks[-1])
    for k in ks[:-1]:
        marginal = np.zeros((channels, 1 << (k * bits)), np.int64)
        _cpu._marginal(big, ks[-1], k, bits, coded, zsym, length, marginal, rows)
        assert np.array_equal(marginal, direct(k))
        halves = np.zeros_like(marginal)              # the encoder's chain: k from 2k's counts
        _cpu._marginal(direct(2 * k), 2 * k, k, bits, coded, zsym, length, halves, rows)
        assert np.array_equal(halves, marginal)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), channels=st.integers(1, 70), inner=st.integers(1, 31),
       bits=st.integers(1, 8))
def test_flat_quantizer_writes_the_per_channel_quantizer_symbols(seed, channels, inner, bits):
    """Small maps (outer 1, one scale) are quantized in one flat loop: same symbols and counts,
    ties at half steps and clamped values included."""
    rng = np.random.default_rng(seed)
    qmax = (1 << bits) - 1
    scale = np.float32(rng.uniform(0.01, 2.0))
    zero = int(rng.integers(0, qmax + 1))
    steps = rng.integers(-qmax - 3, qmax + 4, (1, channels, inner)) + rng.choice([0.0, 0.5, -0.5, 0.3], (1, channels, inner))
    xv = (steps * scale).astype(np.float32)
    want = [np.empty((channels, inner), np.uint8), np.zeros(channels, np.int64), np.zeros(channels, np.int64)]
    _cpu._quantize_uniform(xv, np.full(channels, scale, np.float32), np.full(channels, zero, np.int64), qmax, *want)
    got = [np.empty((channels, inner), np.uint8), np.zeros(channels, np.int64), np.zeros(channels, np.int64)]
    _cpu._quantize_flat(xv, scale, zero, qmax, *got)
    for a, b in zip(got, want):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("values", [[-0.0, 0.0, 1.5], [0.0, -0.0], [-3.0, -1.0, -0.0], [2.0, 2.0], [-1e-38, 5e-39],
                                    [-65504.0, 3.0, 1e30]])
@pytest.mark.parametrize("bits", [1, 4, 8])
def test_tensor_range_gives_the_reference_bytes(values, bits):
    """Per-tensor parameters from the cpu engine's flat min/max equal the per-channel path's:
    signed zeros, all-negative, constant, subnormal and huge ranges."""
    x = np.resize(np.array(values, np.float32), (2, 3, 4))
    cfg = cc.CodecConfig(bits=bits)
    assert cc.encode(x, cfg, engine="cpu") == cc.encode(x, cfg, engine="reference")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_non_finite_rejected_on_both_range_paths(bad, granularity):
    x = np.ones((1, 3, 5), np.float32)
    x[0, 2, 4] = bad
    for engine in ("cpu", "reference"):
        with pytest.raises(cc.errors.InputError, match="NaN or Inf"):
            cc.encode(x, cc.CodecConfig(bits=4, granularity=granularity), engine=engine)


@pytest.mark.parametrize("shape, zero_channels", [((1, 256, 2, 2), (5, 77, 200)), ((1, 64, 4, 4), range(0, 64, 3)),
                                                  ((1, 16, 7, 9), (3, 11)), ((2, 40, 1, 1), (1, 2, 3))])
@pytest.mark.parametrize("bits", [1, 4])
def test_auto_mask_never_loses_to_sparse_on_and_checks_off_where_the_mask_matters(rng, shape, zero_channels, bits):
    from codec_cupy._planner import mask_may_cost

    x = relu_features(rng, shape, zero_channels)
    size = {sparse: len(cc.encode(x, cc.CodecConfig(bits=bits, sparse=sparse))) for sparse in ("auto", "on", "off")}
    assert size["auto"] <= size["on"]
    if mask_may_cost(size["on"], shape[1]):            # the mask is worth a second try: the smaller blob wins
        assert size["auto"] == min(size["on"], size["off"])
    else:
        assert size["auto"] == size["on"]
    blob = cc.encode(x, cc.CodecConfig(bits=bits))
    assert np.array_equal(cc.decode(blob), cc.decode(cc.encode(x, cc.CodecConfig(bits=bits, sparse="on"))))
    for engine in cc.available_engines():
        assert cc.encode(x, cc.CodecConfig(bits=bits), engine=engine) == blob


def test_auto_drops_the_mask_when_coding_few_zero_channels_is_cheaper(rng):
    x = np.abs(rng.laplace(size=(1, 256, 4, 4))).astype(np.float32)
    x[:, 9] = 0                                          # one zero channel: 32 mask bytes for 16 zeros
    for bits in (3, 4, 5):
        with_mask = cc.encode(x, cc.CodecConfig(bits=bits, sparse="on"))
        assert cc.inspect(with_mask)["plan"]["zero_channels"] == 1
        info = cc.inspect(cc.encode(x, cc.CodecConfig(bits=bits)))
        assert not info["plan"]["zero_mask"] and info["sizes"]["total_bytes"] < len(with_mask)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), channels=st.integers(1, 40), length=st.integers(0, 70),
       bits=st.integers(1, 8), zero_share=st.floats(0.0, 1.0),
       tables=st.sampled_from(["auto", 1, 3, 16]), pack=st.sampled_from(["auto", 1, 2]),
       prob_bits=st.sampled_from(["auto", 8, 13]), streams=st.sampled_from(["auto", 1, 3]),
       search=st.sampled_from(["greedy", "full"]))
def test_fused_front_end_codes_like_the_step_by_step_pipeline(seed, channels, length, bits, zero_share, tables,
                                                              pack, prob_bits, streams, search):
    """``_cpu_encode._code`` (compiled, inside the cpu engine's one-call encoder) and ``_encoder._code``
    driving the reference engine step by step (per-channel histograms summed into the segments)
    decide and write the same thing."""
    from codec_cupy import _cpu_encode, _encoder, _reference

    if pack != "auto" and pack * bits > 8:
        pack = 1
    cfg = cc.CodecConfig(bits=bits, tables=tables, pack=pack, prob_bits=prob_bits, streams=streams, search=search)
    settings_ = _encoder._settings(cfg)
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 1 << bits, size=(channels, length)).astype(np.uint8)
    q[rng.random(channels) < zero_share] = 1                  # zero channels, at zero symbol 1
    zsym = np.full(channels, 1, np.int64)
    absdev = np.abs(q.astype(np.int64) - 1).sum(axis=1)
    coded = np.flatnonzero(absdev).astype(np.int64) if rng.random() < 0.5 else np.arange(channels, dtype=np.int64)
    k, tmap, freqs, prob_bits_, words, nwords = _cpu_encode._code(q, coded, zsym, absdev, bits, *settings_)
    steps = _encoder._code(_reference, q, coded, zsym, absdev, bits, settings_)
    assert (k, prob_bits_) == (steps.pack, steps.prob_bits)
    assert np.array_equal(tmap, steps.table_map) and np.array_equal(freqs, steps.freqs)
    assert np.array_equal(words.view(np.uint8), steps.streams) and np.array_equal(nwords, steps.nwords)


@pytest.mark.parametrize("first", ["codec_cupy._cpu", "codec_cupy._cpu_encode"])
def test_cpu_engine_modules_import_in_either_order(first):
    import subprocess
    import sys

    code = (f"import {first}, numpy as np, codec_cupy as cc; "
            "x = np.arange(40, dtype=np.float32).reshape(1, 4, 10); "
            "assert cc.encode(x, engine='cpu') == cc.encode(x, engine='reference')")
    subprocess.run([sys.executable, "-c", code], check=True)


finite = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=300, deadline=None)
@given(lo=finite, hi=finite, bits=st.integers(1, 8))
def test_compiled_tensor_parameters_are_uniform_params(lo, hi, bits):
    """The cpu engine's per-tensor scale and zero point (``tensor_scale_zero``, compiled) are those of
    ``uniform_params``, the NumPy policy every engine's header agrees on, to the bit."""
    from codec_cupy._quantizer import tensor_scale_zero, uniform_params

    lo, hi = min(lo, hi), max(lo, hi)
    scale, zero = tensor_scale_zero(lo, hi, bits)
    ref = uniform_params(np.array([lo]), np.array([hi]), bits, per_channel=False)
    assert np.float32(scale).view(np.uint32) == ref.scale[0].view(np.uint32) and zero == ref.zero_point[0]


@pytest.mark.parametrize("shape", [(1, 40, 7, 7), (3,), (), (0, 4, 3)])
def test_per_tensor_encoder_reuses_its_cached_frame_safely(shape, rng):
    """Same-shaped tensors share ``_encoder._tensor_frame``'s cached arrays: encoding one must not
    change what the next one writes (the cpu engine's bytes stay the reference's)."""
    for bits in (2, 4, 4):
        for _ in range(2):
            x = rng.laplace(size=shape).astype(np.float32)
            assert cc.encode(x, cc.CodecConfig(bits=bits), engine="cpu") == \
                cc.encode(x, cc.CodecConfig(bits=bits), engine="reference")


@pytest.mark.parametrize("channels", [1, 8, 9, 256])
def test_mask_check_threshold_is_one_percent_of_the_blob(channels):
    """sparse="auto" codes a masked blob again without the mask exactly when the mask's
    ceil(C/8) bytes are at least 1 % of it (both encoder paths call this one rule)."""
    from codec_cupy._planner import mask_may_cost

    mask_bytes = (channels + 7) // 8
    assert mask_may_cost(100 * mask_bytes, channels)
    assert not mask_may_cost(100 * mask_bytes + 1, channels)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_full_search_writes_the_same_bytes_on_every_engine_and_the_same_reconstruction(rng, bits):
    x = relu_features(rng, shape=(1, 48, 12, 12), zero_channels=(5,))
    full = cc.CodecConfig(bits=bits, search="full", speed_slack=0.0)
    blob = cc.encode(x, full, engine="cpu")
    assert cc.encode(x, full, engine="reference") == blob
    greedy = cc.encode(x, cc.CodecConfig(bits=bits, speed_slack=0.0), engine="cpu")
    np.testing.assert_array_equal(cc.decode(blob), cc.decode(greedy))
    # the full search prices a superset of the greedy one's final candidates (streams aside)
    assert len(blob) <= len(greedy) + 8


def test_search_is_validated():
    with pytest.raises(cc.ConfigError, match="search"):
        cc.CodecConfig(search="exhaustive")
