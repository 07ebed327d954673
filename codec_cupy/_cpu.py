"""The CPU engine: the reference's steps as fused Numba loops (one core, no fast-math).

Byte-exact with ``_reference``: the same float32 operations in the same order (LLVM does not
contract a*b+c into an FMA without fast-math), the same integer rANS. Decoding fuses rANS,
unpacking and dequantization into one pass that writes the output tensor in its own layout.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._container import RANS_L, STATE_BYTES, Header
from ._jit import HAVE_NUMBA, njit
from ._quantizer import QuantParams
from ._tablecodec import cumulative
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


@njit
def _quantize_uniform(xv, scale, zero, qmax, q, nonzero, absdev):
    """q = min(max(rint(x / s) + z, 0), qmax) in float32; branch-free so the loop vectorizes."""
    outer, channels, inner = xv.shape
    top = np.float32(qmax)
    for c in range(channels):
        s = scale[c]
        z = np.int32(zero[c])
        zf = np.float32(z)
        nz = np.int64(0)
        dev = np.int64(0)
        for o in range(outer):
            base = o * inner
            for i in range(inner):
                t = min(max(np.rint(xv[o, c, i] / s) + zf, np.float32(0.0)), top)
                v = np.int32(t)
                q[c, base + i] = v
                d = v - z
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


@njit
def _pack_at(q, e, k, bits, end, pad):
    """Packed symbol of the k symbols q[e:e+k] (flat q); positions >= ``end`` are padding ``pad``."""
    v = np.int64(0)
    for u in range(k):
        s = np.int64(q[e + u]) if e + u < end else pad
        v |= s << (bits * u)
    return v


@njit(inline="always")
def _pack_full(row, e, k, bits):
    """Packed symbol of the k symbols row[e:e+k] (all inside the row); k = 1, 2 spelled out."""
    if k == 1:
        return np.int64(row[e])
    if k == 2:
        return np.int64(row[e]) | (np.int64(row[e + 1]) << bits)
    v = np.int64(0)
    for u in range(k):
        v |= np.int64(row[e + u]) << (bits * u)
    return v


@njit
def _histogram(q, coded, zsym, bits, k, hist):
    """Per-channel histograms (C, 2**(k*bits)) of the packed symbols with pack factor ``k``."""
    length = q.shape[1]
    full = length // k
    for j in range(coded.shape[0]):
        c = coded[j]
        row = q[c]
        h = hist[c]
        for g in range(full):
            h[_pack_full(row, g * k, k, bits)] += 1
        if full * k < length:
            h[_pack_at(row, full * k, k, bits, length, np.int64(zsym[c]))] += 1


@njit
def _marginal(big, kbig, k, bits, coded, zsym, length, out):
    """Histograms for pack factor ``k`` from those for ``kbig`` (a multiple of k), without a pass over q.

    A kbig-group is kbig/k consecutive k-groups, so each k-group value is a bit field of the big
    value. The last kbig-group may hold k-groups made only of padding, which the k-packing does not
    have: they are taken off (the partial k-group is padded the same way in both).
    """
    sub = kbig // k
    width = bits * k
    mask = (np.int64(1) << width) - 1
    extra = -(-length // kbig) * sub - (-(-length // k))
    for j in range(coded.shape[0]):
        c = coded[j]
        h = big[c]
        o = out[c]
        for v in range(h.shape[0]):
            n = h[v]
            if n:
                for s in range(sub):
                    o[(v >> (width * s)) & mask] += n
        if extra:
            zpack = np.int64(0)
            for u in range(k):
                zpack |= np.int64(zsym[c]) << (bits * u)
            o[zpack] -= extra


@njit
def _symbol_indices(q, length, coded, tsel, zsym, k, bits, sidx):
    """Flat table index ``t * A + v`` of every packed symbol v (Np,), in stream order.

    One pass that does the packing, the padding and the channel -> table lookup up front, so the
    rANS loop below reads one small integer per symbol and needs no per-lane channel bookkeeping.
    """
    groups = (length + k - 1) // k
    full = length // k
    alphabet = np.int64(1) << (k * bits)
    for j in range(coded.shape[0]):
        c = coded[j]
        row = q[c]
        tb = tsel[j] * alphabet
        out = sidx[j * groups:(j + 1) * groups]
        for g in range(full):
            out[g] = tb + _pack_full(row, g * k, k, bits)
        if full < groups:
            out[full] = tb + _pack_at(row, full * k, k, bits, length, np.int64(zsym[c]))


@njit
def _put(x, f, c, rcp, mf, shift):
    """One rANS encode step on scalars; returns (state, low word, 1 if that word is emitted).

    Branch-free (the renormalisation is data-dependent and would mispredict). The quotient
    floor(x / f) is computed as floor(x * rcp) with rcp = (1 + 2**-44) / f in float64: after
    renormalisation x < f * 2**(32 - n), so x / f < 2**24 and the relative error (< 2**-43) stays
    below both the upward bias and 1/f (tests/test_codec_roundtrip.py checks every f exhaustively
    at the extremes). Then (q << n) + x - q*f + cum == x + q * (M - f) + cum, with mf = M - f.
    """
    e = np.int64(x >= f << shift)
    w = x & 0xFFFF
    x >>= 16 * e
    qt = np.int64(np.float64(x) * rcp)
    return x + qt * mf + c, w, e


@njit
def _emit_stream(out, pos, x, scratch, base, nw):
    """State (u32) and the words in decoder order (reverse emission order); returns the new end."""
    for b in range(4):
        out[pos + b] = np.uint8((x >> (8 * b)) & 0xFF)
    pos += 4
    for i in range(nw):
        w = scratch[base + nw - 1 - i]
        out[pos] = np.uint8(w & 0xFF)
        out[pos + 1] = np.uint8(w >> 8)
        pos += 2
    return pos


@njit
def _rans_encode(sidx, freq, cum, rcp, mfreq, prob_bits, nstreams, out, nwords, scratch):
    """Encode the symbols ``sidx`` (flat table indices, see ``_symbol_indices``); FORMAT.md section 4.

    Streams holding exactly P symbols are encoded four at a time in one loop: four independent
    dependency chains in flight instead of one. A group with fewer than four repeats its last
    stream (the copy is discarded); a shorter last stream is encoded alone. ``scratch`` holds
    4 * P words; lane l collects its words in scratch[l * P:(l + 1) * P] (at most one per symbol).
    """
    total = sidx.shape[0]
    per = (total + nstreams - 1) // nstreams
    nfull = nstreams if per * nstreams == total else nstreams - 1
    shift = 32 - prob_bits
    pos = 0
    for s0 in range(0, nfull, 4):
        s1, s2, s3 = min(s0 + 1, nfull - 1), min(s0 + 2, nfull - 1), min(s0 + 3, nfull - 1)
        x0 = x1 = x2 = x3 = np.int64(RANS_L)
        n0, n1, n2, n3 = 0, per, 2 * per, 3 * per
        for i in range(per - 1, -1, -1):
            a0, a1, a2, a3 = sidx[s0 * per + i], sidx[s1 * per + i], sidx[s2 * per + i], sidx[s3 * per + i]
            x0, scratch[n0], e = _put(x0, freq[a0], cum[a0], rcp[a0], mfreq[a0], shift)
            n0 += e
            x1, scratch[n1], e = _put(x1, freq[a1], cum[a1], rcp[a1], mfreq[a1], shift)
            n1 += e
            x2, scratch[n2], e = _put(x2, freq[a2], cum[a2], rcp[a2], mfreq[a2], shift)
            n2 += e
            x3, scratch[n3], e = _put(x3, freq[a3], cum[a3], rcp[a3], mfreq[a3], shift)
            n3 += e
        lanes = ((s0, x0, n0), (s1, x1, n1 - per), (s2, x2, n2 - 2 * per), (s3, x3, n3 - 3 * per))
        for lane in range(4):
            s, x, nw = lanes[lane]
            if lane == 0 or s > lanes[lane - 1][0]:      # a repeated stream is written once
                nwords[s] = nw
                pos = _emit_stream(out, pos, x, scratch, lane * per, nw)
    if nfull < nstreams:                                    # the shorter last stream
        x = np.int64(RANS_L)
        n = 0
        for i in range(total - 1, nfull * per - 1, -1):
            a = sidx[i]
            x, scratch[n], e = _put(x, freq[a], cum[a], rcp[a], mfreq[a], shift)
            n += e
        nwords[nfull] = n
        pos = _emit_stream(out, pos, x, scratch, 0, n)
    return pos


# ---------------------------------------------------------------- decoder kernel

ERR_STATE = 1
ERR_WORDS = 2
ERR_FINAL = 3


@njit
def _decode(buf, offsets, nstreams, per, total, groups, coded, tmap, dec_sym, dec_freq, dec_bias, prob_bits,
            bits, k, length, inner, channels, values, out):
    """Decode all streams into ``out`` (outer * C * inner float32). Returns (error, stream).

    ``dec_*[t, slot]`` is table t's decode entry for a slot: symbol, frequency, slot - cum[symbol], so
    one step is ``x = f * (x >> n) + bias``. ``values[c, q]`` is channel c's dequantized symbol q.

    The renormalisation is branch-free (it is data-dependent and would mispredict): every step
    loads the next word, at ``min(rp, len(buf) - 2)`` so a hostile stream never reads outside the
    blob, and takes it only when the state needs it. A stream that needed words past its end shows
    up as ``rp > end`` afterwards; what it wrote before is inside ``out`` and is discarded.
    """
    mask = np.int64((1 << prob_bits) - 1)
    qmask = (1 << bits) - 1
    lim = buf.shape[0] - 2
    plane = channels * inner
    for s in range(nstreams):
        start = offsets[s]
        end = offsets[s + 1]
        x = (np.int64(buf[start]) | (np.int64(buf[start + 1]) << 8)
             | (np.int64(buf[start + 2]) << 16) | (np.int64(buf[start + 3]) << 24))
        if x < RANS_L:
            return ERR_STATE, s
        rp = start + 4
        lo = s * per
        hi = min(lo + per, total)
        p = lo
        while p < hi:
            j = p // groups                          # one coded channel at a time
            g0 = p - j * groups
            stop = min(hi, (j + 1) * groups)
            c = coded[j]
            t = tmap[c]
            vals = values[c]
            e = g0 * k                               # element index in the channel, and its (o, i)
            o = e // inner
            i = e - o * inner
            base = (o * channels + c) * inner
            for _ in range(stop - p):
                slot = x & mask
                a = np.int64(dec_sym[t, slot])
                x = np.int64(dec_freq[t, slot]) * (x >> prob_bits) + np.int64(dec_bias[t, slot])
                r = min(rp, lim)
                w = np.int64(buf[r]) | (np.int64(buf[r + 1]) << 8)
                need = x < RANS_L
                x = ((x << 16) | w) if need else x
                rp += 2 * need
                if k == 1:
                    out[base + i] = vals[a]
                    i += 1
                    if i == inner:
                        i = 0
                        base += plane
                else:
                    for u in range(k):
                        if e >= length:
                            break
                        out[base + i] = vals[(a >> (bits * u)) & qmask]
                        e += 1
                        i += 1
                        if i == inner:
                            i = 0
                            base += plane
            p = stop
        if rp > end:
            return ERR_WORDS, s
        if x != RANS_L or rp != end:
            return ERR_FINAL, s
    return 0, 0


# ---------------------------------------------------------------- engine interface

def minmax(xv: np.ndarray):
    channels = xv.shape[1]
    lo = np.empty(channels, np.int32)
    hi = np.empty(channels, np.int32)
    if xv.size == 0:
        return np.zeros(channels), np.zeros(channels)
    if not _minmax(xv.view(np.int32), lo, hi):
        raise InputError("the tensor contains NaN or Inf; the codec encodes finite values only "
                         "(check the head model's output, or clamp with np.nan_to_num)")
    return _key_to_float(lo).astype(np.float64), _key_to_float(hi).astype(np.float64)


def quantize(xv: np.ndarray, p: QuantParams, bits: int):
    outer, channels, inner = xv.shape
    q = np.empty((channels, outer * inner), np.uint8)
    nonzero = np.zeros(channels, np.int64)
    absdev = np.zeros(channels, np.int64)
    if p.thresholds is not None:
        _quantize_thresholds(xv, p.thresholds, np.int64(p.zero_point[0]), q, nonzero, absdev)
    else:
        scale = np.ascontiguousarray(np.broadcast_to(p.scale, (channels,)), np.float32)
        zero = np.ascontiguousarray(np.broadcast_to(p.zero_point, (channels,)), np.int64)
        _quantize_uniform(xv, scale, zero, (1 << bits) - 1, q, nonzero, absdev)
    return q, nonzero, absdev


class PackedSymbols(NamedTuple):
    """The packed symbols (Cc, G) of FORMAT.md section 3, not materialized: ``rans_encode`` packs
    them from q on the fly (saves a pass and a copy). ``shape`` and ``size`` are those of the array."""

    q: np.ndarray
    coded: np.ndarray
    zsym: np.ndarray
    bits: int
    k: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.coded.size, -(-self.q.shape[1] // self.k)

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]


def histograms(q, coded, zsym, bits, ks):
    """Per k: (per-channel histograms (C, 2**(k*bits)), packed symbols (Cc, G) as ``PackedSymbols``).

    One pass over q for the largest k; the others are marginals of its histograms (``_marginal``).
    """
    channels, length = q.shape
    zs = np.ascontiguousarray(zsym, np.int64)
    kbig = max(ks)
    big = np.zeros((channels, 1 << (kbig * bits)), np.int64)
    if length:
        _histogram(q, coded, zs, bits, kbig, big)
    out = []
    for k in ks:
        hist = big
        if k != kbig:
            hist = np.zeros((channels, 1 << (k * bits)), np.int64)
            if length:
                _marginal(big, kbig, k, bits, coded, zs, length, hist)
        out.append((hist, PackedSymbols(q, coded, zs, bits, k)))
    return out


def encode_tables(freqs, prob_bits):
    """Flat (T * A,) encoder tables: frequency, cumulative frequency, (1 + 2**-44) / f, M - f."""
    f = np.asarray(freqs, np.int64)
    cum = cumulative(f).reshape(-1)
    f = f.reshape(-1)
    with np.errstate(divide="ignore"):
        rcp = (1.0 + 2.0 ** -44) / f.astype(np.float64)     # f = 0 is never looked up
    return f, cum, rcp, (np.int64(1) << prob_bits) - f


def rans_encode(packed: PackedSymbols, tsel, freqs, prob_bits, nstreams):
    """Streams of the packed symbols; ``tsel`` is the table of each coded channel."""
    total = packed.size
    out = np.empty(STATE_BYTES * nstreams + 2 * total, np.uint8)
    nwords = np.zeros(nstreams, np.int64)
    if nstreams == 0:
        return out[:0], nwords
    sidx = np.empty(total, np.uint16)                      # T * A <= 16 * 256
    _symbol_indices(packed.q, packed.q.shape[1], packed.coded, np.asarray(tsel, np.int64), packed.zsym,
                    packed.k, packed.bits, sidx)
    scratch = np.empty(4 * -(-total // nstreams), np.uint16)
    n = _rans_encode(sidx, *encode_tables(freqs, prob_bits), prob_bits, nstreams, out, nwords, scratch)
    return out[:n], nwords


@njit
def _decode_tables(freqs, dec_sym, dec_freq, dec_bias):
    for t in range(freqs.shape[0]):
        slot = 0
        for a in range(freqs.shape[1]):
            f = freqs[t, a]
            for r in range(f):                       # slot - cum[a] == r
                dec_sym[t, slot] = a
                dec_freq[t, slot] = f
                dec_bias[t, slot] = r
                slot += 1


def decode_tables(h: Header):
    """Per table and slot: (symbol, frequency, slot - cum[symbol])."""
    m = 1 << h.prob_bits
    dec_sym = np.empty((h.ntables, m), np.uint8)
    dec_freq = np.empty((h.ntables, m), np.uint32)
    dec_bias = np.empty((h.ntables, m), np.uint32)
    _decode_tables(h.freqs, dec_sym, dec_freq, dec_bias)
    return dec_sym, dec_freq, dec_bias


def dequant_values(h: Header) -> np.ndarray:
    """(C, 2**bits) float32: what each symbol of each channel decodes to (FORMAT.md section 2)."""
    channels = h.channels
    if h.levels is not None:
        return np.ascontiguousarray(np.broadcast_to(h.levels, (channels, h.levels.size)))
    q = np.arange(1 << h.bits, dtype=np.int64)
    zero = np.broadcast_to(h.zero_point, (channels,))[:, None]
    scale = np.broadcast_to(h.scale, (channels,))[:, None]
    return (q[None, :] - zero).astype(np.float32) * scale


def decode(h: Header, blob) -> np.ndarray:
    buf = np.frombuffer(blob, np.uint8)
    out = np.zeros(h.size, np.float32)                   # zero-mask channels stay +0.0
    if h.num_streams:
        dec_sym, dec_freq, dec_bias = decode_tables(h)
        err, stream = _decode(buf, h.stream_offsets, h.num_streams, h.symbols_per_stream, h.num_packed,
                              h.groups, h.coded_channels, h.table_map.astype(np.int64), dec_sym, dec_freq,
                              dec_bias, h.prob_bits, h.bits, h.pack, h.row_length, h.inner, h.channels,
                              dequant_values(h), out)
        if err:
            what = {ERR_STATE: "initial state below 2**16", ERR_WORDS: "runs out of words",
                    ERR_FINAL: "does not end in state 0x10000 with all words consumed"}[err]
            raise CorruptStreamError(f"stream {stream}: {what}")
    return out.reshape(h.shape)
