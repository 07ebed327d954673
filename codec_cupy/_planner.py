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
from ._tablecodec import _bitlen, best_order

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
    Absent symbols get 0; the present ones are scaled by ``_normalize_present``.
    """
    alphabet = counts.shape[0]
    present = np.empty(alphabet, np.int64)
    npresent = 0
    for a in range(alphabet):
        out[a] = 0
        if counts[a] > 0:
            present[npresent] = counts[a]
            npresent += 1
    if npresent == 0:
        out[0] = np.int64(1) << prob_bits
        return
    f = np.empty(npresent, np.int64)
    _normalize_present(present[:npresent], prob_bits, f)
    j = 0
    for a in range(alphabet):
        if counts[a] > 0:
            out[a] = f[j]
            j += 1


@njit
def _normalize_present(counts, prob_bits, out):
    """``normalize_freqs`` on the present symbols only (all counts > 0, in symbol order).

    Every tie below breaks towards the smaller symbol, and the position in this list orders symbols
    as their values do, so the result is the one the full alphabet gives (absent symbols: 0 there,
    no remainder, never chosen). floor(c * M / total) is a float64 division (exact operands < 2**53,
    so its floor is the quotient or one above) corrected by the integer remainder.
    """
    m = np.int64(1) << prob_bits
    npresent = counts.shape[0]
    total = np.int64(0)
    for j in range(npresent):
        total += counts[j]
    ftotal = np.float64(total)
    rem = np.empty(npresent, np.int64)
    assigned = np.int64(0)
    for j in range(npresent):
        scaled = counts[j] * m
        qt = np.int64(np.float64(scaled) / ftotal)
        r = scaled - qt * total
        if r < 0:
            qt -= 1
            r += total
        out[j] = qt
        rem[j] = r
        assigned += qt
    short = m - assigned
    # +1 to the `short` largest remainders (ties: smaller symbol). The key is unique per symbol, so
    # the `short` smallest keys are those <= the short-th smallest: a selection, not a full sort.
    # The fractional parts sum to `short` and each is < 1, so only symbols with rem > 0 qualify.
    if short > 0:
        keys = np.empty(npresent, np.int64)
        nkeys = 0
        for j in range(npresent):
            if rem[j] > 0:
                keys[nkeys] = (total - rem[j]) * npresent + j
                nkeys += 1
        kth = _select(keys, nkeys, short - 1)
        for j in range(npresent):
            if rem[j] > 0 and (total - rem[j]) * npresent + j <= kth:
                out[j] += 1
    excess = np.int64(0)
    for j in range(npresent):
        if out[j] == 0:
            out[j] = 1
            excess += 1
    if excess > 0:
        _take_surplus(counts, out, excess)


@njit
def _select(keys, n, k):
    """The k-th smallest (0-based) of the distinct values keys[:n], reordering them in place
    (quickselect, median-of-three pivot; any exact selection gives the same value)."""
    lo, hi = 0, n - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        a, b, c = keys[lo], keys[mid], keys[hi]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = lo, hi
        while i <= j:
            while keys[i] < pivot:
                i += 1
            while keys[j] > pivot:
                j -= 1
            if i <= j:
                keys[i], keys[j] = keys[j], keys[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return keys[k]
    return keys[k]


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
def _present_table_bits(f, npresent, alphabet):
    """``best_order(freqs)[1]`` from the nonzero frequencies ``f[:npresent]`` alone.

    An absent symbol (frequency 0) codes in 2 * bitlen(2**g) - 1 - g = g + 1 bits at order g, so
    each order's length is (A - P) * (g + 1) plus the present symbols' ``order_bits`` terms; the
    search over g is ``best_order``'s (stop at the first length that is not smaller).
    """
    best = np.int64(-1)
    for g in range(16):
        step = np.int64(1) << g
        total = np.int64(4) + (alphabet - npresent) * (g + 1)
        for j in range(npresent):
            total += 2 * _bitlen(f[j] + step) - 1 - g
        if best >= 0 and total >= best:
            break
        best = total
    return best


@njit
def group_channels(order, ncoded, ntables, channels):
    """Table of each channel: coded channels by rank (``order``) split into ``ntables`` equal groups."""
    tmap = np.zeros(channels, np.int64)
    for r in range(ncoded):
        tmap[order[r]] = r * ntables // ncoded
    return tmap


@njit
def rank_prefix(hist, order, ncoded):
    """Prefix sums (ncoded + 1, A) of the per-channel histograms taken in rank order (``order``),
    in the histograms' integer type (int32 only where all counts together stay below 2**31).

    Every candidate grouping is a split of the ranks into contiguous ranges, so the counts of a
    group are one difference of two rows, whatever the number of tables.
    """
    alphabet = hist.shape[1]
    prefix = np.empty((ncoded + 1, alphabet), hist.dtype)
    prefix[0, :] = 0
    for r in range(ncoded):
        c = order[r]
        for a in range(alphabet):
            prefix[r + 1, a] = prefix[r, a] + hist[c, a]
    return prefix


@njit
def _cost(prefix, ncoded, ntables, prob_bits, log2q, freqs):
    """Cost (Q16 bits) of T group tables over ``prefix``; the tables go to ``freqs`` (T, A), zeroed.

    With T = 1, ``prefix`` may be the two rows (0, column sums): the one group is its last row
    minus its first. The same numbers as ``normalize_freqs`` + ``table_cost`` per group, computed
    on each group's present symbols only (``_normalize_present``, ``_present_table_bits``).
    """
    alphabet = prefix.shape[1]
    sym = np.empty(alphabet, np.int64)
    cnt = np.empty(alphabet, np.int64)
    f = np.empty(alphabet, np.int64)
    nq = np.int64(prob_bits) << Q
    cost = np.int64(0)
    lo = 0
    for t in range(ntables):
        hi = lo                                # ranks r of table t: r * T // ncoded == t
        while hi < ncoded and hi * ntables // ncoded == t:
            hi += 1
        top = prefix.shape[0] - 1 if ntables == 1 else hi
        npresent = 0
        for a in range(alphabet):
            c = prefix[top, a] - prefix[lo, a]
            if c > 0:
                sym[npresent] = a
                cnt[npresent] = c
                npresent += 1
        row = freqs[t]
        if npresent == 0:
            row[0] = np.int64(1) << prob_bits
            _, table_bits = best_order(row)
            cost += np.int64(table_bits) << Q
            lo = hi
            continue
        _normalize_present(cnt[:npresent], prob_bits, f)
        data = np.int64(0)
        for j in range(npresent):
            row[sym[j]] = f[j]
            data += cnt[j] * (nq - log2q[f[j]])
        cost += data + (_present_table_bits(f, npresent, alphabet) << Q)
        lo = hi
    return cost


@njit
def evaluate(prefix, order, ncoded, channels, ntables, prob_bits, log2q):
    """Cost (Q16 bits) of coding the ranked histograms (``rank_prefix``) with T group tables."""
    freqs = np.zeros((ntables, prefix.shape[1]), np.int64)
    cost = _cost(prefix, ncoded, ntables, prob_bits, log2q, freqs) + _map_bits(channels, ntables)
    return cost, group_channels(order, ncoded, ntables, channels), freqs


@njit
def _map_bits(channels, ntables):
    """Q16 bits of the channel -> table map (none for one table)."""
    if ntables == 1:
        return np.int64(0)
    width = 1
    while (1 << width) < ntables:
        width += 1
    return np.int64(channels * width) << Q


@njit
def _column_sums(hist, order, ncoded):
    """The two rows (0, sum of the coded channels' histograms): a one-table ``_cost`` prefix."""
    out = np.zeros((2, hist.shape[1]), hist.dtype)
    for r in range(ncoded):
        c = order[r]
        for a in range(hist.shape[1]):
            out[1, a] += hist[c, a]
    return out


@njit
def plan(hists, order, ncoded, channels, tables, first_bits, walk_bits, min_bits, max_bits, log2q):
    """The planner's whole search in one call: (pack index, tables, prob_bits, cost, table map, freqs).

    ``hists``: per pack candidate, the per-channel histograms; ``tables``: the table counts to try.
    Pack: compare candidates with ``tables[0]`` tables (ties keep the earlier); then tables: more
    pay off less and less, stop at the first loss; then, if ``walk_bits``, the precision walks down
    from ``first_bits``, then up, while it pays. A prefix (``rank_prefix``) is built only for the
    chosen pack, and only when a candidate has more than one table.
    """
    t = tables[0]
    best_cost = np.int64(-1)
    best_i = 0
    best_prefix = np.zeros((2, 1), hists[0].dtype)
    best_freqs = np.zeros((1, 1), np.int64)
    for i in range(len(hists)):
        hist = hists[i]
        if t == 1:
            prefix = _column_sums(hist, order, ncoded)
        else:
            prefix = rank_prefix(hist, order, ncoded)
        freqs = np.zeros((t, hist.shape[1]), np.int64)
        cost = _cost(prefix, ncoded, t, first_bits, log2q, freqs) + _map_bits(channels, t)
        if best_cost < 0 or cost < best_cost:
            best_cost, best_i, best_prefix, best_freqs = cost, i, prefix, freqs
    cost, prefix, freqs = best_cost, best_prefix, best_freqs
    alphabet = prefix.shape[1]
    if tables.shape[0] > 1 and t == 1:
        prefix = rank_prefix(hists[best_i], order, ncoded)
    for j in range(1, tables.shape[0]):
        t2 = tables[j]
        f2 = np.zeros((t2, alphabet), np.int64)
        c2 = _cost(prefix, ncoded, t2, first_bits, log2q, f2) + _map_bits(channels, t2)
        if c2 >= cost:
            break
        cost, t, freqs = c2, t2, f2
    prob_bits = first_bits
    if walk_bits:
        for direction in (-1, 1):
            n = first_bits + direction
            while min_bits <= n <= max_bits:
                f2 = np.zeros((t, alphabet), np.int64)
                c2 = _cost(prefix, ncoded, t, n, log2q, f2) + _map_bits(channels, t)
                if c2 >= cost:
                    break
                cost, freqs, prob_bits = c2, f2, n
                n += direction
            if prob_bits != first_bits:
                break
    return best_i, t, prob_bits, cost, group_channels(order, ncoded, t, channels), freqs


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
