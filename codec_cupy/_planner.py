"""The planner: chooses how to model and partition the symbols, from their statistics alone.

It is the "theoretical model" of the codec: for each candidate modeling it computes the coded size
*exactly* (in 1/65536 bits, integer arithmetic only, so every engine makes the same choice):

    cost = sum over symbols of log2(M / f[symbol])      the rANS payload, up to rounding
         + bits of the serialized frequency tables       (Exp-Golomb, FORMAT.md section 5)
         + bits of the channel -> table map

and keeps the cheapest. Candidates:
  * pack k: code k neighbouring symbols of a channel as one symbol of 2**(k*bits) values. This is
    joint (order-0 over k-tuples) modeling: it captures runs of ReLU zeros and local correlation,
    and it divides the number of sequential rANS steps by k.
  * tables T: channels ranked by their mean |q - zero| and split into T equal groups, each with its
    own frequency table ("a few tables for channel groups").
  * prob_bits n: precision of the tables; more bits = closer to the true distribution, larger tables.
Then the number of streams S: as many as keep the per-stream framing (state, directory entry,
the coder's ~16-bit start-up cost) under ``stream_overhead`` of the payload, so decoders get as much
parallelism as the bytes can afford.

The functions are plain loops over small arrays, compiled with Numba (plain Python without it); every
engine calls these same functions, so every engine makes the same choices.
"""

from __future__ import annotations

import numpy as np

from ._jit import njit
from ._tablecodec import best_order

Q = 16                                    # fixed-point fraction bits of all costs
MAX_PROB_BITS = 15
STREAM_FRAMING_BITS = 8 * 7               # u32 state + ~1-2 byte directory entry + ~16-bit start-up

# LOG2Q[f] = round(log2(f) * 2**Q) for f in 1..2**15, LOG2Q[0] = 0 (unused).
LOG2Q = np.zeros((1 << MAX_PROB_BITS) + 1, np.int64)
LOG2Q[1:] = np.rint(np.log2(np.arange(1, (1 << MAX_PROB_BITS) + 1, dtype=np.float64)) * (1 << Q)).astype(np.int64)


@njit
def normalize_freqs(counts, prob_bits, out):
    """Scale integer ``counts`` (A,) to frequencies summing to 2**prob_bits into ``out`` (A,).

    Largest-remainder rounding of counts * M / total, then every present symbol gets at least 1,
    taking the surplus one unit at a time from the symbol whose cost rises least (c / (f - 1/2),
    compared in integers). Requires #present symbols <= M. Deterministic, integer-only.
    """
    m = np.int64(1) << prob_bits
    alphabet = counts.shape[0]
    total = np.int64(0)
    for a in range(alphabet):
        total += counts[a]
    if total == 0:
        for a in range(alphabet):
            out[a] = 0
        out[0] = m
        return
    rem = np.empty(alphabet, np.int64)
    assigned = np.int64(0)
    for a in range(alphabet):
        scaled = counts[a] * m
        out[a] = scaled // total
        rem[a] = scaled % total
        assigned += out[a]
    short = m - assigned
    # +1 to the `short` largest remainders (ties: smaller symbol). The key is unique per symbol, so
    # the `short` smallest keys are those <= the short-th smallest: a selection, not a full sort.
    # The fractional parts sum to `short` and each is < 1, so only symbols with rem > 0 qualify.
    if short > 0:
        keys = np.empty(alphabet, np.int64)
        nkeys = 0
        for a in range(alphabet):
            if rem[a] > 0:
                keys[nkeys] = (total - rem[a]) * alphabet + a
                nkeys += 1
        kth = np.partition(keys[:nkeys], short - 1)[short - 1]
        for a in range(alphabet):
            if rem[a] > 0 and (total - rem[a]) * alphabet + a <= kth:
                out[a] += 1
    excess = np.int64(0)
    for a in range(alphabet):
        if counts[a] > 0 and out[a] == 0:
            out[a] = 1
            excess += 1
    if excess > 0:
        _take_surplus(counts, out, excess)


@njit(inline="always")
def _cheaper(counts, out, a, b):
    """True if taking a unit from ``a`` costs less than from ``b`` (c / (f - 1/2); ties: smaller symbol)."""
    left = counts[a] * (2 * out[b] - 1)
    right = counts[b] * (2 * out[a] - 1)
    return left < right or (left == right and a < b)


@njit
def _sift_down(heap, size, i, counts, out):
    while True:
        child = 2 * i + 1
        if child >= size:
            return
        if child + 1 < size and _cheaper(counts, out, heap[child + 1], heap[child]):
            child += 1
        if not _cheaper(counts, out, heap[child], heap[i]):
            return
        heap[i], heap[child] = heap[child], heap[i]
        i = child


@njit
def _take_surplus(counts, out, excess):
    """Take ``excess`` units, one at a time, from the symbol (with f > 1) whose cost rises least.

    A binary heap ordered by ``_cheaper`` gives the same sequence of choices as scanning every
    symbol at each step (the minimum is unique: ties go to the smaller symbol), in log(A) per unit.
    """
    heap = np.empty(counts.shape[0], np.int64)
    size = 0
    for a in range(counts.shape[0]):
        if out[a] > 1:
            heap[size] = a
            size += 1
    for i in range(size // 2 - 1, -1, -1):
        _sift_down(heap, size, i, counts, out)
    for _ in range(excess):
        a = heap[0]
        out[a] -= 1                              # its key only grows: sift it down from the root
        if out[a] == 1:
            size -= 1
            heap[0] = heap[size]
        _sift_down(heap, size, 0, counts, out)


@njit
def table_cost(counts, freqs, prob_bits, log2q):
    """Q16 bits of coding ``counts`` with ``freqs`` plus serializing ``freqs``."""
    data = np.int64(0)
    nq = np.int64(prob_bits) << Q
    for a in range(counts.shape[0]):
        if counts[a] > 0:
            data += counts[a] * (nq - log2q[freqs[a]])
    _, table_bits = best_order(freqs)
    return data + (np.int64(table_bits) << Q)


@njit
def group_channels(order, ncoded, ntables, channels):
    """Table of each channel: coded channels by rank (``order``) split into ``ntables`` equal groups."""
    tmap = np.zeros(channels, np.int64)
    for r in range(ncoded):
        tmap[order[r]] = r * ntables // ncoded
    return tmap


@njit
def rank_prefix(hist, order, ncoded):
    """Prefix sums (ncoded + 1, A) of the per-channel histograms taken in rank order (``order``).

    Every candidate grouping is a split of the ranks into contiguous ranges, so the counts of a
    group are one difference of two rows, whatever the number of tables.
    """
    alphabet = hist.shape[1]
    prefix = np.empty((ncoded + 1, alphabet), np.int64)
    prefix[0, :] = 0
    for r in range(ncoded):
        c = order[r]
        for a in range(alphabet):
            prefix[r + 1, a] = prefix[r, a] + hist[c, a]
    return prefix


@njit
def evaluate(prefix, order, ncoded, channels, ntables, prob_bits, log2q):
    """Cost (Q16 bits) of coding the ranked histograms (``rank_prefix``) with T group tables."""
    alphabet = prefix.shape[1]
    tmap = group_channels(order, ncoded, ntables, channels)
    grouped = np.empty(alphabet, np.int64)
    freqs = np.zeros((ntables, alphabet), np.int64)
    cost = np.int64(0)
    lo = 0
    for t in range(ntables):
        hi = lo                                # ranks r of table t: r * T // ncoded == t
        while hi < ncoded and hi * ntables // ncoded == t:
            hi += 1
        for a in range(alphabet):
            grouped[a] = prefix[hi, a] - prefix[lo, a]
        normalize_freqs(grouped, prob_bits, freqs[t])
        cost += table_cost(grouped, freqs[t], prob_bits, log2q)
        lo = hi
    if ntables > 1:
        width = 1
        while (1 << width) < ntables:
            width += 1
        cost += np.int64(channels * width) << Q
    return cost, tmap, freqs


@njit
def choose_streams(num_packed, cost_q, stream_overhead_ppm, fixed_streams):
    """Number of rANS streams: fixed by the caller, or as many as ``stream_overhead`` affords."""
    if num_packed == 0:
        return 0
    if fixed_streams > 0:
        s = min(fixed_streams, num_packed)
    else:
        budget_bits = (cost_q >> Q) * stream_overhead_ppm // 1_000_000
        s = max(1, min(num_packed, budget_bits // STREAM_FRAMING_BITS))
    per = -(-num_packed // s)
    return -(-num_packed // per)          # no empty stream: S = ceil(Np / ceil(Np / S))


@njit
def channel_order(absdev, coded):
    """Coded channels sorted by mean |q - zero| (same R for all, so the sum ranks them), then index."""
    keys = np.empty(coded.shape[0], np.int64)
    ncoded = coded.shape[0]
    for r in range(ncoded):
        keys[r] = absdev[coded[r]]
    # stable sort by key keeps channel order for ties
    idx = np.argsort(keys, kind="mergesort")
    out = np.empty(ncoded, np.int64)
    for r in range(ncoded):
        out[r] = coded[idx[r]]
    return out
