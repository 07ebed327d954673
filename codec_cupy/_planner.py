"""The planner: chooses how to model and partition the symbols, from their statistics alone.

It is the "theoretical model" of the codec: for each candidate modeling it computes the coded size
*exactly* (in 1/65536 bits, integer arithmetic only, so every engine makes the same choice):

    cost = sum over symbols of log2(M / f[symbol])      the rANS payload, up to rounding
         + bits of the serialized frequency tables       (Exp-Golomb, FORMAT.md section 5)
         + bits of the channel -> table map

and keeps the cheapest. Candidates:
  * pack k: code k neighbouring symbols of a channel as one symbol of 2**(k*bits) values. This is
    joint (order-0 over k-tuples) modeling: it captures runs of ReLU zeros and local correlation,
    and it divides the number of sequential rANS steps by k, so a larger k within ``speed_slack``
    of the cheapest is preferred.
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

import math

import numpy as np

from ._container import table_map_width
from ._jit import njit
from ._tablecodec import best_order, present_order

Q = 16                                    # fixed-point fraction bits of all costs
MAX_PROB_BITS = 15
STREAM_FRAMING_BITS = 8 * 7               # u32 state + ~1-2 byte directory entry + ~16-bit start-up
LANE_GROUP = 4                            # streams the cpu decoder interleaves (``_cpu.LANES``)

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
    no remainder, never chosen).
    """
    npresent = counts.shape[0]
    total = np.int64(0)
    for j in range(npresent):
        total += counts[j]
    rem = np.empty(npresent, np.int64)
    _scaled_floor(counts, total, prob_bits, out, rem)
    _round_and_fill(counts, total, prob_bits, out, rem, np.empty(2 * npresent + 1, np.int64))


@njit
def _scaled_floor(counts, total, prob_bits, q, rem):
    """q = floor(c * M / total), rem = c * M - q * total. A float64 product with 1 / total (exact
    operand < 2**53 and a quotient <= M = 2**15: within 2**-36 of c * M / total, so its floor is
    the quotient or one off) corrected by the integer remainder; a multiply, where a division per
    symbol was half of ``_groups``' time."""
    m = np.int64(1) << prob_bits
    inv = 1.0 / np.float64(total)
    for j in range(counts.shape[0]):
        scaled = counts[j] * m
        qt = np.int64(np.float64(scaled) * inv)
        r = scaled - qt * total
        if r < 0:
            qt -= 1
            r += total
        elif r >= total:
            qt += 1
            r -= total
        q[j] = qt
        rem[j] = r


@njit
def _halve_floor(q, rem, total, n):
    """(q, rem) of ``_scaled_floor`` at prob_bits - 1 from those at prob_bits, in place, no division:
    c * M / 2 = (q * total + rem) / 2, and q * total + rem = c * M is even."""
    for j in range(n):
        odd = q[j] & 1
        q[j] >>= 1
        rem[j] = (odd * total + rem[j]) >> 1


@njit
def _double_floor(q, rem, total, n):
    """(q, rem) at prob_bits + 1 from those at prob_bits, in place."""
    for j in range(n):
        r = 2 * rem[j]
        up = r >= total
        q[j] = 2 * q[j] + up
        rem[j] = r - total * up


@njit
def _round_and_fill(counts, total, prob_bits, out, rem, scratch):
    """From out = floor(c * M / total) and its remainders ``rem``: largest-remainder rounding, then
    every symbol at least 1, the surplus taken back by ``_take_surplus``. ``scratch``: 2n + 1."""
    m = np.int64(1) << prob_bits
    npresent = counts.shape[0]
    assigned = np.int64(0)
    for j in range(npresent):
        assigned += out[j]
    short = m - assigned
    if short > 0:
        _add_largest(rem, total, short, out, scratch)
    excess = np.int64(0)
    for j in range(npresent):
        if out[j] == 0:
            out[j] = 1
            excess += 1
    if excess > 0:
        _take_surplus(counts, out, excess)


@njit
def _add_largest(rem, total, short, out, scratch):
    """+1 to the ``short`` largest remainders (ties: smaller symbol); short <= #(rem > 0), since the
    fractional parts rem / total sum to ``short`` and each is < 1.

    The symbols are bucketed by rem (float64 rem * (n / total): monotone in rem, so every symbol of a
    higher bucket has a larger rem); the buckets above the one holding the short-th largest all get
    +1, and only that bucket is selected exactly, on the unique key (total - rem) * n + j.
    """
    n = rem.shape[0]
    bucket = scratch[:n]
    hist = scratch[n:2 * n + 1]
    hist[:] = 0
    scale = np.float64(n) / np.float64(total)
    for j in range(n):
        b = -1
        if rem[j] > 0:
            b = min(np.int64(np.float64(rem[j]) * scale), n - 1)
            hist[b] += 1
        bucket[j] = b
    above = np.int64(0)
    k = n - 1
    while above + hist[k] < short:
        above += hist[k]
        k -= 1
    need = short - above
    nk = hist[k]
    kth = np.int64(-1)
    if need < nk:                          # part of bucket k: select on the exact key
        keys = hist[:nk]                   # bucket counts are no longer needed
        i = 0
        for j in range(n):
            if bucket[j] == k:
                keys[i] = (total - rem[j]) * n + j
                i += 1
        kth = _select(keys, nk, need - 1)
    for j in range(n):
        b = bucket[j]
        if b > k or (b == k and (kth < 0 or (total - rem[j]) * n + j <= kth)):
            out[j] += 1


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


SURPLUS_HEAP_BELOW = 16                   # ``_take_surplus``: fewer units are cheaper by the heap
GIVE_BACK_MAX = 16                        # ``_take_surplus``: more steps above the threshold -> heap


@njit
def _take_surplus(counts, out, excess):
    """Take ``excess`` units, one at a time, from the symbol (with f > 1) whose cost rises least:
    the result of ``_take_surplus_heap``, found without a heap (its compares mispredict).

    Taking the j-th unit of symbol a has the key c / (2 (f - j) - 1), rising with j, so the greedy
    takes the ``excess`` smallest steps in the order (key, symbol). Those are the steps with a key at
    or below some threshold theta, minus the largest few above ``excess``: a float search (the
    count of steps below a threshold is a vectorizable sum) finds a theta with a few more steps than
    ``excess`` below it; the count is then made exact with theta rounded to a 36-bit mantissa, so
    theta * d is exact in float64 (d = 2f - 1 < 2**16); the surplus steps are given back largest
    first (ties: larger symbol). The heap takes over for a few units, and where the search lands
    outside that window.
    """
    if excess < SURPLUS_HEAP_BELOW:
        _take_surplus_heap(counts, out, excess)
        return
    n = counts.shape[0]
    cf = np.empty(n, np.float64)                   # c, f + 1/2 and f - 1 for ``_steps_below``
    fh = np.empty(n, np.float64)
    fm = np.empty(n, np.float64)
    ctot = np.int64(0)
    ftot = np.int64(0)
    for a in range(n):
        cf[a] = counts[a]                          # exact: c * (2f - 1) < 2**63 (``_cheaper``)
        fh[a] = out[a] + 0.5
        fm[a] = out[a] - 1.0
        ctot += counts[a]
        ftot += out[a]
    lo = _steps_threshold(cf, fh, fm, np.float64(excess), np.float64(ftot - excess) / np.float64(ctot))
    if not 0.0 < lo < np.inf:
        _take_surplus_heap(counts, out, excess)
        return
    mant, ex = math.frexp(0.5 / lo)
    theta = math.ldexp(np.floor(mant * 68719476736.0), ex - 36)   # 36-bit mantissa
    inv = 1.0 / theta
    take = np.empty(n, np.int64)
    total = np.int64(0)
    for a in range(n):
        c = cf[a]
        d = np.int64(min(np.ceil(c * inv), 1e17))
        d += 1 - (d & 1)                           # about the least odd d with c / d <= theta ...
        d += 2 * np.int64(theta * np.float64(d) < c)
        d -= 2 * np.int64(theta * np.float64(d - 2) >= c)   # ... exactly (the estimate is within 2)
        k = max(np.int64(0), out[a] + 1 - ((max(d, np.int64(3)) + 1) >> 1))    # d = 2f' - 1 >= 3
        take[a] = k
        total += k
    back = total - excess
    if back < 0 or back > GIVE_BACK_MAX:
        _take_surplus_heap(counts, out, excess)
        return
    touched = np.empty(n, np.int64)
    nt = 0
    for a in range(n):
        out[a] -= take[a]
        touched[nt] = a
        nt += take[a] > 0
    for _ in range(back):                  # give back the largest taken step (ties: larger symbol)
        best = touched[0]
        for i in range(1, nt):
            a = touched[i]
            if take[a] > 0 and (take[best] == 0
                                or counts[a] * (2 * out[best] + 1) >= counts[best] * (2 * out[a] + 1)):
                best = a
        out[best] += 1
        take[best] -= 1


@njit
def _steps_below(cf, fh, fm, mu):
    """About how many steps have a key <= 1 / (2 mu): per symbol clamp(floor(f + 1/2 - c mu), 0,
    f - 1), summed in float64 (exact for integers) over four accumulators so it vectorizes."""
    s0 = s1 = s2 = s3 = 0.0
    n = cf.shape[0]
    i = 0
    while i + 4 <= n:
        s0 += min(max(np.floor(fh[i] - cf[i] * mu), 0.0), fm[i])
        s1 += min(max(np.floor(fh[i + 1] - cf[i + 1] * mu), 0.0), fm[i + 1])
        s2 += min(max(np.floor(fh[i + 2] - cf[i + 2] * mu), 0.0), fm[i + 2])
        s3 += min(max(np.floor(fh[i + 3] - cf[i + 3] * mu), 0.0), fm[i + 3])
        i += 4
    while i < n:
        s0 += min(max(np.floor(fh[i] - cf[i] * mu), 0.0), fm[i])
        i += 1
    return (s0 + s1) + (s2 + s3)


@njit
def _steps_threshold(cf, fh, fm, m, mu):
    """A mu with m <= ``_steps_below`` <= m + 4 if the search finds one, else the bracket's lower
    end (still >= m steps); 0 if no bracket is found in 64 steps. Starts at mu = M / total (the
    keys level out near total / 2M), brackets by growing steps, then regula falsi (Illinois)."""
    step = 1.0 / 64.0
    s = _steps_below(cf, fh, fm, mu)
    lo, slo, hi, shi = mu, s, mu, s
    for _ in range(64):
        if s >= m:
            lo, slo = hi, s
            hi = lo * (1.0 + step)
            s = shi = _steps_below(cf, fh, fm, hi)
            if s < m:
                break
        else:
            hi, shi = lo, s
            lo = hi / (1.0 + step)
            s = slo = _steps_below(cf, fh, fm, lo)
            if s >= m:
                break
        step *= 4.0
    else:
        return 0.0
    side = 0
    for _ in range(64):
        if slo <= m + 4:
            break
        mid = lo + (hi - lo) * (slo - m + 0.5) / (slo - shi)
        if not lo < mid < hi:
            mid = 0.5 * (lo + hi)
            if not lo < mid < hi:
                break
        s = _steps_below(cf, fh, fm, mid)
        if s >= m:
            lo, slo = mid, s
            if side == 1:                  # Illinois: halve the far side's weight when one side stays
                shi = m + 0.5 * (shi - m)
            side = 1
        else:
            hi, shi = mid, s
            if side == -1:
                slo = m + 0.5 * (slo - m)
            side = -1
    return lo


@njit
def _take_surplus_heap(counts, out, excess):
    """``_take_surplus`` by its definition: ``excess`` units, one at a time, from the symbol (with
    f > 1) whose cost rises least.

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


SPARSE_CODES = {"off": 0, "auto": 1, "on": 2}       # ``CodecConfig.sparse`` for ``zero_channels``
SPARSE_AUTO = SPARSE_CODES["auto"]
MASK_CHECK_SHARE = 100          # sparse="auto": the blob without the mask is tried where the mask is >= 1 %


@njit(inline="always")
def mask_may_cost(blob_bytes, channels):
    """sparse="auto" with a zero-channel mask: is the blob without it worth coding too? The mask
    costs ceil(C/8) bytes however few channels it drops, and coding those channels' zeros can be
    cheaper (small maps, many channels); dropping it saves at most its own bytes, so the second
    try is only paid where the mask is at least 1 % of the blob."""
    return blob_bytes <= MASK_CHECK_SHARE * ((channels + 7) // 8)


@njit(inline="always")          # inlined into ``_cpu_encode``; Python callers get it compiled
def zero_channels(nonzero, length, sparse):
    """(zero-channel candidates (C,) bool, coded channels, use the mask?) from each channel's count
    of nonzero symbols: channels without one are left out unless ``sparse`` is off (or nothing is
    coded anyway); auto uses the mask only when it drops a channel."""
    channels = nonzero.shape[0]
    if sparse == 0 or length == 0:
        zero = np.zeros(channels, np.bool_)
        coded = np.arange(channels)
    else:
        zero = nonzero == 0
        coded = np.flatnonzero(nonzero)
    return zero, coded, sparse == 2 or (sparse == 1 and coded.shape[0] < channels)


@njit(inline="always")          # inlined into ``_cpu_encode``; Python callers get it compiled
def table_counts(tables, tables_auto, ncoded):
    """The table counts to try for ``ncoded`` coded channels: with ``tables_auto`` those of
    ``tables`` that are at most ``ncoded``, else the one fixed count clamped to it."""
    out = np.empty(tables.shape[0], np.int64)
    n = 0
    for t in tables:
        if not tables_auto:
            out[n] = min(t, ncoded)
            n += 1
        elif t <= ncoded:
            out[n] = t
            n += 1
    return out[:n]


@njit
def empty_model(channels, bits, min_bits):
    """(table map, freqs) when nothing is coded: the smallest valid model, one table at the lowest
    precision with all of it on symbol 0."""
    freqs = np.zeros((1, np.int64(1) << bits), np.int64)
    freqs[0, 0] = np.int64(1) << min_bits
    return np.zeros(channels, np.int64), freqs


@njit
def group_channels(order, ncoded, ntables, channels):
    """Table of each channel: coded channels by rank (``order``) split into ``ntables`` equal groups."""
    tmap = np.zeros(channels, np.int64)
    for r in range(ncoded):
        tmap[order[r]] = r * ntables // ncoded
    return tmap


@njit
def _group_starts(ncoded, ntables):
    """First rank of each of the T groups, then ncoded (T + 1,): group g holds the ranks r with
    r * T // ncoded == g (``group_channels``), i.e. from ceil(g * ncoded / T)."""
    out = np.empty(ntables + 1, np.int64)
    for g in range(ntables + 1):
        out[g] = (g * ncoded + ntables - 1) // ntables
    return out


@njit
def boundaries(ncoded, tables):
    """The distinct group starts of every table count in ``tables`` (sorted, ncoded included), and the
    row of each rank 0..ncoded among them (-1: not a start). Every candidate grouping is a union of
    the ranges between consecutive boundaries."""
    row = np.full(ncoded + 1, -1, np.int64)
    for t in tables:
        for r in _group_starts(ncoded, t):
            row[r] = 0
    n = 0
    for r in range(ncoded + 1):
        if row[r] == 0:
            row[r] = n
            n += 1
    bounds = np.empty(n, np.int64)
    for r in range(ncoded + 1):
        if row[r] >= 0:
            bounds[row[r]] = r
    return bounds, row


@njit
def segments(absdev, coded, tables, channels):
    """(rank order, boundaries, rank -> boundary row, segment of each channel) in one call.

    ``channel_order`` ranks the coded channels; ``boundaries`` splits the ranks into the segments of
    every candidate grouping; ``rows`` (C,) is each channel's segment (0 for channels not coded), so
    engines can count straight into segment rows."""
    order = channel_order(absdev, coded)
    bounds, row = boundaries(coded.shape[0], tables)
    rows = np.zeros(channels, np.int64)
    for i in range(bounds.shape[0] - 1):
        for r in range(bounds[i], bounds[i + 1]):
            rows[order[r]] = i
    return order, bounds, row, rows


@njit
def segment_sums(hist, order, bounds):
    """Per-channel histograms (C, A) summed over each segment of ranks (B - 1, A), in their integer
    type (int32 only where all counts together stay below 2**31)."""
    out = np.zeros((bounds.shape[0] - 1, hist.shape[1]), hist.dtype)
    for i in range(bounds.shape[0] - 1):
        o = out[i]
        for r in range(bounds[i], bounds[i + 1]):
            h = hist[order[r]]
            for a in range(hist.shape[1]):
                o[a] += h[a]
    return out


@njit
def _running_sums(hist):
    """Counts below each boundary (B, A) from per-segment counts (B - 1, A): any group's counts
    are one difference of two rows."""
    out = np.empty((hist.shape[0] + 1, hist.shape[1]), hist.dtype)
    out[0] = 0
    for i in range(hist.shape[0]):
        for a in range(hist.shape[1]):
            out[i + 1, a] = out[i, a] + hist[i, a]
    return out


@njit
def _groups(prefix, row, ncoded, ntables, prob_bits):
    """The present symbols of the T groups, flat: group t is [off[t], off[t + 1]) of ``sym`` (symbol)
    and ``cnt`` (count), ``tot[t]`` its count; ``q``, ``rem``: ``_scaled_floor`` at ``prob_bits``."""
    alphabet = prefix.shape[1]
    starts = _group_starts(ncoded, ntables)
    sym = np.empty(ntables * alphabet, np.int64)
    cnt = np.empty(ntables * alphabet, np.int64)
    off = np.empty(ntables + 1, np.int64)
    tot = np.empty(ntables, np.int64)
    n = 0
    for t in range(ntables):
        lo = prefix[row[starts[t]]]
        hi = prefix[row[starts[t + 1]]]
        off[t] = n
        total = np.int64(0)
        for a in range(alphabet):
            c = np.int64(hi[a]) - np.int64(lo[a])
            if c > 0:
                sym[n] = a
                cnt[n] = c
                total += c
                n += 1
        tot[t] = total
    off[ntables] = n
    q = np.empty(n, np.int64)
    rem = np.empty(n, np.int64)
    for t in range(ntables):
        a, b = off[t], off[t + 1]
        _scaled_floor(cnt[a:b], tot[t], prob_bits, q[a:b], rem[a:b])
    return sym[:n], cnt[:n], off, tot, q, rem


@njit
def _rescale(q, rem, off, tot, up):
    """``_groups``' q and rem, in place, at one prob_bit more (``up``) or less."""
    for t in range(tot.shape[0]):
        a, b = off[t], off[t + 1]
        if up:
            _double_floor(q[a:b], rem[a:b], tot[t], b - a)
        else:
            _halve_floor(q[a:b], rem[a:b], tot[t], b - a)


@njit
def _price(cnt, off, tot, q, rem, prob_bits, alphabet, log2q, f):
    """Q16 bits of coding the groups with their normalized tables plus serializing the tables; the
    frequencies go to ``f`` (flat, like ``cnt``). Per group: ``normalize_freqs``, the sum of
    count * log2(M / f), and ``best_order``'s table length, computed on the present symbols only.
    An empty group's table is (M, 0, ...)."""
    nq = np.int64(prob_bits) << Q
    scratch = np.empty(2 * alphabet + 1, np.int64)
    cost = np.int64(0)
    for t in range(tot.shape[0]):
        a, b = off[t], off[t + 1]
        if a == b:
            cost += present_order(np.full(1, np.int64(1) << prob_bits), 1, alphabet)[1] << Q
            continue
        fs = f[a:b]
        fs[:] = q[a:b]
        _round_and_fill(cnt[a:b], tot[t], prob_bits, fs, rem[a:b], scratch)
        data = np.int64(0)
        for j in range(a, b):
            data += cnt[j] * (nq - log2q[f[j]])
        cost += data + (present_order(fs, b - a, alphabet)[1] << Q)
    return cost


@njit
def _tables(sym, off, f, ntables, alphabet, prob_bits):
    """The (T, A) frequency tables from ``_price``'s flat frequencies."""
    freqs = np.zeros((ntables, alphabet), np.int64)
    for t in range(ntables):
        if off[t] == off[t + 1]:
            freqs[t, 0] = np.int64(1) << prob_bits
        for j in range(off[t], off[t + 1]):
            freqs[t, sym[j]] = f[j]
    return freqs


@njit
def _map_bits(channels, ntables):
    """Q16 bits of the channel -> table map (none for one table)."""
    if ntables == 1:
        return np.int64(0)
    return np.int64(channels * table_map_width(ntables)) << Q


@njit(inline="always")
def _slack(cost, ppm):
    """``ppm`` millionths of a Q16 cost, in whole bits (Q16)."""
    return (cost >> Q) * ppm // 1_000_000 << Q


@njit
def _priced(prefix, row, ncoded, channels, ntables, prob_bits, log2q):
    """(cost, ``_groups``, frequencies) of ``ntables`` tables at ``prob_bits``."""
    g = _groups(prefix, row, ncoded, ntables, prob_bits)
    f = np.empty_like(g[1])
    return _price(g[1], g[2], g[3], g[4], g[5], prob_bits, prefix.shape[1], log2q, f) + _map_bits(channels, ntables), g, f


@njit
def _refine(prefix, row, ncoded, channels, tables, cost, grp, freqs, first_bits, walk_bits, min_bits, max_bits, log2q,
            speed_slack_ppm):
    """From ``tables[0]`` tables at ``first_bits`` (``cost``, ``grp``, ``freqs``): more tables while
    they pay (stop at the first loss), then, if ``walk_bits``, the precision walk. Returns (cost,
    tables, prob_bits, groups, freqs)."""
    alphabet = prefix.shape[1]
    t = tables[0]
    for j in range(1, tables.shape[0]):
        c, g, f = _priced(prefix, row, ncoded, channels, tables[j], first_bits, log2q)
        if c >= cost:
            break
        cost, t, grp, freqs = c, tables[j], g, f
    sym, cnt, off, tot, q0, rem0 = grp
    prob_bits = first_bits
    if walk_bits:
        for direction in (-1, 1):
            q, rem = q0.copy(), rem0.copy()
            n = first_bits + direction
            while min_bits <= n <= max_bits:
                _rescale(q, rem, off, tot, direction > 0)
                f = np.empty_like(cnt)
                c = _price(cnt, off, tot, q, rem, n, alphabet, log2q, f) + _map_bits(channels, t)
                if c >= cost or (direction > 0 and c + _slack(cost, speed_slack_ppm) >= cost):
                    break
                cost, freqs, prob_bits = c, f, n
                n += direction
            if prob_bits != first_bits:
                break
    return cost, t, prob_bits, grp, freqs


@njit
def plan(hists, row, order, ncoded, channels, tables, first_bits, walk_bits, min_bits, max_bits, log2q,
         speed_slack_ppm=0, full_search=False):
    """The planner's whole search in one call: (pack index, tables, prob_bits, cost, table map, freqs).

    ``hists``: per pack candidate, the histograms summed over each segment of ``segments`` (``row``
    its rank -> boundary map); ``tables``: the table counts to try. The pack is the largest one
    (candidates come in increasing k) whose cost is at most the least one plus ``speed_slack_ppm``
    millionths of it: k times fewer rANS steps for the encoder and the decoder are worth that much
    payload. Greedy search (default): the packs are compared with ``tables[0]`` tables; then, for
    the chosen pack only, tables: more pay off less and less, stop at the first loss; then, if
    ``walk_bits``, the precision walks down from ``first_bits`` while it pays, else up while each
    step saves more than ``speed_slack_ppm`` millionths of the cost (a bit more doubles the
    decoder's tables). ``full_search``: every pack goes through the tables and the precision walk,
    and the packs are compared on those final costs (the greedy comparison at one table misses packs
    that gain more from several tables). Each grouping's counts are extracted once and the
    precision walk rescales their scaled floors instead of dividing again.
    """
    cost = np.int64(-1)
    least = np.int64(-1)
    best_i = 0
    for i in range(len(hists)):
        p = _running_sums(hists[i])
        c, g, f = _priced(p, row, ncoded, channels, tables[0], first_bits, log2q)
        ti, bi = tables[0], first_bits
        if full_search:
            c, ti, bi, g, f = _refine(p, row, ncoded, channels, tables, c, g, f, first_bits, walk_bits, min_bits,
                                      max_bits, log2q, speed_slack_ppm)
        if least < 0 or c < least:
            least = c
        if cost < 0 or c <= least + _slack(least, speed_slack_ppm):
            cost, best_i, prefix, grp, freqs, t, prob_bits = c, i, p, g, f, ti, bi
    if not full_search:
        cost, t, prob_bits, grp, freqs = _refine(prefix, row, ncoded, channels, tables, cost, grp, freqs, first_bits,
                                                 walk_bits, min_bits, max_bits, log2q, speed_slack_ppm)
    sym, cnt, off, tot, q0, rem0 = grp
    return best_i, t, prob_bits, cost, group_channels(order, ncoded, t, channels), \
        _tables(sym, off, freqs, t, prefix.shape[1], prob_bits)


@njit
def choose_streams(num_packed, cost_q, stream_overhead_ppm, fixed_streams):
    """Number of rANS streams: fixed by the caller, or as many as ``stream_overhead`` affords."""
    if num_packed == 0:
        return 0
    if fixed_streams > 0:
        s = min(fixed_streams, num_packed)
    else:
        budget_bits = (cost_q >> Q) * stream_overhead_ppm // 1_000_000
        s = max(1, budget_bits // STREAM_FRAMING_BITS)
        if s > LANE_GROUP:          # whole groups of the cpu decoder's lanes: no stream decodes alone
            s -= s % LANE_GROUP
        s = min(num_packed, s)
    per = -(-num_packed // s)
    return -(-num_packed // per)          # no empty stream: S = ceil(Np / ceil(Np / S))


INSERTION_SORT_MAX = 32                  # ``channel_order``: fewer channels sort by insertion


@njit
def channel_order(absdev, coded):
    """Coded channels sorted by mean |q - zero| (same R for all, so the sum ranks them), then index.

    A stable sort: insertion for a few channels, else LSD radix on the sums' bytes (as many passes
    as the largest sum has bytes: one or two on small maps). Numba's stable argsort took 8 µs on
    238 channels, its quicksort on unique keys 3 µs there and 15 µs on 1024."""
    n = coded.shape[0]
    keys = np.empty(n, np.int64)
    top = np.int64(0)
    for r in range(n):
        keys[r] = absdev[coded[r]]
        top = max(top, keys[r])
    idx = np.arange(n)
    if n <= INSERTION_SORT_MAX:
        for r in range(1, n):
            i, key = idx[r], keys[r]
            j = r - 1
            while j >= 0 and keys[idx[j]] > key:
                idx[j + 1] = idx[j]
                j -= 1
            idx[j + 1] = i
    else:
        tmp = np.empty(n, np.int64)
        count = np.empty(257, np.int64)
        shift = 0
        while shift < 64 and (top >> shift) > 0:
            count[:] = 0
            for r in range(n):
                count[((keys[idx[r]] >> shift) & 255) + 1] += 1
            for d in range(256):
                count[d + 1] += count[d]
            for r in range(n):
                d = (keys[idx[r]] >> shift) & 255
                tmp[count[d]] = idx[r]
                count[d] += 1
            idx, tmp = tmp, idx
            shift += 8
    out = np.empty(n, np.int64)
    for r in range(n):
        out[r] = coded[idx[r]]
    return out
