"""The planner's fast search makes exactly the choices of its definition (bytes depend on them).

The oracle below is the planner's specification written plainly: per candidate grouping, the summed
histograms, largest-remainder rounding by a full sort, every present symbol raised to 1 and the
surplus taken back one unit at a time by a scan, ``best_order`` on the whole table row.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from codec_cupy import _cpu, _planner, _reference
from codec_cupy._tablecodec import best_order

LOG2Q = _planner.LOG2Q


def _normalize(counts, prob_bits):
    """Frequencies summing to 2**prob_bits (the definition in ``normalize_freqs``' docstring)."""
    m = 1 << prob_bits
    counts = [int(c) for c in counts]
    total = sum(counts)
    f = [0] * len(counts)
    if total == 0:
        f[0] = m
        return f
    f = [c * m // total for c in counts]
    rem = [c * m - q * total for c, q in zip(counts, f)]
    for a in sorted((a for a in range(len(counts)) if rem[a] > 0), key=lambda a: (-rem[a], a))[:m - sum(f)]:
        f[a] += 1
    for a, c in enumerate(counts):
        if c > 0 and f[a] == 0:
            f[a] = 1
    while sum(f) > m:                          # c / (f - 1/2) least: c * (2 f_b - 1) < c_b * (2 f - 1)
        best = None
        for a, c in enumerate(counts):
            if f[a] > 1 and (best is None or c * (2 * f[best] - 1) < counts[best] * (2 * f[a] - 1)):
                best = a
        f[best] -= 1
    return f


def _candidate(hist, order, ncoded, channels, ntables, prob_bits):
    ntables = int(ntables)
    tmap = _planner.group_channels(order, ncoded, ntables, channels)
    freqs = np.zeros((ntables, hist.shape[1]), np.int64)
    cost = 0 if ntables == 1 else (channels * max(1, (ntables - 1).bit_length())) << _planner.Q
    for t in range(ntables):
        counts = hist[order[:ncoded][tmap[order[:ncoded]] == t]].sum(axis=0).astype(np.int64)
        freqs[t] = _normalize(counts, prob_bits)
        nq = prob_bits << _planner.Q
        cost += int(sum(int(c) * (nq - int(LOG2Q[f])) for c, f in zip(counts, freqs[t]) if c > 0))
        cost += int(best_order(freqs[t])[1]) << _planner.Q
    return cost, tmap, freqs


def _refine(hist, order, ncoded, channels, tables, best, first_bits, walk_bits, min_bits, max_bits, slack):
    """One pack: more tables while they pay (from ``tables[0]``, priced as ``best``), then the walk."""
    t = tables[0]
    for t2 in tables[1:]:
        cand = _candidate(hist, order, ncoded, channels, t2, first_bits)
        if cand[0] >= best[0]:
            break
        best, t = cand, t2
    bits = first_bits
    if walk_bits:
        for step in (-1, 1):
            n = first_bits + step
            while min_bits <= n <= max_bits:
                cand = _candidate(hist, order, ncoded, channels, t, n)
                if cand[0] >= best[0] or (step > 0 and cand[0] + slack(best[0]) >= best[0]):
                    break
                best, bits = cand, n
                n += step
            if bits != first_bits:
                break
    return best, t, bits


def _oracle(hists, order, ncoded, channels, tables, first_bits, walk_bits, min_bits, max_bits, slack_ppm=0,
            full=False):
    def slack(cost):
        return (cost >> _planner.Q) * slack_ppm // 1_000_000 << _planner.Q

    found = []
    for h in hists:
        first = _candidate(h, order, ncoded, channels, tables[0], first_bits)
        found.append(_refine(h, order, ncoded, channels, tables, first, first_bits, walk_bits, min_bits, max_bits,
                             slack) if full else (first, tables[0], first_bits))
    least = min(c[0][0] for c in found)
    ki = max(i for i, c in enumerate(found) if c[0][0] <= least + slack(least))   # the largest pack within the slack
    best, t, bits = found[ki]
    if not full:
        best, t, bits = _refine(hists[ki], order, ncoded, channels, tables, best, first_bits, walk_bits, min_bits,
                                max_bits, slack)
    return ki, t, bits, best[0], best[1], best[2]


def _hists(rng, channels, length, bits, kind):
    """Per-channel histograms for pack 1 and 2 of synthetic symbols (ReLU-like, dense, sparse)."""
    qmax = (1 << bits) - 1
    scale = rng.uniform(0.3, 4.0, channels)[:, None]
    if kind == "relu":
        q = np.clip(np.rint(rng.normal(-1.0, 1.0, (channels, length)) * scale), 0, qmax)
    elif kind == "dense":
        q = np.clip(np.rint(rng.normal(qmax / 2, 1.0, (channels, length)) * scale / 2), 0, qmax)
    else:
        q = np.where(rng.random((channels, length)) < 0.97, 0, rng.integers(0, qmax + 1, (channels, length)))
    q = q.astype(np.int64)
    h1 = np.zeros((channels, 1 << bits), np.int32)
    h2 = np.zeros((channels, 1 << (2 * bits)), np.int32)
    pairs = q[:, 0::2] | (q[:, 1::2] << bits)
    for c in range(channels):
        h1[c] = np.bincount(q[c], minlength=1 << bits)
        h2[c] = np.bincount(pairs[c], minlength=1 << (2 * bits))
    return h1, h2, np.abs(q).sum(axis=1)


def _plan(hists, order, ncoded, channels, tables, first_bits, walk, slack_ppm=0, full=False):
    bounds, row = _planner.boundaries(ncoded, tables)
    sums = tuple(_planner.segment_sums(h, order, bounds) for h in hists)
    return _planner.plan(sums, row, order, ncoded, channels, tables, first_bits, walk, 8, 14, LOG2Q, slack_ppm, full)


CASES = [(seed, bits, kind, channels, length)
         for seed, (bits, kind, channels, length) in enumerate([
             (4, "relu", 48, 64), (4, "relu", 20, 400), (4, "dense", 24, 128), (4, "sparse", 40, 256),
             (3, "relu", 17, 96), (2, "dense", 9, 512), (4, "relu", 3, 2000), (4, "sparse", 64, 16),
             (3, "sparse", 33, 50), (2, "relu", 70, 30), (4, "relu", 120, 400), (4, "dense", 32, 3000)])]


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("seed,bits,kind,channels,length", CASES)
@pytest.mark.parametrize("first_bits,walk", [(12, True), (9, True), (14, True), (11, False)])
def test_plan_matches_definition(seed, bits, kind, channels, length, first_bits, walk, full):
    rng = np.random.default_rng(seed)
    h1, h2, absdev = _hists(rng, channels, length, bits, kind)
    coded = np.flatnonzero(rng.random(channels) < 0.9).astype(np.int64)
    if coded.size == 0:
        coded = np.arange(channels, dtype=np.int64)
    ncoded = coded.size
    order = _planner.channel_order(absdev, coded)
    hists = (h1, h2) if 2 * bits <= 8 else (h1,)
    tables = np.array([min(t, ncoded) for t in (1, 2, 4, 8, 16) if t <= ncoded], np.int64)
    got = _plan(hists, order, ncoded, channels, tables, first_bits, walk, 0, full)
    want = _oracle(hists, order, ncoded, channels, list(tables), first_bits, walk, 8, 14, 0, full)
    assert got[:4] == want[:4]
    assert np.array_equal(got[4], want[4]) and np.array_equal(got[5], want[5])


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("slack_ppm", [0, 300, 2_000, 5_000, 30_000, 1_000_000])
@pytest.mark.parametrize("first_bits", [12, 9])
@pytest.mark.parametrize("seed,bits,kind,channels,length", [c for c in CASES if c[1] <= 4])
def test_speed_slack_matches_definition(seed, bits, kind, channels, length, first_bits, slack_ppm, full):
    """The largest pack within ``slack_ppm`` of the cheapest candidate (ties: the larger pack); a
    precision above the first one only where it saves more than the slack. ``full``: the packs
    compared on their costs after tables and precision."""
    rng = np.random.default_rng(seed)
    h1, h2, absdev = _hists(rng, channels, length, bits, kind)
    coded = np.arange(channels, dtype=np.int64)
    order = _planner.channel_order(absdev, coded)
    tables = np.array([t for t in (1, 2, 4, 8, 16) if t <= channels], np.int64)
    got = _plan((h1, h2), order, channels, channels, tables, first_bits, True, slack_ppm, full)
    want = _oracle((h1, h2), order, channels, channels, list(tables), first_bits, True, 8, 14, slack_ppm, full)
    assert got[:4] == want[:4] and np.array_equal(got[5], want[5])
    if full and slack_ppm == 0:                # never more than the greedy search
        assert got[3] <= _plan((h1, h2), order, channels, channels, tables, first_bits, True, 0, False)[3]
    if slack_ppm == 1_000_000:
        assert got[0] == 1                     # within 100 %: always the larger pack


@pytest.mark.parametrize("prob_bits", [8, 10, 12, 15])
def test_normalize_matches_definition(prob_bits):
    """Ties in the remainders, counts that floor to 0, a surplus taken from several symbols."""
    rng = np.random.default_rng(prob_bits)
    for alphabet in (2, 16, 256):
        for _ in range(20):
            counts = rng.geometric(rng.uniform(0.02, 0.6), alphabet) - 1
            counts[rng.random(alphabet) < 0.3] = 0
            counts[rng.integers(alphabet)] += rng.integers(1, 5000)
            out = np.empty(alphabet, np.int64)
            _planner.normalize_freqs(counts.astype(np.int64), prob_bits, out)
            assert list(out) == _normalize(counts, prob_bits)


def _greedy_surplus(counts, f, excess):
    """The surplus rule of ``_normalize`` alone: one unit at a time from the least c / (f - 1/2)."""
    f = [int(v) for v in f]
    for _ in range(excess):
        best = None
        for a, c in enumerate(counts):
            if f[a] > 1 and (best is None or int(c) * (2 * f[best] - 1) < int(counts[best]) * (2 * f[a] - 1)):
                best = a
        f[best] -= 1
    return f


def _surplus_cases(rng, n):
    """(counts, f, excess) as ``_round_and_fill`` hands them over: largest-remainder rounding, the
    symbols that floored to 0 raised to 1; skewed, flat, tied and huge counts."""
    for i in range(n):
        alphabet = int(rng.choice([2, 5, 16, 64, 256]))
        kind = i % 5
        if kind == 0:
            counts = rng.geometric(rng.uniform(0.005, 0.5), alphabet)
        elif kind == 1:
            counts = rng.integers(1, 4, alphabet)                       # many equal keys
        elif kind == 2:
            counts = rng.geometric(rng.uniform(0.01, 0.5), alphabet) * int(rng.integers(1, 10**6))
        elif kind == 3:
            counts = rng.choice([1, 2, 3, 1000, 5000], alphabet)
        else:
            counts = rng.geometric(0.05, alphabet) << 30                # products near 2**53 and above
        counts = counts.astype(np.int64)
        prob_bits = int(rng.integers(max(1, (alphabet - 1).bit_length()), 16))
        out = np.empty(alphabet, np.int64)
        rem = np.empty(alphabet, np.int64)
        total = int(counts.sum())
        _planner._scaled_floor(counts, total, prob_bits, out, rem)
        short = (1 << prob_bits) - int(out.sum())
        if short > 0:
            _planner._add_largest(rem, total, short, out, np.empty(2 * alphabet + 1, np.int64))
        excess = int((out == 0).sum())
        out[out == 0] = 1
        if excess:
            yield counts, out, excess


def test_take_surplus_is_the_greedy():
    """The threshold search takes the units the one-at-a-time definition takes, and on these tables
    both of its ways run: the threshold (with units given back) and the heap it falls back to."""
    rng = np.random.default_rng(11)
    heap_calls, large = [], 0
    fast = getattr(_planner._take_surplus, "py_func", _planner._take_surplus)   # Python: fallbacks counted
    heap = _planner._take_surplus_heap
    for counts, f, excess in _surplus_cases(rng, 1500):
        large += excess >= _planner.SURPLUS_HEAP_BELOW
        want = _greedy_surplus(counts, f, excess) if counts.size <= 64 else None
        got = f.copy()
        _planner._take_surplus(counts, got, excess)
        ref = f.copy()
        heap(counts, ref, excess)
        assert list(got) == list(ref)
        if want is not None:
            assert list(got) == want
        py = f.copy()
        fast.__globals__["_take_surplus_heap"] = lambda c, o, e: (heap_calls.append(e), heap(c, o, e))
        try:
            fast(counts, py, excess)
        finally:
            fast.__globals__["_take_surplus_heap"] = heap
        assert list(py) == list(ref)
    fallbacks = sum(e >= _planner.SURPLUS_HEAP_BELOW for e in heap_calls)
    assert 0 < fallbacks < 0.5 * large, (fallbacks, large)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10**7), st.integers(1, 4000)), min_size=1, max_size=256),
       st.floats(0.0, 1.0))
def test_take_surplus_on_any_table(pairs, share):
    """Any counts and frequencies (not only rounded ones), any surplus up to all that can go."""
    counts = np.array([c for c, _ in pairs], np.int64)
    f = np.array([v for _, v in pairs], np.int64)
    room = int((f - 1).sum())
    if room == 0:
        return
    excess = max(1, int(share * room))
    got, ref = f.copy(), f.copy()
    _planner._take_surplus(counts, got, excess)
    _planner._take_surplus_heap(counts, ref, excess)
    assert np.array_equal(got, ref)


def test_single_table_fixed_grouping():
    """One table count only, fewer coded channels than candidates: no search over tables."""
    rng = np.random.default_rng(7)
    h1, h2, absdev = _hists(rng, 5, 300, 4, "relu")
    coded = np.arange(5, dtype=np.int64)
    order = _planner.channel_order(absdev, coded)
    for tables in ([3], [5], [1]):
        t = np.array(tables, np.int64)
        got = _plan((h1, h2), order, 5, 5, t, 12, True)
        want = _oracle((h1, h2), order, 5, 5, tables, 12, True, 8, 14)
        assert got[:4] == want[:4] and np.array_equal(got[5], want[5])


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("length", [1, 7, 29, 64])
def test_segment_histograms_are_summed_channel_histograms(bits, length):
    """The cpu engine's histograms counted into the planner's segments (per-channel zero points,
    padding, an uncoded channel) equal the reference's per-channel ones summed, and its packed
    symbols are the reference's."""
    rng = np.random.default_rng(bits * 100 + length)
    channels = 11
    q = rng.integers(0, 1 << bits, (channels, length)).astype(np.uint8)
    coded = np.array([c for c in range(channels) if c != 4], np.int64)
    zsym = rng.integers(0, 1 << bits, channels).astype(np.int64)
    absdev = rng.integers(0, 50, channels).astype(np.int64)
    order, bounds, _, rows = _planner.segments(absdev, coded, np.array([1, 2, 4, 8], np.int64), channels)
    assert np.array_equal(order, _planner.channel_order(absdev, coded))
    ks = [k for k in (1, 2, 4, 8) if k * bits <= 8]
    for (h, packed), k in zip(_reference.histograms(q, coded, zsym, bits, ks), ks):
        per_segment = np.zeros((bounds.size - 1, h.shape[1]), np.int64)
        values = np.empty(packed.size, np.uint8)
        _cpu._histogram(q, coded, zsym, bits, k, per_segment, rows, values)
        assert np.array_equal(per_segment, _planner.segment_sums(h, order, bounds))
        assert np.array_equal(values, packed.ravel())


@pytest.mark.parametrize("budget_streams,expected", [(0, 1), (1, 1), (3, 3), (4, 4), (5, 4), (7, 4), (8, 8),
                                                     (13, 12), (61, 60)])
def test_stream_count_is_whole_lane_groups(budget_streams, expected):
    """``stream_overhead`` affords ``budget_streams``; above 4 the planner takes the largest multiple
    of the cpu decoder's 4 lanes (no stream decodes alone), never more than the budget."""
    ppm = 4_000
    cost_q = ((budget_streams * _planner.STREAM_FRAMING_BITS * 1_000_000 + ppm - 1) // ppm) << _planner.Q
    assert _planner.LANE_GROUP == _cpu.LANES
    assert _planner.choose_streams(10**7, cost_q, ppm, 0) == expected
    assert _planner.choose_streams(3, cost_q, ppm, 0) == min(3, expected)      # never an empty stream
    assert _planner.choose_streams(10**7, cost_q, ppm, 7) == 7                 # a fixed count is kept


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=300), st.booleans())
def test_channel_order_is_a_stable_sort_by_absdev(keys, huge):
    """Ties (many: small key range) keep channel order, by insertion (<= 32 channels) and by radix
    passes (one byte, or all eight for sums near 2**61)."""
    channels = len(keys) + 3
    coded = np.arange(3, channels, dtype=np.int64)            # channels 0..2 are not coded
    absdev = np.zeros(channels, np.int64)
    absdev[3:] = np.array(keys, np.int64) + ((1 << 61) if huge else 0)
    want = coded[np.argsort(absdev[3:], kind="stable")]
    assert np.array_equal(_planner.channel_order(absdev, coded), want)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 1 << 37), min_size=1, max_size=40), st.integers(1, 15))
def test_scaled_floor_is_the_integer_quotient(counts, prob_bits):
    """floor(c * M / total) and its remainder, exactly, for counts up to 2**37 (c * M up to 2**52)."""
    counts = np.array(counts, np.int64)
    total = int(counts.sum()) or 1
    q = np.empty(counts.size, np.int64)
    rem = np.empty(counts.size, np.int64)
    _planner._scaled_floor(counts, total, prob_bits, q, rem)
    want = [divmod(int(c) << prob_bits, total) for c in counts]
    assert q.tolist() == [w[0] for w in want] and rem.tolist() == [w[1] for w in want]
