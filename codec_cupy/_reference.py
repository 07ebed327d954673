"""The reference engine: FORMAT.md in readable NumPy and plain Python loops.

Slow on purpose where clarity matters (the rANS loops run one symbol at a time in Python). The fast
engines must produce exactly these bytes and these floats.
"""

from __future__ import annotations

import numpy as np

from ._container import Header, RANS_L, STATE_BYTES, prior_dequantize, require_model
from ._quantizer import QuantParams
from ._tablecodec import cumulative
from .errors import CorruptStreamError, InputError

NAME = "reference"


# ---------------------------------------------------------------- encoder primitives

def minmax(xv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel min and max of the (outer, C, inner) view; rejects NaN and Inf."""
    if not np.all(np.isfinite(xv)):
        raise InputError(InputError.NON_FINITE)
    if xv.size == 0:
        return np.zeros(xv.shape[1]), np.zeros(xv.shape[1])
    return xv.min(axis=(0, 2)).astype(np.float64), xv.max(axis=(0, 2)).astype(np.float64)


def quantize(xv: np.ndarray, p: QuantParams, bits: int):
    """Symbols in channel-major order (C, R) uint8, plus per-channel nonzero counts and sum |q - z|."""
    outer, channels, inner = xv.shape
    if p.thresholds is not None:
        q = np.searchsorted(p.thresholds, xv, side="right")           # #{t <= x}
    else:
        scale = np.broadcast_to(p.scale, (channels,)).reshape(1, channels, 1)
        zero = np.broadcast_to(p.zero_point, (channels,)).astype(np.float32).reshape(1, channels, 1)
        t = np.rint(xv / scale) + zero                                 # float32 throughout
        q = np.clip(t, np.float32(0), np.float32((1 << bits) - 1))
    q = np.ascontiguousarray(np.moveaxis(q.astype(np.uint8), 1, 0)).reshape(channels, outer * inner)
    zsym = p.zero_symbols(channels)[:, None]
    dev = np.abs(q.astype(np.int64) - zsym)
    return q, np.count_nonzero(dev, axis=1).astype(np.int64), dev.sum(axis=1).astype(np.int64)


def packed_symbols(q: np.ndarray, coded: np.ndarray, zsym: np.ndarray, bits: int, k: int) -> np.ndarray:
    """The packed symbol sequence of FORMAT.md section 3, (Cc * G,) int64."""
    channels, length = q.shape
    groups = -(-length // k)
    padded = np.empty((coded.shape[0], groups * k), np.int64)
    padded[:] = zsym[coded][:, None]                                   # padding = the zero symbol
    padded[:, :length] = q[coded]
    lanes = padded.reshape(coded.shape[0], groups, k) << (bits * np.arange(k))
    return lanes.sum(axis=2).ravel()


def histograms(q, coded, zsym, bits, ks):
    """For each candidate k: per-channel histograms (C, 2**(k*bits)) and the packed symbols (Cc, G)."""
    out = []
    for k in ks:
        alphabet = 1 << (k * bits)
        hist = np.zeros((q.shape[0], alphabet), np.int64)
        packed = packed_symbols(q, coded, zsym, bits, k).reshape(coded.shape[0], -(-q.shape[1] // k))
        for j, c in enumerate(coded):
            hist[c] = np.bincount(packed[j], minlength=alphabet)
        out.append((hist, packed))
    return out


def rans_encode(packed, tsel, freqs, prob_bits, nstreams):
    """Encode every stream of the packed symbols (Cc, G), channel rank j coded with table tsel[j].

    Returns (stream bytes uint8, words per stream int64).
    """
    symbols = packed.reshape(-1)
    table_of = np.repeat(tsel, packed.shape[1])                       # table of each packed symbol
    cum = cumulative(freqs)
    per = -(-symbols.size // nstreams) if nstreams else 0
    chunks, nwords = [], []
    for s in range(nstreams):
        lo, hi = s * per, min((s + 1) * per, symbols.size)
        state, words = _encode_stream(symbols[lo:hi], table_of[lo:hi], freqs, cum, prob_bits)
        chunks.append(np.array([state], "<u4").view(np.uint8))
        chunks.append(np.array(words, "<u2").view(np.uint8))
        nwords.append(len(words))
    stream_bytes = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    return stream_bytes, np.array(nwords, np.int64)


def _encode_stream(symbols, tables, freqs, cum, n):
    """rANS, symbols in reverse; returns the final state and the words in decoder order."""
    x = RANS_L
    emitted = []
    for a, t in zip(symbols[::-1].tolist(), tables[::-1].tolist()):
        f = int(freqs[t, a])
        if x >= f << (32 - n):                 # renormalise: keep x < 2**32 after encoding
            emitted.append(x & 0xFFFF)
            x >>= 16
        x = ((x // f) << n) + (x % f) + int(cum[t, a])
    return x, emitted[::-1]


# ---------------------------------------------------------------- decoder

def decode(h: Header, blob) -> np.ndarray:
    """Decode a blob whose header ``parse`` has validated; returns float32 of ``h.shape``."""
    buf = np.frombuffer(blob, np.uint8)
    symbols = decode_symbols(require_model(h), buf)
    if h.positional:                     # version 3: zero-relative symbols, position-major, then the
        return prior_dequantize(h, symbols.reshape(h.channels, h.outer).T)     # blob's own quantizer
    return dequantize(h, symbols)


def decode_symbols(h: Header, buf: np.ndarray) -> np.ndarray:
    """All packed symbols (Np,) int64, stream by stream; raises CorruptStreamError."""
    n = h.prob_bits
    mask = (1 << n) - 1
    freqs = h.freqs.astype(np.int64)
    cum = cumulative(freqs)
    # slot -> symbol lookup per table
    lookup = [np.repeat(np.arange(h.alphabet), freqs[t]) for t in range(h.ntables)]
    table_of = np.repeat(h.table_map[h.coded_channels].astype(np.int64), h.groups)
    total, per = h.num_packed, h.symbols_per_stream
    out = np.zeros(total, np.int64)
    offsets = h.stream_offsets
    for s in range(h.num_streams):
        start = int(offsets[s])
        x = int(buf[start:start + STATE_BYTES].view("<u4")[0])
        words = buf[start + STATE_BYTES:int(offsets[s + 1])].view("<u2").tolist()
        if x < RANS_L:
            raise CorruptStreamError(f"stream {s}: initial state {x:#x} below 2**16")
        w = 0
        for i in range(s * per, min((s + 1) * per, total)):
            t = table_of[i]
            slot = x & mask
            a = int(lookup[t][slot])
            x = int(freqs[t, a]) * (x >> n) + slot - int(cum[t, a])
            if x < RANS_L:
                if w >= len(words):
                    raise CorruptStreamError(f"stream {s}: runs out of words at symbol {i}")
                x = (x << 16) | words[w]
                w += 1
            out[i] = a
        if x != RANS_L or w != len(words):
            raise CorruptStreamError(f"stream {s}: final state {x:#x} / {w} of {len(words)} words "
                                     "consumed; expected state 0x10000 and all words")
    return out


def dequantize(h: Header, packed: np.ndarray) -> np.ndarray:
    """Unpack symbols and map them to float32 (FORMAT.md section 2) in the tensor's shape."""
    outer, channels, inner = h.outer, h.channels, h.inner
    out = np.zeros((outer, channels, inner), np.float32)              # zero-mask channels stay +0.0
    coded = h.coded_channels
    if coded.size and h.row_length:
        lanes = (packed.reshape(coded.size, h.groups, 1) >> (h.bits * np.arange(h.pack))) & ((1 << h.bits) - 1)
        q = lanes.reshape(coded.size, -1)[:, :h.row_length]               # drop padding
        if h.levels is not None:
            values = h.levels[q]
        else:
            scale = np.broadcast_to(h.scale, (channels,))[coded][:, None]
            zero = np.broadcast_to(h.zero_point, (channels,))[coded][:, None]
            with np.errstate(over="ignore"):        # a valid (huge) scale may overflow to inf, as specified
                values = (q - zero).astype(np.float32) * scale
        out[:, coded, :] = np.moveaxis(values.reshape(coded.size, outer, inner), 0, 1)
    return out.reshape(h.shape)
