"""The container of FORMAT.md: ``Header`` <-> bytes, with every untrusted field validated once here.

``parse`` is the boundary: after it returns, every count, offset, table and parameter is known to be
in range, so engines may decode without re-checking the header (they still check the rANS streams).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from . import _tablecodec as tc
from ._bits import ByteReader, put_uvarint
from ._crc32c import crc32c
from .errors import (BadMagicError, ChecksumError, CorruptStreamError, HeaderError, LimitExceededError,
                     TruncatedError, UnsupportedVersionError)

MAGIC = b"SPWC"
VERSION = 1
FLAG_PER_CHANNEL = 1
FLAG_ECSQ = 2
FLAG_ZERO_MASK = 4
KNOWN_FLAGS = FLAG_PER_CHANNEL | FLAG_ECSQ | FLAG_ZERO_MASK
NO_AXIS = 255
DTYPES = {0: np.dtype(np.float32), 1: np.dtype(np.float16)}
DTYPE_CODES = {v: k for k, v in DTYPES.items()}
MAX_NDIM = 8
DEFAULT_MAX_ELEMENTS = 1 << 27
MIN_PROB_BITS, MAX_PROB_BITS = 8, 15
MAX_TABLES = 16
RANS_L = 1 << 16
CRC_BYTES = 4
FIXED_BYTES = 10                      # magic .. axis
STATE_BYTES = 4


@dataclasses.dataclass
class Header:
    """Everything a decoder needs, validated. Arrays are NumPy; derived sizes are properties."""

    dtype: np.dtype
    bits: int
    shape: tuple[int, ...]
    axis: int | None                 # None = no channel axis
    scale: np.ndarray | None         # float32 (1,) or (C,): uniform quantizer
    zero_point: np.ndarray           # int32 (1,) or (C,); ECSQ: the zero symbol (1,)
    levels: np.ndarray | None        # float32 (2**bits,): ECSQ
    zero_mask: np.ndarray | None     # bool (C,): channel is all zero, not coded
    pack: int
    prob_bits: int
    table_map: np.ndarray            # uint8 (C,)
    freqs: np.ndarray                # uint32 (T, A)
    nwords: np.ndarray               # int64 (S,)
    payload_offset: int = 0          # where stream 0 starts in the blob
    total_bytes: int = 0
    per_channel: bool = False        # one scale/zero point per channel

    # ---- derived sizes (FORMAT.md section 1 and 3) ----
    @functools.cached_property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def channels(self) -> int:
        return 1 if self.axis is None else self.shape[self.axis]

    @property
    def outer(self) -> int:
        return 1 if self.axis is None else math.prod(self.shape[:self.axis])

    @property
    def inner(self) -> int:
        return self.size if self.axis is None else math.prod(self.shape[self.axis + 1:])

    @property
    def row_length(self) -> int:
        """R: elements per channel."""
        return self.outer * self.inner

    @functools.cached_property
    def groups(self) -> int:
        """G: packed symbols per coded channel."""
        return -(-self.row_length // self.pack)

    @functools.cached_property
    def coded_channels(self) -> np.ndarray:
        if self.zero_mask is None:
            return np.arange(self.channels, dtype=np.int64)
        return np.flatnonzero(~self.zero_mask).astype(np.int64)

    @functools.cached_property
    def num_packed(self) -> int:
        """Np: packed symbols in all streams."""
        coded = self.channels if self.zero_mask is None else int(self.channels - self.zero_mask.sum())
        return coded * self.groups

    @property
    def num_streams(self) -> int:
        return int(self.nwords.shape[0])

    @functools.cached_property
    def symbols_per_stream(self) -> int:
        """P: packed symbols in each stream but the last."""
        return -(-self.num_packed // self.num_streams) if self.num_streams else 0

    @functools.cached_property
    def stream_offsets(self) -> np.ndarray:
        """Byte offset of each stream in the blob, plus the end (S + 1,)."""
        sizes = STATE_BYTES + 2 * self.nwords
        return self.payload_offset + np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)

    @property
    def alphabet(self) -> int:
        return 1 << (self.pack * self.bits)

    @property
    def ntables(self) -> int:
        return int(self.freqs.shape[0])


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

def write(h: Header, streams: np.ndarray) -> bytes:
    """Serialize ``h`` followed by ``streams`` (the concatenated stream bytes, uint8) and the CRC."""
    out = bytearray(MAGIC)
    flags = ((FLAG_PER_CHANNEL if h.per_channel else 0) | (FLAG_ECSQ if h.levels is not None else 0)
             | (FLAG_ZERO_MASK if h.zero_mask is not None else 0))
    out += bytes((VERSION, flags, DTYPE_CODES[np.dtype(h.dtype)], h.bits, len(h.shape),
                  NO_AXIS if h.axis is None else h.axis))
    for dim in h.shape:
        put_uvarint(out, dim)
    # quantizer section
    if h.levels is not None:
        out += np.asarray(h.levels, "<f4").tobytes()
    elif h.per_channel:
        out += _bf16_bits(h.scale).astype("<u2").tobytes()
        out += pack_fields(h.zero_point, h.bits)
    else:
        out += np.asarray(h.scale, "<f4").tobytes()
        out.append(int(h.zero_point[0]))
    # model section
    out += bytes((h.pack, h.prob_bits, h.ntables))
    if h.zero_mask is not None:
        out += np.packbits(h.zero_mask.astype(np.uint8), bitorder="little").tobytes()
    if h.ntables > 1:
        out += pack_fields(h.table_map, table_map_width(h.ntables))
    scratch = np.zeros(tc.max_tables_bytes(h.ntables, h.alphabet), np.uint8)
    n = tc.write_tables(h.freqs.astype(np.int64), scratch)
    out += scratch[:n].tobytes()
    # stream directory
    directory = np.zeros(9 * (h.num_streams + 1), np.uint8)
    pos = tc.write_uvarints(np.array([h.num_streams], np.int64), directory, 0)
    pos = tc.write_uvarints(h.nwords.astype(np.int64), directory, pos)
    out += directory[:pos].tobytes()
    out += memoryview(np.ascontiguousarray(streams, np.uint8)).cast("B")
    out += crc32c(out).to_bytes(4, "little")
    return bytes(out)


def table_map_width(ntables: int) -> int:
    return max(1, (ntables - 1).bit_length())


def pack_fields(values: np.ndarray, width: int) -> bytes:
    """C fields of ``width`` bits, LSB first, padded to a byte (FORMAT.md section 5)."""
    v = np.asarray(values, np.int64)
    bits = ((v[:, None] >> np.arange(width)) & 1).astype(np.uint8).ravel()
    return np.packbits(bits, bitorder="little").tobytes()


def unpack_fields(raw: memoryview, count: int, width: int, what: str) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")
    if bits[count * width:].any():
        raise HeaderError(f"{what}: nonzero padding bits at the end of a bit-packed block")
    fields = bits[:count * width].reshape(count, width).astype(np.int64)
    return fields @ (np.int64(1) << np.arange(width, dtype=np.int64))


def _bf16_bits(scale: np.ndarray) -> np.ndarray:
    u = np.asarray(scale, np.float32).view(np.uint32)
    if np.any(u & 0xFFFF):
        raise ValueError("per-channel scales must be bf16-representable (low 16 bits zero)")
    return (u >> 16).astype(np.uint16)


# --------------------------------------------------------------------------------------------
# parsing: the one place untrusted bytes are validated
# --------------------------------------------------------------------------------------------

def parse(blob, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Header:
    """Validate ``blob`` completely and return its ``Header`` (streams are checked when decoded)."""
    buf = memoryview(blob).cast("B") if not isinstance(blob, memoryview) else blob.cast("B")
    if len(buf) < FIXED_BYTES + CRC_BYTES:
        if len(buf) >= 4 and bytes(buf[:4]) != MAGIC:
            raise BadMagicError("not a splitwire blob: bad magic bytes (expected b'SPWC')")
        raise TruncatedError(f"blob truncated: {len(buf)} bytes is shorter than the smallest valid blob "
                             f"({FIXED_BYTES + CRC_BYTES} bytes)")
    if bytes(buf[:4]) != MAGIC:
        raise BadMagicError(f"not a splitwire blob: magic {bytes(buf[:4])!r}, expected {MAGIC!r}")
    if buf[4] != VERSION:
        raise UnsupportedVersionError(
            f"format version {buf[4]} is not supported by this decoder (it reads version {VERSION}); "
            "upgrade splitwire on the decoding side")
    body_end = len(buf) - CRC_BYTES
    expected = int.from_bytes(buf[body_end:], "little")
    actual = crc32c(buf[:body_end])
    if actual != expected:
        raise ChecksumError(f"CRC32C mismatch (stored {expected:#010x}, computed {actual:#010x}): "
                            "the blob was damaged or truncated in transit")
    r = ByteReader(buf, 5, body_end)
    flags = r.u8("flags")
    if flags & ~KNOWN_FLAGS:
        raise HeaderError(f"flags {flags:#04x} set reserved bits")
    dtype_code = r.u8("dtype")
    if dtype_code not in DTYPES:
        raise HeaderError(f"unknown dtype code {dtype_code} (valid: {sorted(DTYPES)})")
    bits = r.u8("bits")
    if not 1 <= bits <= 8:
        raise HeaderError(f"bits={bits} out of range 1..8")
    ndim = r.u8("ndim")
    if ndim > MAX_NDIM:
        raise HeaderError(f"ndim={ndim} exceeds {MAX_NDIM}")
    axis_byte = r.u8("axis")
    axis = None if axis_byte == NO_AXIS else axis_byte
    if axis is not None and axis >= ndim:
        raise HeaderError(f"axis={axis} out of range for ndim={ndim}")
    shape = []
    size = 1
    for d in range(ndim):
        dim = r.uvarint(f"shape[{d}]")
        shape.append(dim)
        size *= dim
        if size > max_elements:
            raise LimitExceededError(f"the blob announces at least {size} elements (shape prefix {shape}), "
                                     f"more than max_elements={max_elements}; raise max_elements to accept it")
    shape = tuple(shape)
    channels = 1 if axis is None else shape[axis]
    per_channel = bool(flags & FLAG_PER_CHANNEL)
    ecsq = bool(flags & FLAG_ECSQ)
    if per_channel and (ecsq or axis is None):
        raise HeaderError("PER_CHANNEL flag needs a channel axis and the uniform quantizer")
    qmax = (1 << bits) - 1
    scale = levels = None
    if ecsq:
        levels = np.frombuffer(r.take(4 * (qmax + 1), "ECSQ levels"), "<f4").astype(np.float32)
        if not np.all(np.isfinite(levels)):
            raise HeaderError("ECSQ reconstruction levels must be finite")
        zeros = np.flatnonzero(levels == 0.0)
        zero_point = np.array([zeros[0] if zeros.size else 0], np.int64)
    elif per_channel:
        raw = np.frombuffer(r.take(2 * channels, "per-channel scales"), "<u2")
        scale = (raw.astype(np.uint32) << 16).view(np.float32)
        zero_point = unpack_fields(r.take(-(-channels * bits // 8), "per-channel zero points"),
                                   channels, bits, "per-channel zero points")
    else:
        scale = np.frombuffer(r.take(4, "scale"), "<f4").astype(np.float32)
        zero_point = np.array([r.u8("zero point")], np.int64)
    if scale is not None and not np.all(np.isfinite(scale) & (scale > 0)):
        raise HeaderError("quantizer scales must be finite and > 0")
    if np.any(zero_point > qmax):
        raise HeaderError(f"zero point above {qmax}, the largest {bits}-bit symbol")
    pack = r.u8("pack")
    if pack < 1 or pack * bits > 8:
        raise HeaderError(f"pack={pack} invalid for bits={bits} (need 1 <= pack and pack * bits <= 8)")
    prob_bits = r.u8("prob_bits")
    if not MIN_PROB_BITS <= prob_bits <= MAX_PROB_BITS:
        raise HeaderError(f"prob_bits={prob_bits} out of range {MIN_PROB_BITS}..{MAX_PROB_BITS}")
    ntables = r.u8("ntables")
    if not 1 <= ntables <= MAX_TABLES:
        raise HeaderError(f"ntables={ntables} out of range 1..{MAX_TABLES}")
    zero_mask = None
    if flags & FLAG_ZERO_MASK:
        raw = r.take(-(-channels // 8), "zero mask")
        bits_ = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")
        if bits_[channels:].any():
            raise HeaderError("zero mask: nonzero padding bits")
        zero_mask = bits_[:channels].astype(bool)
    if ntables > 1:
        width = table_map_width(ntables)
        table_map = unpack_fields(r.take(-(-channels * width // 8), "table map"), channels, width, "table map")
        if np.any(table_map >= ntables):
            raise HeaderError(f"table map names a table >= ntables={ntables}")
        table_map = table_map.astype(np.uint8)
    else:
        table_map = np.zeros(channels, np.uint8)
    alphabet = 1 << (pack * bits)
    freqs = np.zeros((ntables, alphabet), np.int64)
    arr = np.frombuffer(buf, np.uint8)
    err, pos = tc.read_tables(arr, r.pos, body_end, ntables, alphabet, prob_bits, freqs)
    _raise_table_error(err)
    r.pos = pos
    nstreams_box = np.zeros(1, np.int64)
    err, pos = tc.read_uvarints(arr, r.pos, body_end, 1, nstreams_box)
    _raise_varint_error(err, "stream count")
    nstreams = int(nstreams_box[0])
    h = Header(dtype=DTYPES[dtype_code], bits=bits, shape=shape, axis=axis, scale=scale,
               zero_point=zero_point, levels=levels, zero_mask=zero_mask, pack=pack, prob_bits=prob_bits,
               table_map=table_map, freqs=freqs.astype(np.uint32), nwords=np.zeros(0, np.int64),
               per_channel=per_channel)
    num_packed = h.num_packed
    if (num_packed == 0) != (nstreams == 0) or nstreams > num_packed:
        raise HeaderError(f"stream count {nstreams} invalid for {num_packed} packed symbols")
    if nstreams and (nstreams - 1) * (-(-num_packed // nstreams)) >= num_packed:
        raise HeaderError(f"stream count {nstreams} leaves an empty stream for {num_packed} packed symbols")
    if nstreams > body_end - pos:
        raise TruncatedError(f"blob truncated: directory of {nstreams} streams does not fit")
    nwords = np.zeros(nstreams, np.int64)
    err, pos = tc.read_uvarints(arr, pos, body_end, nstreams, nwords)
    _raise_varint_error(err, "stream directory")
    h.nwords = nwords
    h.payload_offset = pos
    h.total_bytes = len(buf)
    if nstreams:
        per = h.symbols_per_stream
        counts = np.full(nstreams, per, np.int64)
        counts[-1] = num_packed - per * (nstreams - 1)
        if np.any(nwords > counts):
            raise CorruptStreamError("stream directory: a stream holds more words than symbols")
    payload = int(STATE_BYTES * nstreams + 2 * nwords.sum())
    if pos + payload != body_end:
        kind = TruncatedError if pos + payload > body_end else HeaderError
        raise kind(f"stream directory announces {payload} payload bytes but {body_end - pos} are present")
    return h


def _raise_table_error(err: int) -> None:
    if err == tc.OK:
        return
    if err == tc.ERR_TRUNCATED:
        raise TruncatedError("blob truncated inside the frequency tables")
    if err == tc.ERR_SUM:
        raise HeaderError("frequency table does not sum to 2**prob_bits")
    if err == tc.ERR_ZEROS:
        raise HeaderError("frequency table: malformed Exp-Golomb code")
    raise HeaderError("frequency tables: nonzero padding bits")


def _raise_varint_error(err: int, what: str) -> None:
    if err == tc.ERR_TRUNCATED:
        raise TruncatedError(f"blob truncated inside the {what}")
    if err != tc.OK:
        raise HeaderError(f"{what}: malformed uvarint")
