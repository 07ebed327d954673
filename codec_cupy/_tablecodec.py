"""Frequency tables and uvarint arrays in their serialized form (FORMAT.md sections 3-5).

These loops run once per blob over at most 16 x 256 entries (tables) or S entries (stream
directory); they are JIT-compiled so header handling stays cheap next to small tensors. Errors come
back as codes (the caller raises the typed exception) because compiled code cannot build them.
"""

from __future__ import annotations

import numpy as np

from ._jit import njit

OK = 0
ERR_TRUNCATED = 1
ERR_ZEROS = 2       # Exp-Golomb code with too many leading zeros
ERR_SUM = 3         # a table does not sum to 2**n
ERR_PADDING = 4     # nonzero padding bits
ERR_VARINT = 5      # uvarint too long / too large

MAX_ZEROS = 24
# Longest Exp-Golomb code an encoder writes: frequency <= 2**15 with order g <= 15 has
# u = (v >> g) + 1 <= 2**15 + 1, so z <= 15 and 2*z + 1 + g <= 46 bits.
MAX_CODE_BITS = 46


def cumulative(freqs) -> np.ndarray:
    """Exclusive prefix sums per table (T, A): cum[t, a] = f[t, 0] + ... + f[t, a - 1]."""
    f = np.asarray(freqs, np.int64)
    return np.concatenate((np.zeros((f.shape[0], 1), np.int64), np.cumsum(f, axis=1)[:, :-1]), axis=1)


@njit
def max_tables_bytes(ntables: int, alphabet: int) -> int:
    """An upper bound on ``write_tables`` output, for its buffer."""
    return (ntables * (4 + alphabet * MAX_CODE_BITS) + 7) // 8 + 8


# BITLEN[v] = number of bits of v (0 for 0), for v <= 2**16: an Exp-Golomb length in one lookup.
# Valid frequencies are <= 2**15 and orders <= 15, so v + 2**g <= 2**16 stays inside the table;
# larger values (tests serialize invalid tables on purpose) take the loop in ``_bitlen``.
BITLEN_MAX = 1 << 16
BITLEN = np.zeros(BITLEN_MAX + 1, np.int64)
BITLEN[1:] = np.floor(np.log2(np.arange(1, BITLEN_MAX + 1, dtype=np.float64))).astype(np.int64) + 1


@njit
def _bitlen(v):
    if v <= BITLEN_MAX:
        return BITLEN[v]
    n = 0
    while v:
        v >>= 1
        n += 1
    return n


@njit
def best_order(freqs_row):
    """The Exp-Golomb order g in 0..15 that codes this table in the fewest bits (4-bit order field
    included; each frequency v costs 2 * bitlen(v + 2**g) - 1 - g bits, FORMAT.md section 4).

    The length is close to convex in g, so the search stops at the first increase (ties keep the
    smaller g). Encoder policy only: any g is valid in a stream.
    """
    present = np.empty(freqs_row.shape[0], np.int64)
    npresent = 0
    for v in freqs_row:
        present[npresent] = v
        npresent += v != 0
    return present_order(present, npresent, freqs_row.shape[0])


@njit
def present_order(present, npresent, alphabet):
    """``best_order`` of an ``alphabet``-symbol table from its nonzero frequencies
    ``present[:npresent]`` alone: an absent symbol codes in 2 * bitlen(2**g) - 1 - g = g + 1 bits
    at order g, so each order visits only the present symbols."""
    best_g, best_bits = -1, np.int64(0)
    for g in range(16):
        step = np.int64(1) << g
        bits = np.int64(4) + (alphabet - 2 * npresent) * (g + 1)
        for j in range(npresent):
            bits += 2 * _bitlen(present[j] + step)
        if best_g >= 0 and bits >= best_bits:
            break
        best_g, best_bits = g, bits
    return best_g, best_bits


@njit
def _put(out, pos, acc, nacc, value, width):
    acc |= np.uint64(value & ((1 << width) - 1)) << np.uint64(nacc)
    nacc += width
    while nacc >= 8:
        out[pos] = np.uint8(acc & np.uint64(0xFF))
        pos += 1
        acc >>= np.uint64(8)
        nacc -= 8
    return pos, acc, nacc


@njit
def _put32(out, pos, acc, nacc, value, width):
    """``_put`` for width <= 32 with nacc < 32, without a data-dependent branch (a mispredicted
    one per code cost more than the code): the low 4 accumulator bytes are always stored (``out``
    needs 4 bytes of room past the data) and kept unless all 32 bits were full."""
    acc |= np.uint64(value) << np.uint64(nacc)
    nacc += width
    for i in range(4):
        out[pos + i] = np.uint8((acc >> np.uint64(8 * i)) & np.uint64(0xFF))
    full = nacc & 32
    return pos + (full >> 3), acc >> np.uint64(full), nacc - full


@njit
def _put_long_code(out, pos, acc, nacc, v, u, z, g):
    """An Exp-Golomb code longer than 32 bits (only invalid tables have one), piece by piece."""
    pos, acc, nacc = _put(out, pos, acc, nacc, np.int64(0), 0)   # flush to nacc < 8 for ``_put``
    pos, acc, nacc = _put(out, pos, acc, nacc, np.int64(0), z)   # z zero bits
    pos, acc, nacc = _put(out, pos, acc, nacc, np.int64(1), 1)   # the marker bit
    pos, acc, nacc = _put(out, pos, acc, nacc, u, z)             # low z bits of u
    return _put(out, pos, acc, nacc, v, g)                       # low g bits of v


@njit
def _absent_pattern(g):
    """(k, bits): k absent symbols (each a 1 followed by g zero bits) fill the low k * (g + 1)
    bits of ``bits``, for k up to the most that fit in 32 bits."""
    per = 32 // (g + 1)
    pattern = np.int64(0)
    for i in range(per):
        pattern |= np.int64(1) << (i * (g + 1))
    return per, pattern


@njit
def _put_absent(out, pos, acc, nacc, run, g, per, pattern):
    """``run`` absent symbols, up to 32 bits of them in one put."""
    while run >= per:
        pos, acc, nacc = _put32(out, pos, acc, nacc, pattern, per * (g + 1))
        run -= per
    return _put32(out, pos, acc, nacc, pattern & ((np.int64(1) << (run * (g + 1))) - 1), run * (g + 1))


@njit
def write_tables(freqs, out):
    """Serialize tables (T, A) into ``out`` (uint8, large enough); returns the byte count.

    Each frequency v is the order-g Exp-Golomb code of FORMAT.md section 4: z zero bits, a 1, the
    low z bits of u = (v >> g) + 1, then the low g bits of v; runs of zeros go in bulk."""
    pos = 0
    acc = np.uint64(0)
    nacc = 0
    for t in range(freqs.shape[0]):
        g, _ = best_order(freqs[t])
        pos, acc, nacc = _put32(out, pos, acc, nacc, np.int64(g), 4)
        gmask = (np.int64(1) << g) - 1
        per, pattern = _absent_pattern(g)
        run = 0
        for a in range(freqs.shape[1]):
            v = np.int64(freqs[t, a])
            if v == 0:
                run += 1
                continue
            if run:
                pos, acc, nacc = _put_absent(out, pos, acc, nacc, run, g, per, pattern)
                run = 0
            u = (v >> g) + 1
            z = _bitlen(u) - 1
            if 2 * z + 1 + g > 32:
                pos, acc, nacc = _put_long_code(out, pos, acc, nacc, v, u, z, g)
                continue
            code = ((u << (z + 1)) | (np.int64(1) << z)) & ((np.int64(1) << (2 * z + 1)) - 1)
            pos, acc, nacc = _put32(out, pos, acc, nacc, code | ((v & gmask) << (2 * z + 1)), 2 * z + 1 + g)
        pos, acc, nacc = _put_absent(out, pos, acc, nacc, run, g, per, pattern)
    while nacc > 0:
        out[pos] = np.uint8(acc & np.uint64(0xFF))
        pos += 1
        acc >>= np.uint64(8)
        nacc -= 8
    return pos


@njit
def read_tables(buf, pos, end, ntables, alphabet, prob_bits, freqs):
    """Parse ``ntables`` tables into ``freqs`` (T, A). Returns (error code, position after block)."""
    acc = np.uint64(0)
    nacc = 0
    total_target = np.int64(1) << prob_bits
    for t in range(ntables):
        # order field
        while nacc < 4:
            if pos >= end:
                return ERR_TRUNCATED, pos
            acc |= np.uint64(buf[pos]) << np.uint64(nacc)
            pos += 1
            nacc += 8
        g = np.int64(acc & np.uint64(15))
        acc >>= np.uint64(4)
        nacc -= 4
        total = np.int64(0)
        for a in range(alphabet):
            z = 0
            while True:
                if nacc == 0:
                    if pos >= end:
                        return ERR_TRUNCATED, pos
                    acc = np.uint64(buf[pos])
                    pos += 1
                    nacc = 8
                bit = acc & np.uint64(1)
                acc >>= np.uint64(1)
                nacc -= 1
                if bit == 1:
                    break
                z += 1
                if z > MAX_ZEROS:
                    return ERR_ZEROS, pos
            need = z + g
            while nacc < need:
                if pos >= end:
                    return ERR_TRUNCATED, pos
                acc |= np.uint64(buf[pos]) << np.uint64(nacc)
                pos += 1
                nacc += 8
            low = np.int64(acc & np.uint64((1 << z) - 1))
            acc >>= np.uint64(z)
            nacc -= z
            r = np.int64(acc & np.uint64((1 << g) - 1))
            acc >>= np.uint64(g)
            nacc -= g
            u = (np.int64(1) << z) | low
            v = ((u - 1) << g) | r
            if v > total_target:
                return ERR_SUM, pos
            freqs[t, a] = v
            total += v
        if total != total_target:
            return ERR_SUM, pos
    if acc != 0:
        return ERR_PADDING, pos
    return OK, pos


@njit
def write_uvarints(values, out, pos):
    for v in values:
        x = np.uint64(v)
        while x >= np.uint64(0x80):
            out[pos] = np.uint8((x & np.uint64(0x7F)) | np.uint64(0x80))
            pos += 1
            x >>= np.uint64(7)
        out[pos] = np.uint8(x)
        pos += 1
    return pos


@njit
def read_uvarints(buf, pos, end, count, out):
    """Parse ``count`` uvarints into ``out``. Returns (error code, position after them)."""
    for i in range(count):
        value = np.uint64(0)
        shift = 0
        done = False
        for _ in range(9):
            if pos >= end:
                return ERR_TRUNCATED, pos
            byte = np.uint64(buf[pos])
            pos += 1
            value |= (byte & np.uint64(0x7F)) << np.uint64(shift)
            if byte < np.uint64(0x80):
                done = True
                break
            shift += 7
        if not done or value >= np.uint64(1) << np.uint64(62):
            return ERR_VARINT, pos
        out[i] = np.int64(value)
    return OK, pos
