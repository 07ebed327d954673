"""The CPU engine: the reference's steps as fused Numba loops (one core, no fast-math).

Byte-exact with ``_reference``: the same float32 operations in the same order (LLVM does not
contract a*b+c into an FMA without fast-math), the same integer rANS. Decoding fuses rANS,
unpacking and dequantization into one pass that writes the output tensor in its own layout.
"""

from __future__ import annotations

import math

import numpy as np

from . import _container, _transform
from ._container import (H_INVALID, H_OK, I_BITS, I_BLOCK, I_CHANNELS, I_CODED, I_GROUPS, I_INNER, I_NDIM,
                         I_NUM_PACKED, I_OUTER, I_PACK, I_PAYLOAD, I_PER, I_PRIOR_ID, I_PROB_BITS, I_ROW, I_SIZE,
                         I_VSTRIDE, MAX_NDIM, RANS_L,
                         STATE_BYTES, Header, parse_fields)
from ._crc32c import crc32c
from ._tablecodec import _bitlen
from ._jit import HAVE_NUMBA, njit
from .errors import CorruptStreamError, InputError

NAME = "cpu"
AVAILABLE = HAVE_NUMBA


# ---------------------------------------------------------------- encoder kernels

@njit
def _minmax(xi, lo, hi):
    """Per-channel min/max of a float32 tensor seen as int32 bits; False if any value is NaN/Inf.

    ``v ^ ((v >> 31) & 0x7FFFFFFF)`` maps float order onto int32 order (finite values), and a NaN
    or Inf is the only value whose exponent bits are all ones: integer min/max reductions only,
    which LLVM vectorizes (float min/max with NaN semantics it does not, without fast-math).
    """
    outer, channels, inner = xi.shape
    for c in range(channels):
        lo[c] = np.int32(0x7FFFFFFF)
        hi[c] = np.int32(-0x80000000)
    top = np.int32(0)
    for o in range(outer):
        for c in range(channels):
            a, b = lo[c], hi[c]
            for i in range(inner):
                v = xi[o, c, i]
                key = v ^ ((v >> np.int32(31)) & np.int32(0x7FFFFFFF))
                a = min(a, key)
                b = max(b, key)
                top = max(top, v & np.int32(0x7F800000))
            lo[c], hi[c] = a, b
    return top != np.int32(0x7F800000)


def _key_to_float(key: np.ndarray) -> np.ndarray:
    """Inverse of the order-preserving map in ``_minmax`` (it is an involution)."""
    return (key ^ ((key >> 31) & 0x7FFFFFFF)).astype(np.int32).view(np.float32)


@njit(inline="always")
def _quantize_value(x, s, zf, top):
    """One symbol of the uniform quantizer: min(max(rint(x / s) + z, 0), qmax) in float32 (FORMAT.md
    section 2); branch-free, so the loops around it vectorize."""
    return np.int32(min(max(np.rint(x / s) + zf, np.float32(0.0)), top))


@njit
def _quantize_uniform(xv, scale, zero, qmax, q, nonzero, absdev):
    """q = min(max(rint(x / s) + z, 0), qmax) in float32; branch-free so the loop vectorizes.

    The channel's counts are a second pass over the row just written (in L1): with the int64 sums in
    the same loop the float part ran 4 wide instead of 8 (quantize took 30-40 % longer in an encode)."""
    outer, channels, inner = xv.shape
    top = np.float32(qmax)
    for c in range(channels):
        s = scale[c]
        z = np.int64(zero[c])
        zf = np.float32(z)
        nz = np.int64(0)
        dev = np.int64(0)
        for o in range(outer):
            base = o * inner
            for i in range(inner):
                q[c, base + i] = _quantize_value(xv[o, c, i], s, zf, top)
            for i in range(inner):
                d = np.int64(q[c, base + i]) - z
                nz += d != 0
                dev += abs(d)
        nonzero[c] = nz
        absdev[c] = dev


FLAT_QUANTIZE_BELOW = 32      # ``_quantize_flat`` for maps smaller than this (elements per channel)


@njit
def _quantize_flat(xv, s, z, qmax, q, nonzero, absdev):
    """``_quantize_uniform`` with one scale and zero point and outer = 1, where x and q are the same
    C * inner values in the same order: one long vectorized loop instead of one per channel (on
    1024 x 2 x 2 maps the per-channel loops cost 17 ns a channel), then each channel's counts.
    Only for small maps: on larger ones the counting pass no longer finds q in L1 (effnet_relu_1's
    240 x 14 x 14: encode 248 -> 265 µs), and the per-channel loops are long enough to vectorize."""
    channels, inner = xv.shape[1], xv.shape[2]
    x1 = xv.reshape(channels * inner)
    q1 = q.reshape(channels * inner)
    top = np.float32(qmax)
    zf = np.float32(z)
    for i in range(channels * inner):
        q1[i] = _quantize_value(x1[i], s, zf, top)
    for c in range(channels):
        nz = np.int64(0)
        dev = np.int64(0)
        for i in range(c * inner, (c + 1) * inner):
            d = np.int64(q1[i]) - z
            nz += d != 0
            dev += abs(d)
        nonzero[c] = nz
        absdev[c] = dev


@njit
def _quantize_thresholds(xv, thresholds, zsym, q, nonzero, absdev):
    outer, channels, inner = xv.shape
    nt = thresholds.shape[0]
    for c in range(channels):
        nz = np.int64(0)
        dev = np.int64(0)
        for o in range(outer):
            base = o * inner
            for i in range(inner):
                x = xv[o, c, i]
                lo, hi = 0, nt                     # count of thresholds <= x (binary search)
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if thresholds[mid] <= x:
                        lo = mid + 1
                    else:
                        hi = mid
                q[c, base + i] = lo
                d = np.int64(lo) - zsym
                if d != 0:
                    nz += 1
                    dev += d if d > 0 else -d
        nonzero[c] = nz
        absdev[c] = dev


SHORT_ROW = 8                  # rows shorter than this are packed and counted by ``_pack_at`` alone


@njit(inline="always")
def _pack_at(q, c, e, k, bits, end, pad):
    """Packed symbol of the k symbols q[c, e:e+k] (q: (C, R)); positions >= ``end`` are padding
    ``pad``. Indexed directly, without a row view: rows under ``SHORT_ROW`` elements are packed
    with it alone (there the views and vectorized loops of ``_pack_row`` cost more than the work:
    1024 x 2 x 2 histograms at 1 bit 26.6 -> 10.4 µs)."""
    v = np.int64(0)
    for u in range(k):
        v |= (np.int64(q[c, e + u]) if e + u < end else np.int64(pad)) << (bits * u)
    return v


# Multipliers that gather k symbol bytes, read as one little-endian word, into k * bits bits: byte u
# moves from bit 8u to bit S + bits * u (S = 24 for k = 4, 56 for k = 8) and no other partial product
# reaches bits S..S+7 (tests/test_codec_encoder.py checks every input). k * bits <= 8, so k = 4
# has bits 1 or 2 and k = 8 has bits 1.
GATHER_4_BY_1 = 0x01020408
GATHER_4_BY_2 = 0x01041040
GATHER_8_BY_1 = 0x0102040810204080


@njit(inline="always")
def _word(row, e, n):
    """The n (4 or 8) bytes row[e:e+n] as a little-endian uint64: with unsigned indices (no
    negative-index code between them) the compiler merges the byte loads into one."""
    w = np.uint64(0)
    for u in range(n):
        w |= np.uint64(row[np.uint64(e + u)]) << np.uint64(8 * u)
    return w


@njit(inline="always")
def _gather4(row, e, m):
    """Packed symbol of the 4 symbols row[e:e+4] (``m``: GATHER_4_BY_1 or GATHER_4_BY_2)."""
    return np.int64(((_word(row, e, 4) * np.uint64(m)) >> np.uint64(24)) & np.uint64(0xFF))


@njit(inline="always")
def _gather8(row, e):
    """Packed symbol of the 8 one-bit symbols row[e:e+8]."""
    return np.int64((_word(row, e, 8) * np.uint64(GATHER_8_BY_1)) >> np.uint64(56))


@njit(inline="always")
def _pack_full(row, e, k, bits):
    """Packed symbol of the k symbols row[e:e+k] (all inside the row); k = 1, 2 spelled out
    (``_pack_row`` takes k = 4 and 8 apart)."""
    if k == 1:
        return np.int64(row[e])
    if k == 2:
        return np.int64(row[e]) | (np.int64(row[e + 1]) << bits)
    v = np.int64(0)
    for u in range(k):
        v |= np.int64(row[e + u]) << (bits * u)
    return v


@njit(inline="always")
def _pack_row(row, full, k, bits, dst, base):
    """dst[g] = base + the packed symbol of group g, for the row's ``full`` whole groups. k = 4 and 8
    go by ``_gather4``/``_gather8`` (one load, one multiply), and each k has its own loop: left to
    the compiler (unswitching one loop on k), the added cases made it give up, and the k = 1 and 2
    loops ran at half speed."""
    if k == 1:
        for g in range(full):
            dst[g] = base + _pack_full(row, g, 1, bits)
    elif k == 2:
        for g in range(full):
            dst[g] = base + _pack_full(row, 2 * g, 2, bits)
    elif k == 4:
        m = GATHER_4_BY_1 if bits == 1 else GATHER_4_BY_2
        for g in range(full):
            dst[g] = base + _gather4(row, 4 * g, m)
    elif k == 8:
        for g in range(full):
            dst[g] = base + _gather8(row, 8 * g)
    else:
        for g in range(full):
            dst[g] = base + _pack_full(row, g * k, k, bits)


SPREAD_BINS_PER_SYMBOL = 4     # ``_histogram`` spreads its counts over 4 copies from 1 symbol per copy bin


@njit
def _histogram(q, coded, zsym, bits, k, hist, rows, packed):
    """Histograms (rows, 2**(k*bits)) of the packed symbols with pack factor ``k``: channel c counts
    into row ``rows[c]`` (the planner's rank segments, or c itself for per-channel rows). The packed
    symbols themselves go to ``packed`` (Cc * G,) uint8, in stream order, for ``_encode_streams``.

    A row is packed by ``_pack_row`` (a loop per k, vectorized), then counted. Runs of one symbol
    (ReLU zeros) make each increment wait for the previous one to the same counter, so where there
    are at least as many symbols as bins in four copies of ``hist``, they are counted into the four
    in turn and summed at the end (timed alone at 2 bits: 110-126 -> 53-69 µs on the 8-image tensors)."""
    length = q.shape[1]
    full = length // k
    groups = (length + k - 1) // k
    nrows, alphabet = hist.shape
    if length < SHORT_ROW:
        for j in range(coded.shape[0]):
            c = coded[j]
            r = rows[c]
            for g in range(groups):
                v = _pack_at(q, c, g * k, k, bits, length, zsym[c])
                packed[j * groups + g] = v
                hist[r, v] += 1
        return
    spread = coded.shape[0] * groups >= SPREAD_BINS_PER_SYMBOL * nrows * alphabet
    copies = np.zeros((4, nrows if spread else 0, alphabet), np.int32)
    for j in range(coded.shape[0]):
        c = coded[j]
        row = q[c]
        buf = packed[j * groups:(j + 1) * groups]
        _pack_row(row, full, k, bits, buf, 0)
        if full < groups:
            buf[full] = _pack_at(q, c, full * k, k, bits, length, zsym[c])
        r = rows[c]
        if spread:
            _count4(buf, copies[0, r], copies[1, r], copies[2, r], copies[3, r])
        else:
            h = hist[r]
            for g in range(groups):
                h[buf[g]] += 1
    if spread:
        for i in range(nrows):
            for a in range(alphabet):
                hist[i, a] += copies[0, i, a] + copies[1, i, a] + copies[2, i, a] + copies[3, i, a]


@njit(inline="always")
def _count4(buf, h0, h1, h2, h3):
    """Counts of ``buf``'s values, spread over four histograms in turn."""
    n = buf.shape[0]
    g = 0
    while g + 4 <= n:
        h0[buf[g]] += 1
        h1[buf[g + 1]] += 1
        h2[buf[g + 2]] += 1
        h3[buf[g + 3]] += 1
        g += 4
    while g < n:
        h0[buf[g]] += 1
        g += 1


@njit(inline="always")
def _halves(h, w, o, col):
    """o += column sums + row sums of h seen as a (w, w) matrix (value = high * w + low): the
    histograms of the low and the high half of each symbol. ``col`` (w,) is scratch."""
    col[:] = 0
    for hi in range(w):
        base = hi * w
        total = np.int64(0)
        for lo in range(w):
            v = h[base + lo]
            col[lo] += v
            total += v
        o[hi] += total
    for lo in range(w):
        o[lo] += col[lo]


@njit
def _marginal(big, kbig, k, bits, coded, zsym, length, out, rows):
    """Histograms for pack factor ``k`` from those for ``kbig`` (a multiple of k), without a pass over q.

    A kbig-group is kbig/k consecutive k-groups, so each k-group value is a bit field of the big
    value. The last kbig-group may hold k-groups made only of padding, which the k-packing does not
    have: they are taken off each coded channel's row (the partial k-group is padded the same way
    in both). Rows as in ``_histogram``.
    """
    sub = kbig // k
    width = bits * k
    mask = (np.int64(1) << width) - 1
    extra = -(-length // kbig) * sub - (-(-length // k))
    col = np.empty(mask + 1, np.int64)
    for i in range(big.shape[0]):
        h = big[i]
        o = out[i]
        if sub == 2:
            _halves(h, mask + 1, o, col)
        else:
            for v in range(h.shape[0]):
                n = h[v]
                if n:
                    for s in range(sub):
                        o[(v >> (width * s)) & mask] += n
    if extra:
        for j in range(coded.shape[0]):
            c = coded[j]
            zpack = np.int64(0)
            for u in range(k):
                zpack |= np.int64(zsym[c]) << (bits * u)
            out[rows[c], zpack] -= extra


@njit
def _table_indices(packed, groups, tsel, alphabet, sidx):
    """``_symbol_indices`` from the packed symbols ``_histogram`` wrote: t * A added per channel."""
    for j in range(tsel.shape[0]):
        tb = np.uint16(tsel[j] * alphabet)
        src = packed[j * groups:(j + 1) * groups]
        dst = sidx[j * groups:(j + 1) * groups]
        for g in range(groups):
            dst[g] = np.uint16(src[g]) + tb


@njit
def _symbol_indices(q, length, coded, tsel, zsym, k, bits, sidx):
    """Flat table index ``t * A + v`` of every packed symbol v (Np,), in stream order.

    One pass that does the packing, the padding and the channel -> table lookup up front, so the
    rANS loop below reads one small integer per symbol and needs no per-lane channel bookkeeping.
    """
    groups = (length + k - 1) // k
    full = length // k
    alphabet = np.int64(1) << (k * bits)
    if length < SHORT_ROW:
        for j in range(coded.shape[0]):
            c = coded[j]
            tb = tsel[j] * alphabet
            for g in range(groups):
                sidx[j * groups + g] = tb + _pack_at(q, c, g * k, k, bits, length, zsym[c])
        return
    for j in range(coded.shape[0]):
        c = coded[j]
        row = q[c]
        tb = tsel[j] * alphabet
        out = sidx[j * groups:(j + 1) * groups]
        _pack_row(row, full, k, bits, out, tb)
        if full < groups:
            out[full] = tb + _pack_at(q, c, full * k, k, bits, length, zsym[c])


RCP_SHIFT = 32


@njit
def _encoder_table(freqs, prob_bits, tab):
    """The encoder's table, one 16-byte row per symbol t * A + a (uint32 ``tab``, 4 per row):
    u32 r, u32 f * 2**(32 - n) - 1 (renormalise when x exceeds it), then u16 cum, u16 M - f, u16 L.

    The quotient floor(x / f) of an encode step is (x + (x * r >> 32)) >> L with L = ceil(log2 f)
    and r = ceil(2**(32 + L) / f) - 2**32 < 2**32: the error of the reciprocal is below
    x / 2**(32 + L) < 2**-L <= 1/f for every state x < 2**32, so the floor is exact (an integer
    multiply instead of a division; tests/test_codec_encoder.py checks every f). Separate fields
    cost loads, which are cheaper than shifts and masks in the step; a row is one cache line.

    r is computed in float64: 2**(32 + L) / f < 2**33 is within 2**-20 of the true quotient, which is
    an integer (f a power of two: then exact) or at least 1 / f >= 2**-15 away from one, so the ceil
    is exact; L is ``_tablecodec._bitlen(f - 1)``. Rows of absent symbols (f = 0) are never read and not written: with an integer
    division per entry and every row written, this took 6.7 µs of effnet_relu_1's 4-bit encode
    (754 present symbols in 8 tables of 256), now 3.3 µs.
    """
    m = np.int64(1) << prob_bits
    shift = 32 - prob_bits
    alphabet = freqs.shape[1]
    t16 = tab.view(np.uint16)
    for t in range(freqs.shape[0]):
        cum = np.int64(0)
        for a in range(alphabet):
            f = np.int64(freqs[t, a])
            if f == 0:                         # never coded: its row is never read
                continue
            i = t * alphabet + a
            lg = _bitlen(f - 1)                                             # ceil(log2 f)
            r = np.int64(np.ceil(np.float64(np.int64(1) << (RCP_SHIFT + lg)) / np.float64(f))) \
                - (np.int64(1) << RCP_SHIFT)
            tab[4 * i] = r
            tab[4 * i + 1] = (f << shift) - 1
            t16[8 * i + 4] = cum
            t16[8 * i + 5] = m - f
            t16[8 * i + 6] = lg
            t16[8 * i + 7] = 0
            cum += f


@njit(inline="always")
def _lane_step(x, n, a, t32, t16, scratch):
    """One rANS encode step of state x (uint64) for symbol row ``a``; branch-free (renormalisation
    is data-dependent). The word goes to scratch[n], written backwards (n drops when the word is
    kept), so a lane's words end up in decoder order. Unsigned indices: no negative-index
    wraparound code in the hot loop."""
    a = np.uint64(a)
    i32 = a << np.uint64(2)
    i16 = a << np.uint64(3)
    emit = x > np.uint64(t32[i32 + np.uint64(1)])
    scratch[np.uint64(n)] = np.uint16(x & np.uint64(0xFFFF))
    x = (x >> np.uint64(16)) if emit else x
    q = (x + ((x * np.uint64(t32[i32])) >> np.uint64(RCP_SHIFT))) >> np.uint64(t16[i16 + np.uint64(6)])
    x = x + q * np.uint64(t16[i16 + np.uint64(5)]) + np.uint64(t16[i16 + np.uint64(4)])
    return x, n - np.int64(emit)


@njit
def _emit_stream(out16, pos, x, scratch, end, nw):
    """State (two u16, low first) and the stream's words (already in decoder order in
    scratch[end - nw:end]); returns the new end in u16 units."""
    out16[pos] = np.uint16(x & np.uint64(0xFFFF))
    out16[pos + 1] = np.uint16(x >> np.uint64(16))
    out16[pos + 2:pos + 2 + nw] = scratch[end - nw:end]
    return pos + 2 + nw


@njit
def _encode_four(sidx, t32, streams, per, out16, pos, nwords, scratch):
    """Four streams of P symbols, lanes in lock step: four independent dependency chains in flight.
    ``streams`` may repeat its last stream (the copy is discarded). Lane l's words go to
    scratch[l * P:(l + 1) * P] (at most one per symbol)."""
    t16 = t32.view(np.uint16)                  # the same rows: one base pointer in the loop
    s0, s1, s2, s3 = streams[0], streams[1], streams[2], streams[3]
    b0, b1, b2, b3 = s0 * per, s1 * per, s2 * per, s3 * per
    x0 = x1 = x2 = x3 = np.uint64(RANS_L)
    n0, n1, n2, n3 = per - 1, 2 * per - 1, 3 * per - 1, 4 * per - 1
    for i in range(per - 1, -1, -1):
        x0, n0 = _lane_step(x0, n0, sidx[np.uint64(b0 + i)], t32, t16, scratch)
        x1, n1 = _lane_step(x1, n1, sidx[np.uint64(b1 + i)], t32, t16, scratch)
        x2, n2 = _lane_step(x2, n2, sidx[np.uint64(b2 + i)], t32, t16, scratch)
        x3, n3 = _lane_step(x3, n3, sidx[np.uint64(b3 + i)], t32, t16, scratch)
    lanes = ((s0, x0, n0), (s1, x1, n1), (s2, x2, n2), (s3, x3, n3))
    for lane in range(4):
        s, x, n = lanes[lane]
        if lane == 0 or s > lanes[lane - 1][0]:          # a repeated stream is written once
            end = (lane + 1) * per
            nwords[s] = end - 1 - n
            pos = _emit_stream(out16, pos, x, scratch, end, nwords[s])
    return pos


@njit
def _encode_one(sidx, t32, s, first, count, out16, pos, nwords, scratch):
    """A stream alone (symbols first .. first + count - 1): one dependency chain."""
    t16 = t32.view(np.uint16)
    x = np.uint64(RANS_L)
    n = count - 1
    for i in range(first + count - 1, first - 1, -1):
        x, n = _lane_step(x, n, sidx[np.uint64(i)], t32, t16, scratch)
    nwords[s] = count - 1 - n
    return _emit_stream(out16, pos, x, scratch, count, nwords[s])


@njit
def _rans_encode(sidx, tab, nstreams, out16, nwords, scratch):
    """Encode the symbols ``sidx`` (flat table indices, see ``_symbol_indices``); FORMAT.md section 4.

    Streams holding exactly P symbols go four at a time (a group of two or three repeats its last
    stream); a single one left over, and a shorter last stream, are encoded alone. ``scratch``
    holds 4 * P words. Returns the end of the streams in ``out16`` (u16 units).
    """
    total = sidx.shape[0]
    per = (total + nstreams - 1) // nstreams
    nfull = nstreams if per * nstreams == total else nstreams - 1
    streams = np.empty(4, np.int64)
    pos = 0
    s0 = 0
    while nfull - s0 >= 2:
        for lane in range(4):
            streams[lane] = min(s0 + lane, nfull - 1)
        pos = _encode_four(sidx, tab, streams, per, out16, pos, nwords, scratch)
        s0 += 4
    if s0 < nfull:
        pos = _encode_one(sidx, tab, s0, s0 * per, per, out16, pos, nwords, scratch)
    if nfull < nstreams:                                    # the shorter last stream
        pos = _encode_one(sidx, tab, nfull, nfull * per, total - nfull * per, out16, pos, nwords, scratch)
    return pos


# ---------------------------------------------------------------- decoder kernel

ERR_STATE = 1
ERR_WORDS = 2
ERR_FINAL = 3
LANES = 4


@njit
def _build_decode_table(freqs, prob_bits, dec):
    """dec[t * M + slot] = symbol | (slot - cum[symbol]) << 8 | (f[symbol] - 1) << (8 + n), so one
    step is one load: ``x = ((e >> (8 + n)) + 1) * (x >> n) + ((e >> 8) & (M - 1))``, symbol
    ``e & 0xFF``. 8 + 2n bits: uint32 entries for n <= 12 (half the cache footprint), int64 above."""
    m = np.int64(1) << prob_bits
    for t in range(freqs.shape[0]):
        slot = t * m
        for a in range(freqs.shape[1]):
            f = np.int64(freqs[t, a])
            base = np.int64(a) | ((f - 1) << (8 + prob_bits))
            row = dec[slot:slot + f]                 # unsigned indices: the fill vectorizes
            for r in range(f):
                row[np.uint64(r)] = base | (np.int64(r) << 8)
            slot += f


@njit(inline="always")
def _read_state(buf, start):
    """A stream's initial 32-bit state, little-endian (FORMAT.md, stream layout)."""
    return (np.int64(buf[start]) | (np.int64(buf[start + 1]) << 8)
            | (np.int64(buf[start + 2]) << 16) | (np.int64(buf[start + 3]) << 24))


@njit(inline="always")
def _dec_advance(d, x, n, sn, mask):
    """rANS decode step: x -> f * (x >> n) + (x & mask) - cum, with f - 1 and slot - cum packed in d."""
    return ((d >> sn) + 1) * (x >> n) + ((d >> 8) & mask)


@njit(inline="always")
def _dec_renorm(x, r, buf, lim):
    """Pull the next 16-bit word when x fell below L. The read index is clamped inside the blob and
    the position r keeps counting, so running out of words is found after the stream, branch-free."""
    q = min(r, lim)
    w = np.int64(buf[np.uint64(q)]) | (np.int64(buf[np.uint64(q + 1)]) << 8)
    need = x < RANS_L
    return (((x << 16) | w) if need else x), r + 2 * need


@njit(inline="always")
def _out_pos(c, e, rowlen, stride, plane, inner):
    """Output index of element e of channel c (scalars only)."""
    row = e // rowlen
    return row * plane + c * inner + (e - row * rowlen) * stride


# Rows of the per-lane state array ``lane`` (int64 (9, LANES)) kept between chunks.
L_X, L_R, L_POS, L_J, L_E, L_TB, L_VB, L_BAD, L_LEFT = 0, 1, 2, 3, 4, 5, 6, 7, 8
LANE_ROWS = 9
# Chunk kernels: pairs of float32 as one u64 store (k = 2), one float32 (k = 1), any k and stride,
# k / 2 u64 stores per symbol (k = 4, 8).
MODE_PAIRS, MODE_SINGLE, MODE_ANY, MODE_GROUPS = 0, 1, 2, 3


@njit(inline="always")
def _dec_step(d, x, r, buf, n, sn, mask):
    """Advance and renormalise without clamping the read (the chunk bound keeps r inside ``buf``)."""
    x = _dec_advance(d, x, n, sn, mask)
    w = np.int64(buf[np.uint64(r)]) | (np.int64(buf[np.uint64(r + 1)]) << 8)
    need = x < RANS_L
    return (((x << 16) | w) if need else x), r + 2 * need


@njit(inline="always")
def _words_left(r, lim):
    """Steps a lane at read position r can take with every word read inside the blob."""
    return (lim - r) // 2 + 1 if r <= lim else 0


@njit(inline="always")
def _lane_seek(lane, l, coded, tmap, m, vstride, k, length, rowlen, stride, plane, inner):
    """After lane l stopped at a boundary: next channel if the channel is done, then its output
    position and how many symbols it can decode before the next row end or padding (LEFT)."""
    e = lane[L_E, l]
    if e >= length:
        lane[L_J, l] += 1
        e = 0
        lane[L_E, l] = 0
    c = coded[lane[L_J, l]]
    lane[L_TB, l] = np.int64(tmap[c]) * m
    lane[L_VB, l] = c * vstride
    lane[L_POS, l] = _out_pos(c, e, rowlen, stride, plane, inner)
    g = e // k
    full = length // k                   # symbols of a channel without padding
    lane[L_LEFT, l] = min(full - g, (rowlen - e % rowlen) // k) if g < full else 0


@njit(inline="always")
def _open_lanes(lane, dec, m, dst, shift):
    """The four lanes' states, read positions, output views (dst from POS >> shift) and decode
    tables, as scalars for a chunk kernel's loop."""
    return (lane[L_X, 0], lane[L_X, 1], lane[L_X, 2], lane[L_X, 3],
            lane[L_R, 0], lane[L_R, 1], lane[L_R, 2], lane[L_R, 3],
            dst[lane[L_POS, 0] >> shift:], dst[lane[L_POS, 1] >> shift:],
            dst[lane[L_POS, 2] >> shift:], dst[lane[L_POS, 3] >> shift:],
            dec[lane[L_TB, 0]:lane[L_TB, 0] + m], dec[lane[L_TB, 1]:lane[L_TB, 1] + m],
            dec[lane[L_TB, 2]:lane[L_TB, 2] + m], dec[lane[L_TB, 3]:lane[L_TB, 3] + m])


@njit(inline="always")
def _close_lanes(lane, x0, x1, x2, x3, r0, r1, r2, r3):
    """Store a chunk kernel's lane states and read positions back (``_open_lanes``' inverse)."""
    lane[L_X, 0], lane[L_X, 1], lane[L_X, 2], lane[L_X, 3] = x0, x1, x2, x3
    lane[L_R, 0], lane[L_R, 1], lane[L_R, 2], lane[L_R, 3] = r0, r1, r2, r3


@njit
def _chunk_lut(lane, run, dec, m, lut, dst, shift, buf, n, sn, mask):
    """``run`` symbols on each lane with shared dequantization and output stride 1: what a symbol
    decodes to is one entry of ``lut``, stored at dst[POS >> shift + i]. k = 2: ``lut`` holds both
    float32 values of a packed symbol as one u64 and ``dst`` is the output seen as u64 (shift 1,
    positions are even); k = 1: the value row and the float32 output (shift 0)."""
    x0, x1, x2, x3, r0, r1, r2, r3, o0, o1, o2, o3, t0, t1, t2, t3 = _open_lanes(lane, dec, m, dst, shift)
    for i in range(run):
        u = np.uint64(i)
        d0 = t0[np.uint64(x0 & mask)]
        d1 = t1[np.uint64(x1 & mask)]
        d2 = t2[np.uint64(x2 & mask)]
        d3 = t3[np.uint64(x3 & mask)]
        o0[u] = lut[np.uint64(d0 & 0xFF)]
        o1[u] = lut[np.uint64(d1 & 0xFF)]
        o2[u] = lut[np.uint64(d2 & 0xFF)]
        o3[u] = lut[np.uint64(d3 & 0xFF)]
        x0, r0 = _dec_step(d0, x0, r0, buf, n, sn, mask)
        x1, r1 = _dec_step(d1, x1, r1, buf, n, sn, mask)
        x2, r2 = _dec_step(d2, x2, r2, buf, n, sn, mask)
        x3, r3 = _dec_step(d3, x3, r3, buf, n, sn, mask)
    _close_lanes(lane, x0, x1, x2, x3, r0, r1, r2, r3)


@njit
def _chunk_groups(lane, run, dec, m, table, w, dst, buf, n, sn, mask):
    """``_chunk_lut`` for k = 4 and 8 (1-2 bits): a symbol's k float32 values are ``w`` = k / 2
    u64 words of ``table`` (``_group_table``), copied to the output seen as u64 (positions are
    even: rows of even length, groups of k)."""
    x0, x1, x2, x3, r0, r1, r2, r3, o0, o1, o2, o3, t0, t1, t2, t3 = _open_lanes(lane, dec, m, dst, 1)
    uw = np.uint64(w)
    for i in range(run):
        u = np.uint64(i) * uw
        d0 = t0[np.uint64(x0 & mask)]
        d1 = t1[np.uint64(x1 & mask)]
        d2 = t2[np.uint64(x2 & mask)]
        d3 = t3[np.uint64(x3 & mask)]
        a0, a1 = np.uint64(d0 & 0xFF) * uw, np.uint64(d1 & 0xFF) * uw
        a2, a3 = np.uint64(d2 & 0xFF) * uw, np.uint64(d3 & 0xFF) * uw
        for v in range(w):
            vv = np.uint64(v)
            o0[u + vv] = table[a0 + vv]
            o1[u + vv] = table[a1 + vv]
            o2[u + vv] = table[a2 + vv]
            o3[u + vv] = table[a3 + vv]
        x0, r0 = _dec_step(d0, x0, r0, buf, n, sn, mask)
        x1, r1 = _dec_step(d1, x1, r1, buf, n, sn, mask)
        x2, r2 = _dec_step(d2, x2, r2, buf, n, sn, mask)
        x3, r3 = _dec_step(d3, x3, r3, buf, n, sn, mask)
    _close_lanes(lane, x0, x1, x2, x3, r0, r1, r2, r3)


@njit
def _chunk_any(lane, run, dec, values, bits, k, stride, out, buf, n, sn, mask):
    """``run`` symbols on each lane, any pack factor and output stride (per-channel values, k > 2)."""
    qm = np.int64((1 << bits) - 1)
    for i in range(run):
        for l in range(LANES):
            x = lane[L_X, l]
            d = dec[np.uint64(lane[L_TB, l] + (x & mask))]
            p = lane[L_POS, l] + i * k * stride
            vb = lane[L_VB, l]
            for u in range(k):
                out[np.uint64(p + u * stride)] = values[np.uint64(vb + ((d >> (bits * u)) & qm))]
            lane[L_X, l], lane[L_R, l] = _dec_step(d, x, lane[L_R, l], buf, n, sn, mask)


@njit
def _step_elements(lane, dec, values, out, bits, k, length, coded, rowlen, stride, plane, inner, buf, lim, n, sn, mask):
    """One symbol on every lane, element by element (a symbol across a row end, with padding, or
    whose word would lie past the blob: the read is clamped)."""
    qm = np.int64((1 << bits) - 1)
    for l in range(LANES):
        x = lane[L_X, l]
        d = dec[lane[L_TB, l] + (x & mask)]
        lane[L_X, l], lane[L_R, l] = _dec_renorm(_dec_advance(d, x, n, sn, mask), lane[L_R, l], buf, lim)
        a = d & 0xFF
        c = coded[lane[L_J, l]]
        for u in range(k):
            e = lane[L_E, l] + u
            if e < length:
                out[_out_pos(c, e, rowlen, stride, plane, inner)] = values[lane[L_VB, l] + ((a >> (bits * u)) & qm)]
        lane[L_E, l] += k


@njit
def _decode_lanes(buf, offsets, streams, first, count, groups, coded, tmap, dec, prob_bits, bits, k, length,
                  inner, channels, values, vstride, pairs, out, out64, lane):
    """Decode ``count`` packed symbols from each of four streams, lanes in lock step. Returns
    (error, stream) for the first bad stream in lane order, (0, 0) if all four are good.

    ``streams[l]`` starts at packed symbol ``first[l]``; lanes may repeat a stream (they then
    write the same values to the same places). ``lane`` (LANE_ROWS, 4) holds the per-lane state
    between chunks. A chunk is as many symbols as every lane can decode without leaving its
    channel or output row, without padding and with its word reads inside the blob (LEFT counts
    them down, so a boundary costs divisions only for the lane that reached it); the chunk
    kernels keep x and the read position in scalars. Other symbols go element by element.
    """
    n = prob_bits
    sn = n + 8
    mask = np.int64((1 << n) - 1)
    m = np.int64(1) << n
    lim = buf.shape[0] - 2
    plane = channels * inner
    rowlen = length if inner == 1 else inner
    stride = channels if inner == 1 else 1
    mode = MODE_ANY
    if k == 2 and vstride == 0 and stride == 1 and inner % 2 == 0:
        mode = MODE_PAIRS
    elif (k == 4 or k == 8) and vstride == 0 and stride == 1 and inner % 2 == 0:
        mode = MODE_GROUPS
    elif k == 1 and vstride == 0 and stride == 1:
        mode = MODE_SINGLE
    for l in range(LANES):
        s = streams[l]
        start = offsets[s]
        x = _read_state(buf, start)
        lane[L_BAD, l] = x < RANS_L          # reported in stream order after decoding
        lane[L_X, l] = x
        lane[L_R, l] = start + 4
        j = first[l] // groups
        lane[L_J, l] = j
        lane[L_E, l] = (first[l] - j * groups) * k
        _lane_seek(lane, l, coded, tmap, m, vstride, k, length, rowlen, stride, plane, inner)
    done = 0
    while done < count:
        run = count - done
        for l in range(LANES):
            run = min(run, lane[L_LEFT, l], _words_left(lane[L_R, l], lim))
        if run <= 0:
            _step_elements(lane, dec, values, out, bits, k, length, coded, rowlen, stride, plane, inner, buf, lim,
                           n, sn, mask)
            done += 1
            if done < count:
                for l in range(LANES):
                    _lane_seek(lane, l, coded, tmap, m, vstride, k, length, rowlen, stride, plane, inner)
            continue
        if mode == MODE_PAIRS:
            _chunk_lut(lane, run, dec, m, pairs, out64, 1, buf, n, sn, mask)
        elif mode == MODE_GROUPS:
            _chunk_groups(lane, run, dec, m, pairs, k >> 1, out64, buf, n, sn, mask)
        elif mode == MODE_SINGLE:
            _chunk_lut(lane, run, dec, m, values, out, 0, buf, n, sn, mask)
        else:
            _chunk_any(lane, run, dec, values, bits, k, stride, out, buf, n, sn, mask)
        done += run
        for l in range(LANES):
            lane[L_E, l] += run * k
            lane[L_POS, l] += run * k * stride
            lane[L_LEFT, l] -= run
            if lane[L_LEFT, l] == 0 and done < count:
                _lane_seek(lane, l, coded, tmap, m, vstride, k, length, rowlen, stride, plane, inner)
    for l in range(LANES):
        s = streams[l]
        if l > 0 and s == streams[l - 1]:
            continue
        if lane[L_BAD, l]:
            return ERR_STATE, s
        end = offsets[s + 1]
        if lane[L_R, l] > end:
            return ERR_WORDS, s
        if lane[L_X, l] != RANS_L or lane[L_R, l] != end:
            return ERR_FINAL, s
    return 0, 0


@njit
def _decode_one(buf, offsets, s, first, count, groups, coded, tmap, dec, prob_bits, bits, k, length, inner,
                channels, values, vstride, out):
    """One stream alone (a last group with a single stream): one dependency chain, which is
    latency-bound, so the per-element bookkeeping costs little here. Returns (error, stream)."""
    n = prob_bits
    sn = n + 8
    mask = np.int64((1 << n) - 1)
    m = np.int64(1) << n
    qm = np.int64((1 << bits) - 1)
    lim = buf.shape[0] - 2
    plane = channels * inner
    rowlen = length if inner == 1 else inner
    stride = channels if inner == 1 else 1
    start = offsets[s]
    x = _read_state(buf, start)
    bad = x < RANS_L
    rp = start + 4
    p = first
    end_p = first + count
    while p < end_p:
        j = p // groups
        stop = min(end_p, (j + 1) * groups)
        c = coded[j]
        tb = np.int64(tmap[c]) * m
        vb = c * vstride
        e = (p - j * groups) * k
        row = e // rowlen
        i = e - row * rowlen
        base = row * plane + c * inner
        for _ in range(stop - p):
            d = dec[np.uint64(tb + (x & mask))]
            x, rp = _dec_renorm(_dec_advance(d, x, n, sn, mask), rp, buf, lim)
            for u in range(k):
                if e < length:
                    out[np.uint64(base + i * stride)] = values[np.uint64(vb + ((d >> (bits * u)) & qm))]
                    e += 1
                    i += 1
                    if i == rowlen:
                        i = 0
                        base += plane
        p = stop
    if bad:
        return ERR_STATE, s
    if rp > offsets[s + 1]:
        return ERR_WORDS, s
    if x != RANS_L or rp != offsets[s + 1]:
        return ERR_FINAL, s
    return 0, 0


@njit
def _group_table(values, bits, k):
    """(2**(k * bits) * k / 2,) u64: the k float32 values of each packed symbol (k = 2, 4 or 8; low
    element first in memory) from the shared dequantization row: k / 2 u64 words per symbol."""
    alphabet = np.int64(1) << (k * bits)
    qm = (np.int64(1) << bits) - 1
    table = np.empty(alphabet * k // 2, np.uint64)
    f = table.view(np.float32)
    for a in range(alphabet):
        for u in range(k):
            f[a * k + u] = values[(a >> (bits * u)) & qm]
    return table


@njit
def _decode_streams(buf, payload, nwords, per, total, groups, coded, tmap, freqs, prob_bits, bits, k, length,
                    inner, channels, values, vstride, out):
    """Build the decode table and decode every stream into ``out``; returns (error, stream).

    Streams holding P symbols go four at a time (a last group of two or three repeats its last
    stream); a single stream left over, and a shorter last stream, run alone. Word reads stay
    inside ``buf`` (a hostile stream never reads outside the blob) and a stream that needed
    words past its end is detected afterwards (``RP > end``); whatever it wrote lies inside ``out``.
    """
    # The value table of MODE_PAIRS / MODE_GROUPS, built only where ``_decode_lanes`` can use it
    # (shared values, rows of even length, more than one stream): a lone stream decodes alone.
    wide = (k == 2 or k == 4 or k == 8) and vstride == 0 and inner % 2 == 0 and nwords.shape[0] > 1
    pairs = _group_table(values, bits, k) if wide else np.empty(0, np.uint64)
    out64 = out[:out.shape[0] & ~1].view(np.uint64)       # pairs of output floats (even positions)
    if prob_bits <= 12:
        dec32 = np.empty(freqs.shape[0] << prob_bits, np.uint32)
        _build_decode_table(freqs, prob_bits, dec32)
        return _decode_all(buf, payload, nwords, per, total, groups, coded, tmap, dec32, prob_bits, bits, k,
                           length, inner, channels, values, vstride, pairs, out, out64)
    dec64 = np.empty(freqs.shape[0] << prob_bits, np.int64)
    _build_decode_table(freqs, prob_bits, dec64)
    return _decode_all(buf, payload, nwords, per, total, groups, coded, tmap, dec64, prob_bits, bits, k,
                       length, inner, channels, values, vstride, pairs, out, out64)


@njit
def _decode_all(buf, payload, nwords, per, total, groups, coded, tmap, dec, prob_bits, bits, k, length,
                inner, channels, values, vstride, pairs, out, out64):
    nstreams = nwords.shape[0]
    offsets = np.empty(nstreams + 1, np.int64)
    offsets[0] = payload
    for s in range(nstreams):
        offsets[s + 1] = offsets[s] + STATE_BYTES + 2 * nwords[s]
    nfull = nstreams if per * nstreams == total else nstreams - 1
    streams = np.empty(LANES, np.int64)
    first = np.empty(LANES, np.int64)
    lane = np.empty((LANE_ROWS, LANES), np.int64)
    for s0 in range(0, nfull, LANES):
        for l in range(LANES):
            streams[l] = min(s0 + l, nfull - 1)
            first[l] = streams[l] * per
        if s0 == nfull - 1:                                  # one stream left: no copies
            err, s = _decode_one(buf, offsets, s0, s0 * per, per, groups, coded, tmap, dec, prob_bits, bits, k,
                                 length, inner, channels, values, vstride, out)
        else:
            err, s = _decode_lanes(buf, offsets, streams, first, per, groups, coded, tmap, dec, prob_bits, bits,
                                   k, length, inner, channels, values, vstride, pairs, out, out64, lane)
        if err:
            return err, s
    if nfull < nstreams:
        return _decode_one(buf, offsets, nfull, nfull * per, total - nfull * per, groups, coded, tmap, dec,
                           prob_bits, bits, k, length, inner, channels, values, vstride, out)
    return 0, 0


@njit(inline="always")
def _positional_step(buf, lim, x, r, p, tsel, cum, half, n, mask, values, vbase, out, at):
    """One symbol of position p, written to out[at] (its channel's values start at ``vbase[p]``).

    The symbol is found by a branch-free binary search of the slot among the table's cumulative
    frequencies (``tsel[p]``: the table's row of the (T, A + 1) ``cum``; ``half`` = A / 2): b
    steps over a few cached bytes. A T x 2**n slot table, as self-contained blobs use, would be
    512 KB for 32 tables at 12 bits and miss the cache on every step of the dependency chain
    (12.5 K symbols of 2 bits: 60 µs searched, 190 µs with the table)."""
    slot = x & mask
    c = tsel[p]
    a = np.int64(0)
    h = half
    while h:
        a += h if slot >= cum[c + a + h] else 0
        h >>= 1
    lo = cum[c + a]
    x, r = _dec_renorm((cum[c + a + 1] - lo) * (x >> n) + slot - lo, r, buf, lim)
    out[np.uint64(at)] = values[np.uint64(vbase[p] + a)]
    return x, r


@njit
def _decode_positional(buf, offsets, per, total, outer, positions, tsel, cum, half, prob_bits, values, vbase, out):
    """Every stream of a version-3 blob (FORMAT.md section 9) into ``out`` (the tensor, flat): symbol
    i is position p = i // outer of sample o = i % outer, at out[o * positions + p]. One sample
    (outer = 1, the usual case): streams of P symbols four at a time, one dependency chain each, the
    shorter last stream alone; a batch: one stream at a time. Reads are clamped inside the blob and
    overruns found after the stream, as in ``_decode_one``. Returns (error, stream)."""
    n = prob_bits
    mask = np.int64((1 << n) - 1)
    lim = buf.shape[0] - 2
    nstreams = offsets.shape[0] - 1
    nfull = nstreams if per * nstreams == total else nstreams - 1
    s0 = 0
    if outer == 1:
        while s0 + 4 <= nfull:
            x0, x1, x2, x3 = (_read_state(buf, offsets[s0]), _read_state(buf, offsets[s0 + 1]),
                              _read_state(buf, offsets[s0 + 2]), _read_state(buf, offsets[s0 + 3]))
            if min(min(x0, x1), min(x2, x3)) < RANS_L:
                return ERR_STATE, s0
            r0, r1, r2, r3 = offsets[s0] + 4, offsets[s0 + 1] + 4, offsets[s0 + 2] + 4, offsets[s0 + 3] + 4
            p = s0 * per
            for _ in range(per):
                x0, r0 = _positional_step(buf, lim, x0, r0, p, tsel, cum, half, n, mask, values, vbase, out, p)
                x1, r1 = _positional_step(buf, lim, x1, r1, p + per, tsel, cum, half, n, mask, values, vbase, out,
                                          p + per)
                x2, r2 = _positional_step(buf, lim, x2, r2, p + 2 * per, tsel, cum, half, n, mask, values, vbase, out,
                                          p + 2 * per)
                x3, r3 = _positional_step(buf, lim, x3, r3, p + 3 * per, tsel, cum, half, n, mask, values, vbase, out,
                                          p + 3 * per)
                p += 1
            for l, x, r in ((0, x0, r0), (1, x1, r1), (2, x2, r2), (3, x3, r3)):
                if r > offsets[s0 + l + 1]:
                    return ERR_WORDS, s0 + l
                if x != RANS_L or r != offsets[s0 + l + 1]:
                    return ERR_FINAL, s0 + l
            s0 += 4
    for s in range(s0, nstreams):
        x = _read_state(buf, offsets[s])
        if x < RANS_L:
            return ERR_STATE, s
        r = offsets[s] + 4
        first = s * per
        p = first // outer
        o = first - p * outer
        for _ in range(min(per, total - first)):
            x, r = _positional_step(buf, lim, x, r, p, tsel, cum, half, n, mask, values, vbase, out, o * positions + p)
            o += 1
            if o == outer:
                o = 0
                p += 1
        if r > offsets[s + 1]:
            return ERR_WORDS, s
        if x != RANS_L or r != offsets[s + 1]:
            return ERR_FINAL, s
    return 0, 0


def _prior_tables(prior):
    """What the decoder derives from a prior, built once and kept with it: the (T, A + 1) cumulative
    frequencies (flat), each position's row of them, each position's row of values for per-channel
    values (its channel, p // inner) and for transform blobs (its frequency, p % inner), and zeros
    (rows of shared values)."""
    cached = prior.cache.get("cpu")
    if cached is None:
        alphabet = prior.freqs.shape[1]
        cum = np.zeros((prior.ntables, alphabet + 1), np.int64)
        cum[:, 1:] = np.cumsum(prior.freqs.astype(np.int64), axis=1)
        tsel = prior.table_map.astype(np.int64) * (alphabet + 1)
        position = np.arange(prior.positions, dtype=np.int64)
        cached = prior.cache["cpu"] = (cum.ravel(), tsel, (position // prior.inner) << prior.bits,
                                       (position % prior.inner) << prior.bits, np.zeros(prior.positions, np.int64))
    return cached


@njit
def _decode_prior_blob(buf, body_end, max_elements, crc, prior_id, bits, channels, inner, tsel, cum, vbase, vinner,
                       shared, prob_bits):
    """``_decode_blob`` for a version-3 blob coded with the prior (id, bits, view) given: check magic,
    version, CRC, validate (``_container.parse_fields``), decode. Returns (status, stream error,
    stream, out, shape, ndim, block: out holds a transform blob's (P, B*B) coefficients); a status
    other than H_OK (also a blob of another prior) means "let ``parse`` and ``with_prior`` raise"."""
    if (_read_state(buf, 0) != _MAGIC_LE or buf[4] != _container.VERSION_PRIOR
            or _read_state(buf, body_end) != crc):
        return H_INVALID, 0, 0, np.empty(0, np.float32), np.zeros(MAX_NDIM, np.int64), 0, 0
    st, info, shape, values, _, _, _, _, nwords = parse_fields(buf, body_end, max_elements)
    if (st != H_OK or info[I_PRIOR_ID] != prior_id or info[I_BITS] != bits or info[I_CHANNELS] != channels
            or info[I_INNER] != inner):
        return H_INVALID, 0, 0, np.empty(0, np.float32), shape, 0, 0
    rows = vinner if info[I_BLOCK] else vbase if info[I_VSTRIDE] else shared
    out = np.zeros(info[I_SIZE], np.float32)
    err, stream = 0, 0
    if nwords.shape[0]:
        offsets = np.empty(nwords.shape[0] + 1, np.int64)
        offsets[0] = info[I_PAYLOAD]
        for s in range(nwords.shape[0]):
            offsets[s + 1] = offsets[s] + STATE_BYTES + 2 * nwords[s]
        err, stream = _decode_positional(buf, offsets, info[I_PER], info[I_NUM_PACKED], info[I_OUTER],
                                         channels * inner, tsel, cum, np.int64(1) << (bits - 1), prob_bits, values,
                                         rows, out)
    return H_OK, err, stream, out, shape, info[I_NDIM], info[I_BLOCK]


def decode_prior_blob(data, max_elements: int, prior):
    """``decode_blob`` for blobs coded with ``prior`` (format version 3): header and streams in one
    compiled call, then a transform blob's inverse DCT. None where the compiled validation refuses
    the blob (or it names another prior): the caller then takes ``parse`` and ``with_prior``, which
    raise the typed error."""
    decoded = _prior_blob_values(data, max_elements, prior)
    if decoded is None:
        return None
    out, shape, block = decoded
    return inverse_transform(out, shape, block) if block else out.reshape(shape)


def _prior_blob_values(data, max_elements: int, prior):
    """``_decode_prior_blob``'s result: (values, the tensor's shape, block), the values flat (a
    transform blob's (P, B*B) coefficients), or None where the compiled validation refuses the blob."""
    buf = np.frombuffer(data, np.uint8)
    n = buf.shape[0]
    if n < _MIN_BYTES or type(max_elements) is not int or not 0 <= max_elements <= _FAST_MAX_ELEMENTS:
        return None
    body_end = n - _container.CRC_BYTES
    cum, tsel, vbase, vinner, shared = _prior_tables(prior)
    status, err, stream, out, shape, ndim, block = _decode_prior_blob(
        buf, body_end, max_elements, crc32c(buf[:body_end]), prior.id, prior.bits, prior.channels, prior.inner,
        tsel, cum, vbase, vinner, shared, prior.prob_bits)
    if status != H_OK:
        return None
    if err:
        _raise_stream_error(err, stream)
    return out, tuple(shape[:ndim].tolist()), int(block)


def _decode_prior(h: Header, blob) -> np.ndarray:
    """``decode`` of a version-3 header (``_container.with_prior``) of a blob ``parse`` validated
    (its limits enforced): the compiled header check and decode of ``decode_prior_blob``; a
    transform blob's coefficients in the coded view (P, B*B), as the engine interface returns them."""
    decoded = _prior_blob_values(blob, _FAST_MAX_ELEMENTS, h.prior)
    if decoded is None:  # tests/test_codec_fastdecode.py holds the two validations to the same blobs
        raise RuntimeError("the compiled validation refused a version-3 blob that parse accepted; please report it")
    out, shape, block = decoded
    return out.reshape(h.source.shape if block else shape)


@njit
def _zero_channels(zmask, outer, channels, inner, out):
    for c in range(channels):
        if zmask[c]:
            for o in range(outer):
                base = (o * channels + c) * inner
                out[base:base + inner] = 0.0


_MAGIC_LE = int.from_bytes(_container.MAGIC, "little")


@njit
def _decode_blob(buf, body_end, max_elements, crc):
    """Check magic, version and the stored CRC against ``crc`` (of buf[:body_end]), parse and
    validate (``_container.parse_fields``), then decode: one compiled call. Returns (header
    status, stream error, stream, out, shape, ndim, block); a header status other than H_OK means
    "let ``parse`` raise". For a TRANSFORM blob (block > 0) ``out`` holds the (P, B*B) coefficients
    and ``shape`` the tensor's."""
    version = buf[4]
    if (_read_state(buf, 0) != _MAGIC_LE or (version != _container.VERSION and version != _container.VERSION_TRANSFORM)
            or _read_state(buf, body_end) != crc):
        return H_INVALID, 0, 0, np.empty(0, np.float32), np.zeros(MAX_NDIM, np.int64), 0, 0
    st, info, shape, values, zmask, coded, tmap, freqs, nwords = parse_fields(buf, body_end, max_elements)
    if st != H_OK:
        return st, 0, 0, np.empty(0, np.float32), shape, 0, 0
    channels, outer, inner = info[I_CHANNELS], info[I_OUTER], info[I_INNER]
    out = np.empty(info[I_SIZE], np.float32)
    if info[I_CODED] < channels:
        _zero_channels(zmask, outer, channels, inner, out)
    err, stream = 0, 0
    if nwords.shape[0]:
        err, stream = _decode_streams(buf, info[I_PAYLOAD], nwords, info[I_PER], info[I_NUM_PACKED],
                                      info[I_GROUPS], coded, tmap, freqs, info[I_PROB_BITS], info[I_BITS],
                                      info[I_PACK], info[I_ROW], inner, channels, values, info[I_VSTRIDE], out)
    return H_OK, err, stream, out, shape, info[I_NDIM], info[I_BLOCK]


# ---------------------------------------------------------------- engine interface

def minmax(xv: np.ndarray):
    channels = xv.shape[1]
    lo = np.empty(channels, np.int32)
    hi = np.empty(channels, np.int32)
    if xv.size == 0:
        return np.zeros(channels), np.zeros(channels)
    if not _minmax(xv.view(np.int32), lo, hi):
        raise InputError(InputError.NON_FINITE)
    both = _key_to_float(np.concatenate((lo, hi))).astype(np.float64)     # one conversion for both
    return both[:channels], both[channels:]


def tensor_range(xv: np.ndarray) -> tuple[float, float]:
    """Min and max of the whole tensor, for per-tensor parameters: NumPy's float reductions are SIMD
    over the flat array (about half the time of the per-channel kernel on 8 x 240 x 14 x 14) and
    propagate NaN, so checking the two results rejects NaN and Inf."""
    if xv.size == 0:
        return 0.0, 0.0
    lo, hi = float(xv.min()), float(xv.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(InputError.NON_FINITE)
    return lo, hi


def encode_table(freqs, prob_bits) -> np.ndarray:
    """The (4 * T * A,) uint32 encoder table of ``_encoder_table``."""
    f = np.asarray(freqs, np.int64)
    tab = np.zeros(4 * f.size, np.uint32)                 # absent symbols' rows: zeros
    _encoder_table(f, prob_bits, tab)
    return tab


@njit
def _encode_streams(q, coded, tsel, zsym, k, bits, freqs, prob_bits, nstreams, values):
    """``rans_encode`` in one compiled call: symbol indices (from ``values``, the packed symbols,
    unless it is empty), encoder table, the streams. Returns (stream bytes as u16 words, words per
    stream)."""
    length = q.shape[1]
    groups = (length + k - 1) // k
    total = coded.shape[0] * groups
    nwords = np.zeros(nstreams, np.int64)
    out16 = np.empty(2 * nstreams + total, np.uint16)
    sidx = np.empty(total, np.uint16)                      # T * A <= 16 * 256
    if values.shape[0] == total:
        _table_indices(values, groups, tsel, np.int64(1) << (k * bits), sidx)
    else:
        _symbol_indices(q, length, coded, tsel, zsym, k, bits, sidx)
    tab = np.empty(4 * freqs.shape[0] * freqs.shape[1], np.uint32)
    _encoder_table(freqs, prob_bits, tab)
    scratch = np.empty(4 * ((total + nstreams - 1) // nstreams), np.uint16)
    n = _rans_encode(sidx, tab, nstreams, out16, nwords, scratch)
    return out16[:n], nwords


def dequant_values(h: Header) -> np.ndarray:
    """(C, 2**bits) float32: what each symbol of each channel decodes to (FORMAT.md section 2)."""
    channels = h.channels
    if h.levels is not None:
        return np.ascontiguousarray(np.broadcast_to(h.levels, (channels, h.levels.size)))
    q = np.arange(1 << h.bits, dtype=np.int64)
    zero = np.broadcast_to(h.zero_point, (channels,))[:, None]
    scale = np.broadcast_to(h.scale, (channels,))[:, None]
    with np.errstate(over="ignore"):            # a valid (huge) scale may overflow to inf, as specified
        return (q[None, :] - zero).astype(np.float32) * scale


_STREAM_ERRORS = {ERR_STATE: "initial state below 2**16", ERR_WORDS: "runs out of words",
                  ERR_FINAL: "does not end in state 0x10000 with all words consumed"}


def _raise_stream_error(err: int, stream: int) -> None:
    raise CorruptStreamError(f"stream {stream}: {_STREAM_ERRORS[err]}")


def decode(h: Header, blob) -> np.ndarray:
    """Decode a blob whose header ``_container.parse`` validated (the engine interface)."""
    h = _container.require_model(h)
    if h.positional:
        return _decode_prior(h, blob)
    buf = np.frombuffer(blob, np.uint8)
    out = np.zeros(h.size, np.float32)                   # zero-mask channels stay +0.0
    if h.num_streams:
        values = dequant_values(h)
        vstride = values.shape[1] if h.per_channel else 0
        err, stream = _decode_streams(buf, h.payload_offset, h.nwords, h.symbols_per_stream, h.num_packed,
                                      h.groups, h.coded_channels, h.table_map.astype(np.int64),
                                      h.freqs.astype(np.int64), h.prob_bits, h.bits, h.pack, h.row_length,
                                      h.inner, h.channels, np.ascontiguousarray(values[:1] if not vstride else values).ravel(),
                                      vstride, out)
        if err:
            _raise_stream_error(err, stream)
    return out.reshape(h.shape)


TRANSFORM_LANES = 128       # blocks transformed together: the innermost loops run across them


@njit
def _lanes_scale(dst, src, factor):
    """dst[k] = src[k] * factor for every lane (one rounded product: IEEE products commute)."""
    for k in range(dst.shape[0]):
        dst[k] = src[k] * factor


@njit
def _lanes_add_scaled(dst, src, factor):
    """dst[k] = dst[k] + src[k] * factor for every lane: a rounded product, then a rounded sum."""
    for k in range(dst.shape[0]):
        dst[k] = dst[k] + src[k] * factor


@njit
def _block_origin(p, by, bx, block):
    """(map, first row, first column) of block ``p`` (blocks in row-major order over the maps)."""
    l, r = divmod(p, by * bx)
    yb, xb = divmod(r, bx)
    return l, yb * block, xb * block


@njit
def _forward_dct(x, t, nblocks, h, w, block, by, bx, coef):
    """``_transform.forward``'s operations in its order (float64, no FMA contraction), for
    TRANSFORM_LANES blocks at a time: every block's sums are independent, so the innermost loops
    run across blocks and vectorize without reordering any block's sum."""
    lanes = min(TRANSFORM_LANES, nblocks)                # no idle lanes on small tensors
    xs = np.zeros((block, block, lanes), np.float64)
    rows = np.empty((block, block, lanes), np.float64)
    acc = np.empty(lanes, np.float64)
    for p0 in range(0, nblocks, lanes):
        n = min(lanes, nblocks - p0)
        for k in range(n):                                # gather, repeating the last row / column
            l, r0, c0 = _block_origin(p0 + k, by, bx, block)
            for i in range(block):
                r = min(r0 + i, h - 1)
                for j in range(block):
                    xs[i, j, k] = x[l, r, min(c0 + j, w - 1)]
        for u in range(block):                            # rows[u, j] = sum_i T[u, i] * X[i, j]
            for j in range(block):
                _lanes_scale(rows[u, j], xs[0, j], t[u, 0])
                for i in range(1, block):
                    _lanes_add_scaled(rows[u, j], xs[i, j], t[u, i])
        for u in range(block):                            # c[u, v] = sum_j rows[u, j] * T[v, j]
            for v in range(block):
                _lanes_scale(acc, rows[u, 0], t[v, 0])
                for j in range(1, block):
                    _lanes_add_scaled(acc, rows[u, j], t[v, j])
                for k in range(n):
                    coef[p0 + k, u * block + v] = np.float32(acc[k])


def forward_transform(x: np.ndarray, block: int) -> np.ndarray:
    """``_transform.forward``, compiled (bit for bit the same coefficients)."""
    lead, by, bx = _transform.grid(x.shape, block)
    h, w = x.shape[-2:]
    coef = np.zeros((lead * by * bx, block * block), np.float32)
    if lead and h and w:
        _forward_dct(np.ascontiguousarray(x, np.float32).reshape(lead, h, w), _transform.basis(block, np.float64),
                     lead * by * bx, h, w, block, by, bx, coef)
    return coef


@njit
def _inverse_dct(coef, t, nblocks, h, w, block, by, bx, out):
    """FORMAT.md section 8, the operations of ``_transform.inverse`` in the same order (each
    product and sum a float32 operation; Numba does not contract them into FMAs), for
    TRANSFORM_LANES blocks at a time with the innermost loops across blocks, as in ``_forward_dct``."""
    lanes = min(TRANSFORM_LANES, nblocks)                # no idle lanes on small tensors
    cs = np.zeros((block, block, lanes), np.float32)
    rows = np.empty((block, block, lanes), np.float32)
    ys = np.empty((block, block, lanes), np.float32)
    for p0 in range(0, nblocks, lanes):
        n = min(lanes, nblocks - p0)
        for k in range(n):
            for u in range(block):
                for v in range(block):
                    cs[u, v, k] = coef[p0 + k, u * block + v]
        for u in range(block):                            # rows[u, j] = sum_v c[u, v] * T[v, j]
            for j in range(block):
                _lanes_scale(rows[u, j], cs[u, 0], t[0, j])
                for v in range(1, block):
                    _lanes_add_scaled(rows[u, j], cs[u, v], t[v, j])
        for i in range(block):                            # y[i, j] = sum_u T[u, i] * rows[u, j]
            for j in range(block):
                _lanes_scale(ys[i, j], rows[0, j], t[0, i])
                for u in range(1, block):
                    _lanes_add_scaled(ys[i, j], rows[u, j], t[u, i])
        for k in range(n):                                # crop: only pixels inside the map
            l, r0, c0 = _block_origin(p0 + k, by, bx, block)
            for i in range(min(block, h - r0)):
                for j in range(min(block, w - c0)):
                    out[l, r0 + i, c0 + j] = ys[i, j, k]


def inverse_transform(coef: np.ndarray, shape: tuple[int, ...], block: int) -> np.ndarray:
    """``_transform.inverse``, compiled (bit for bit the same floats)."""
    lead, by, bx = _transform.grid(shape, block)
    h, w = shape[-2:]
    out = np.empty((lead, h, w), np.float32)
    if out.size:
        _inverse_dct(np.ascontiguousarray(coef, np.float32).reshape(lead * by * bx, block * block),
                     _transform.basis(block), lead * by * bx, h, w, block, by, bx, out)
    return out.reshape(shape)


_FAST_MAX_ELEMENTS = 1 << 40        # larger limits go through ``parse`` (exact Python integers)
_MIN_BYTES = _container.FIXED_BYTES + _container.CRC_BYTES


def decode_blob(data, max_elements: int) -> np.ndarray:
    """``parse`` + ``decode`` with the header validated in the same compiled call as the decoding.

    The length is checked here and the CRC computed (by the ``crc32c`` package); the compiled call
    compares it and the magic and version (fewer Python steps per call). Anything the compiled
    validation rejects goes to ``_container.parse``, which raises the typed error with its message
    (and decodes the slow way should it accept what the compiled path did not).
    """
    buf = np.frombuffer(data, np.uint8)
    n = buf.shape[0]
    if n < _MIN_BYTES or type(max_elements) is not int or not 0 <= max_elements <= _FAST_MAX_ELEMENTS:
        return _slow_decode(data, max_elements)
    body_end = n - _container.CRC_BYTES
    status, err, stream, out, shape, ndim, block = _decode_blob(buf, body_end, max_elements, crc32c(buf[:body_end]))
    if status != H_OK:
        return _slow_decode(data, max_elements)
    if err:
        _raise_stream_error(err, stream)
    shape = tuple(shape[:ndim].tolist())
    return inverse_transform(out, shape, int(block)) if block else out.reshape(shape)


def _slow_decode(data, max_elements):
    h = _container.with_prior(_container.parse(data, max_elements), None)    # a prior blob: PriorError
    y = decode(h, data)
    return inverse_transform(y, h.tensor_shape, h.block) if h.block else y


# The encoder in one compiled call (``_encoder._encode_view``). Last: ``_cpu_encode`` calls this
# module's kernels; it defines its entries before it imports this module.
from ._cpu_encode import encode_positions, encode_prior, encode_tensor, encode_view, quantize  # noqa: E402, F401
