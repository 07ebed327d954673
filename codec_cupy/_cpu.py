"""The CPU engine: the reference's steps as fused Numba loops (one core, no fast-math).

Byte-exact with ``_reference``: the same float32 operations in the same order (LLVM does not
contract a*b+c into an FMA without fast-math), the same integer rANS. Decoding fuses rANS,
unpacking and dequantization into one pass that writes the output tensor in its own layout.
"""

from __future__ import annotations

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
def _minmax(xv, lo, hi):
    outer, channels, inner = xv.shape
    for c in range(channels):
        lo[c] = np.inf
        hi[c] = -np.inf
    finite = True
    for o in range(outer):
        for c in range(channels):
            a, b = lo[c], hi[c]
            for i in range(inner):
                v = xv[o, c, i]
                if v < a:
                    a = v
                if v > b:
                    b = v
            # NaN compares false both ways; Inf shows up in the extremes
            if not (np.isfinite(a) and np.isfinite(b)):
                finite = False
            lo[c], hi[c] = a, b
    # a NaN anywhere leaves no trace in min/max: check it separately only if all else is finite
    if finite:
        for o in range(outer):
            for c in range(channels):
                for i in range(inner):
                    if xv[o, c, i] != xv[o, c, i]:
                        return False
    return finite


@njit
def _quantize_uniform(xv, scale, zero, qmax, q, nonzero, absdev):
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
                t = np.rint(xv[o, c, i] / s) + zf
                if t < np.float32(0.0):
                    t = np.float32(0.0)
                if t > top:
                    t = top
                v = np.int64(t)
                q[c, base + i] = v
                d = v - z
                if d != 0:
                    nz += 1
                    dev += d if d > 0 else -d
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
def _packed(q, c, g, k, bits, pad, length):
    v = np.int64(0)
    e = g * k
    for u in range(k):
        s = np.int64(q[c, e + u]) if e + u < length else pad
        v |= s << (bits * u)
    return v


@njit
def _histogram(q, coded, zsym, bits, k, hist, packed):
    """Packed symbols (Cc, G) and their per-channel histograms, in one pass."""
    length = q.shape[1]
    groups = (length + k - 1) // k
    full = length // k
    for j in range(coded.shape[0]):
        c = coded[j]
        row = packed[j]
        h = hist[c]
        if k == 1:
            for g in range(full):
                v = q[c, g]
                row[g] = v
                h[v] += 1
        else:
            for g in range(full):
                v = np.int64(0)
                e = g * k
                for u in range(k):
                    v |= np.int64(q[c, e + u]) << (bits * u)
                row[g] = v
                h[v] += 1
        if groups > full:
            v = _packed(q, c, full, k, bits, zsym[c], length)
            row[full] = v
            h[v] += 1


@njit
def _rans_encode(packed, tsel, groups, freqs, cum, prob_bits, nstreams, out, nwords, scratch):
    """Encode packed symbols (Np,) whose channel rank j has table tsel[j]; see FORMAT.md section 4."""
    total = packed.shape[0]
    per = (total + nstreams - 1) // nstreams
    pos = 0
    shift = 32 - prob_bits
    for s in range(nstreams):
        lo = s * per
        hi = min(lo + per, total)
        x = np.uint32(RANS_L)
        nw = 0
        j = (hi - 1) // groups
        g = (hi - 1) - j * groups
        t = tsel[j]
        for p in range(hi - 1, lo - 1, -1):
            a = packed[p]
            f = np.uint32(freqs[t, a])
            if np.uint64(x) >= (np.uint64(f) << np.uint64(shift)):
                scratch[nw] = np.uint16(x & np.uint32(0xFFFF))
                nw += 1
                x >>= np.uint32(16)
            qt = x // f                               # 32-bit division: x < 2**32
            x = (qt << np.uint32(prob_bits)) + (x - qt * f) + np.uint32(cum[t, a])
            g -= 1
            if g < 0:                                 # previous channel rank
                g = groups - 1
                j -= 1
                if j >= 0:
                    t = tsel[j]
        out[pos] = np.uint8(x & np.uint32(0xFF))
        out[pos + 1] = np.uint8((x >> np.uint32(8)) & np.uint32(0xFF))
        out[pos + 2] = np.uint8((x >> np.uint32(16)) & np.uint32(0xFF))
        out[pos + 3] = np.uint8(x >> np.uint32(24))
        pos += 4
        for i in range(nw):                          # decoder order = reverse emission order
            w = scratch[nw - 1 - i]
            out[pos] = np.uint8(w & 0xFF)
            out[pos + 1] = np.uint8(w >> 8)
            pos += 2
        nwords[s] = nw
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
    """
    mask = np.uint32((1 << prob_bits) - 1)
    nb = np.uint32(prob_bits)
    qmask = (1 << bits) - 1
    for s in range(nstreams):
        start = offsets[s]
        end = offsets[s + 1]
        x = (np.uint32(buf[start]) | (np.uint32(buf[start + 1]) << np.uint32(8))
             | (np.uint32(buf[start + 2]) << np.uint32(16)) | (np.uint32(buf[start + 3]) << np.uint32(24)))
        if x < np.uint32(RANS_L):
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
                a = dec_sym[t, slot]
                x = dec_freq[t, slot] * (x >> nb) + dec_bias[t, slot]
                if x < np.uint32(RANS_L):
                    if rp + 2 > end:
                        return ERR_WORDS, s
                    x = (x << np.uint32(16)) | np.uint32(buf[rp]) | (np.uint32(buf[rp + 1]) << np.uint32(8))
                    rp += 2
                if k == 1:
                    out[base + i] = vals[a]
                    i += 1
                    if i == inner:
                        i = 0
                        base += channels * inner
                else:
                    for u in range(k):
                        if e >= length:
                            break
                        out[base + i] = vals[(np.int64(a) >> (bits * u)) & qmask]
                        e += 1
                        i += 1
                        if i == inner:
                            i = 0
                            base += channels * inner
            p = stop
        if x != np.uint32(RANS_L) or rp != end:
            return ERR_FINAL, s
    return 0, 0


# ---------------------------------------------------------------- engine interface

def minmax(xv: np.ndarray):
    channels = xv.shape[1]
    lo = np.empty(channels, np.float32)
    hi = np.empty(channels, np.float32)
    if xv.size == 0:
        return np.zeros(channels), np.zeros(channels)
    if not _minmax(xv, lo, hi):
        raise InputError("the tensor contains NaN or Inf; the codec encodes finite values only "
                         "(check the head model's output, or clamp with np.nan_to_num)")
    return lo.astype(np.float64), hi.astype(np.float64)


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


def histograms(q, coded, zsym, bits, ks):
    """Per k: (per-channel histograms (C, 2**(k*bits)), packed symbols (Cc, G) uint8)."""
    out = []
    for k in ks:
        hist = np.zeros((q.shape[0], 1 << (k * bits)), np.int64)
        packed = np.empty((coded.size, -(-q.shape[1] // k)), np.uint8)
        if q.shape[1]:
            _histogram(q, coded, zsym, bits, k, hist, packed)
        out.append((hist, packed))
    return out


def rans_encode(packed, tsel, freqs, prob_bits, nstreams):
    """Streams of the packed symbols (Cc, G); ``tsel`` is the table of each coded channel."""
    total = packed.size
    out = np.empty(STATE_BYTES * nstreams + 2 * total, np.uint8)
    nwords = np.zeros(nstreams, np.int64)
    if nstreams == 0:
        return out[:0], nwords
    scratch = np.empty(-(-total // nstreams), np.uint16)
    n = _rans_encode(packed.reshape(-1), tsel.astype(np.int64), packed.shape[1], freqs.astype(np.int64),
                     cumulative(freqs), prob_bits, nstreams, out, nwords, scratch)
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
