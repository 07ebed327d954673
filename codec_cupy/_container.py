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
from . import _transform
from ._bits import ByteReader
from ._crc32c import crc32c
from ._jit import njit
from .errors import (BadMagicError, ChecksumError, CorruptStreamError, HeaderError, LimitExceededError,
                     PriorError, PriorMismatchError, TruncatedError, UnsupportedVersionError)

MAGIC = b"SPWC"
VERSION = 1                           # blobs without a transform (every version-1 decoder reads them)
VERSION_TRANSFORM = 2                 # adds the TRANSFORM flag and its block field (FORMAT.md section 8)
VERSION_PRIOR = 3                     # the model is a shared prior named by its id (FORMAT.md section 9)
VERSIONS = (VERSION, VERSION_TRANSFORM, VERSION_PRIOR)
FLAG_PER_CHANNEL = 1
FLAG_ECSQ = 2
FLAG_ZERO_MASK = 4
FLAG_TRANSFORM = 8
FLAG_PRIOR = 16
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
    block: int = 0                   # DCT block size (version 2); then ``shape``/``axis`` are the coded
    tensor_shape: tuple[int, ...] = ()   # view (P, B*B)/1 and ``tensor_shape`` the decoded tensor's shape
    prior_id: int | None = None      # version 3: the id of the prior that holds the model
    positional: bool = False         # ``with_prior``'s header: ``shape`` is the (outer, C * inner, 1) view
    prior: object = None             # ... the ``Prior`` it decodes with, and the blob's own header
    source: "Header | None" = None   # (its quantizer: ``prior_dequantize``)

    @property
    def version(self) -> int:
        if self.prior_id is not None:
            return VERSION_PRIOR
        return VERSION_TRANSFORM if self.block else VERSION

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The shape ``decode`` returns (the tensor's, also with a transform or a prior)."""
        return self.tensor_shape if self.block or self.positional else self.shape

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
    mask = _NO_MASK if h.zero_mask is None else np.asarray(h.zero_mask, bool).view(np.uint8)
    fields = frame_fields(h.dtype, h.bits, h.shape, h.axis, h.per_channel, h.scale, h.zero_point, h.levels,
                          h.block, h.tensor_shape)
    model = model_bytes(*fields, h.zero_mask is not None, mask, h.pack, h.prob_bits, np.asarray(h.table_map, np.int64),
                        np.asarray(h.freqs, np.int64), np.asarray(h.nwords, np.int64))
    return seal(model, streams)


def frame_fields(dtype, bits: int, shape: tuple[int, ...], axis: int | None, per_channel: bool, scale, zero_point,
                 levels, block: int = 0, tensor_shape: tuple[int, ...] = (), prior_id: int | None = None,
                 predictor: tuple[float, float] = (0.0, 0.0)) -> tuple:
    """The first arguments of ``model_bytes``, from the ``Header`` fields that the coding does not
    decide (an encoder takes them before coding): the fixed fields (``model_bytes`` sets the
    ZERO_MASK flag), the shape, the transform's block byte and the quantizer section (its words,
    the first byte of each written, the zero point width, the zero points). A version-3 transform
    blob's compact quantizer section (``dct_scale_section``, from ``predictor`` = (base, weight))
    follows the block byte, and the words and zero points are empty."""
    flags = ((FLAG_PER_CHANNEL if per_channel else 0) | (FLAG_ECSQ if levels is not None else 0)
             | (FLAG_TRANSFORM if block else 0) | (FLAG_PRIOR if prior_id is not None else 0))
    shape = tensor_shape if block else shape
    version = VERSION_PRIOR if prior_id is not None else VERSION_TRANSFORM if block else VERSION
    head = np.array((*MAGIC, version, flags, DTYPE_CODES[np.dtype(dtype)], bits,
                     len(shape), NO_AXIS if axis is None or block else axis), np.uint8)
    after_shape = np.array([block] if block else [], np.uint8)
    if block and prior_id is not None:
        section = dct_scale_section(np.asarray(scale, np.float32), *predictor, block)
        return (head, np.array(shape, np.int64), np.concatenate((after_shape, section)), np.zeros(0, np.uint32), 0,
                0, np.zeros(0, np.int64))
    if levels is not None:                       # (words, first byte of each written, zero point width)
        quant = (np.asarray(levels, np.float32).view(np.uint32), 0, 0)
    elif per_channel:                            # bf16 scales: the high half of each float32 word
        quant = (np.asarray(scale, np.float32).view(np.uint32), 2, bits)
        if np.any(quant[0] & 0xFFFF):
            raise ValueError("per-channel scales must be bf16-representable (low 16 bits zero)")
    else:
        quant = (np.asarray(scale, np.float32).view(np.uint32), 0, 8)
    return head, np.array(shape, np.int64), after_shape, *quant, np.asarray(zero_point, np.int64)


@njit
def predicted_scales(base, weight, block):
    """FORMAT.md section 9: the scale a version-3 transform blob predicts for frequency u*B + v,
    bf16_up(base * (1 + (u + v) * weight)), each operation in float32 (round to nearest even, no
    FMA); overflow gives inf, which the callers reject. One implementation for the encoder and both
    header parsers."""
    b, w = np.float32(base), np.float32(weight)
    out = np.empty(block * block, np.float32)
    raw = out.view(np.uint32)
    for f in range(block * block):
        out[f] = b * (np.float32(1) + np.float32(f // block + f % block) * w)
        r = raw[f]
        if r & np.uint32(0xFFFF):                     # the smallest bf16 >= the value
            r = (r & np.uint32(0xFFFF0000)) + np.uint32(0x10000)
        raw[f] = min(r, np.uint32(0x7F800000))
    return out


def dct_scale_section(scale: np.ndarray, base: float, weight: float, block: int) -> np.ndarray:
    """The compact quantizer section of a version-3 transform blob (FORMAT.md section 9): the
    predictor (base, weight) as f32, a bit per frequency whose scale differs from the prediction,
    those scales as bf16. Every scale the encoder chose is reproduced exactly, predicted or not."""
    if np.any(scale.view(np.uint32) & 0xFFFF):
        raise ValueError("per-frequency scales must be bf16-representable (low 16 bits zero)")
    predictor = np.array([base, weight], "<f4")
    explicit = scale.view(np.uint32) != predicted_scales(*predictor, block).view(np.uint32)
    mask = np.packbits(explicit.astype(np.uint8), bitorder="little")
    high = (scale[explicit].view(np.uint32) >> 16).astype("<u2")
    return np.concatenate((predictor.view(np.uint8), mask, high.view(np.uint8)))


def _dct_prior_scales(r: ByteReader, block: int, count: int) -> np.ndarray:
    """``dct_scale_section`` read back: the (B*B,) float32 scales (validated by the caller)."""
    base, weight = np.frombuffer(r.take(8, "scale predictor"), "<f4").astype(np.float64)
    if not (np.isfinite(base) and np.isfinite(weight) and base >= 0 and weight >= 0):
        raise HeaderError(f"scale predictor (base {base}, weight {weight}) must be finite and >= 0")
    explicit = unpack_fields(r.take(-(-count // 8), "explicit-scale mask"), count, 1, "explicit-scale mask")
    explicit = explicit.astype(bool)
    raw = np.frombuffer(r.take(2 * int(explicit.sum()), "explicit scales"), "<u2")
    scale = predicted_scales(base, weight, block)
    scale[explicit] = (raw.astype(np.uint32) << 16).view(np.float32)
    return scale


def seal(model: np.ndarray, streams: np.ndarray) -> bytes:
    """The blob: ``model`` (everything before the streams), the stream bytes, the CRC of both."""
    streams = np.ascontiguousarray(streams, np.uint8)
    crc = crc32c(streams, crc32c(model))
    return b"".join((model, streams, crc.to_bytes(CRC_BYTES, "little")))


_NO_MASK = np.zeros(0, np.uint8)


@njit
def prior_model_bytes(head, shape, after_shape, qwords, qfirst, zwidth, zero_points, prior_id, nwords):
    """Everything before the streams of a version-3 blob (FORMAT.md section 9): ``frame_fields``'
    fields (made with ``prior_id``), the prior's id, the stream directory. Compiled, like
    ``model_bytes``: on small tensors each Python step shows."""
    cap = (64 + 9 * shape.shape[0] + after_shape.shape[0] + 4 * qwords.shape[0] + zero_points.shape[0]
           + 9 * (nwords.shape[0] + 1))
    out = np.empty(cap, np.uint8)
    pos = _write_frame(out, head, shape, after_shape, qwords, qfirst, zwidth, zero_points)
    for i in range(4):
        out[pos] = np.uint8((prior_id >> (8 * i)) & 0xFF)
        pos += 1
    return out[:_write_directory(out, pos, nwords)]


def require_model(h: Header) -> Header:
    """``h`` if an engine can decode with it; a version-3 header without its prior raises
    ``PriorError`` (``with_prior`` attaches the prior)."""
    return with_prior(h, None) if h.prior_id is not None and not h.positional else h


def with_prior(h: Header, prior) -> Header:
    """The header the engines decode a version-3 blob with: the position view (outer, C * inner, 1)
    of FORMAT.md section 9 -- every position a channel with its own table -- carrying ``prior``'s
    tables, and a quantizer (scale 1, zero point 0) that decodes each symbol to its value, which
    ``prior_dequantize`` turns into the tensor. Raises ``PriorError`` when the prior is missing,
    ``PriorMismatchError`` when it is not the blob's."""
    if h.prior_id is None or h.positional:
        return h
    if prior is None:
        raise PriorError(f"this blob was coded with the shared prior {h.prior_id:#010x} (format version 3) and "
                         "carries no model of its own: decode it with prior=<that Prior> "
                         "(codec_cupy.Prior.load(path))")
    if prior.id != h.prior_id:
        raise PriorMismatchError(f"this blob was coded with the prior {h.prior_id:#010x}, not with the one given "
                                 f"({prior.id:#010x}): load the prior its encoder used")
    outer, channels, inner = prior_view(h)
    if (prior.bits, prior.channels, prior.inner) != (h.bits, channels, inner):
        raise PriorMismatchError(f"the blob ({channels} channels of {inner} elements, {h.bits} bits) does not fit "
                                 f"its prior {prior.id:#010x} ({prior.channels} x {prior.inner}, {prior.bits} bits)")
    return dataclasses.replace(h, shape=(outer, channels * inner, 1), axis=1, scale=_UNIT_SCALE, zero_point=_NO_ZERO,
                               levels=None, per_channel=False, prob_bits=prior.prob_bits, table_map=prior.table_map,
                               freqs=prior.freqs, tensor_shape=h.tensor_shape if h.block else h.shape,
                               positional=True, prior=prior, source=h)


def prior_view(h: Header) -> tuple[int, int, int]:
    """(outer, C, inner) of the positions a prior models for the blob of ``h`` (FORMAT.md section 9):
    the channel view; for a transform blob, samples (the dimensions before the last three) x blocks
    of one sample x frequencies."""
    if not h.block:
        return h.outer, h.channels, h.inner
    return transform_prior_view(h.tensor_shape, h.block)


def transform_prior_view(tensor_shape: tuple[int, ...], block: int) -> tuple[int, int, int]:
    """``prior_view`` of a transform blob of a tensor of ``tensor_shape``: (samples, blocks per
    sample, B*B), samples = prod(shape[:-3]); the coded view (P, B*B) holds these positions sample by
    sample, row-major (section 8's block order)."""
    _, by, bx = _transform.grid(tensor_shape, block)
    return math.prod(tensor_shape[:-3]), math.prod(tensor_shape[-3:-2]) * by * bx, block * block


_UNIT_SCALE = np.ones(1, np.float32)
_NO_ZERO = np.zeros(1, np.int64)


def zero_relative(q, zero_symbols, bits: int, xp=np):
    """FORMAT.md section 9: the symbol a prior blob codes for symbol ``q`` of a channel whose zero
    symbol is z, s = (q - z) mod 2**bits. ``q`` is (C, R) (rows: channels), ``zero_symbols`` (C,)."""
    if not np.any(zero_symbols):                      # ReLU features: every zero point is 0
        return q
    z = xp.asarray(np.asarray(zero_symbols, np.int16).reshape(-1, 1))
    return ((q.astype(np.int16) - z) & ((1 << bits) - 1)).astype(np.uint8)


def prior_dequantize(h: Header, s, xp=np):
    """The tensor of a version-3 blob from its decoded symbols: ``s`` holds the symbols' values in
    the position view of ``h`` (``with_prior``; any numeric dtype, an ``xp`` array); q = (s + z) mod
    2**bits with z the channel's zero symbol, then section 2's dequantization with the blob's own
    quantizer, in float32 (round to nearest even, no FMA)."""
    src = h.source
    outer, channels, inner = src.outer, src.channels, src.inner
    z = xp.asarray(np.broadcast_to(src.zero_point, (channels,)).astype(np.int32).reshape(1, channels, 1))
    q = (s.reshape(outer, channels, inner).astype(np.int32) + z) & ((1 << src.bits) - 1)
    if src.levels is not None:
        y = xp.asarray(src.levels.astype(np.float32))[q]
    else:
        scale = xp.asarray(np.broadcast_to(src.scale, (channels,)).astype(np.float32).reshape(1, channels, 1))
        with np.errstate(over="ignore"):        # a valid (huge) scale may overflow to inf, as specified
            y = (q - z).astype(np.float32) * scale
    return y.reshape(src.shape)


@njit
def model_bytes(head, shape, after_shape, qwords, qfirst, zwidth, zero_points, use_mask, zero_mask, pack, prob_bits,
                table_map, freqs, nwords):
    """Everything before the streams (uint8): ``frame_fields``' arguments, then the zero mask (uint8,
    C; written if ``use_mask``), the pack, the precision, the table map (C,), the tables (T, A) and
    the words of each stream. Compiled, so the cpu engine's encoder calls it from compiled code."""
    fixed = head.copy()
    if use_mask:
        fixed[5] |= FLAG_ZERO_MASK
    ntables = freqs.shape[0]
    width = table_map_width(ntables) if ntables > 1 else 0
    return _write_model(fixed, shape, after_shape, qwords, qfirst, zwidth, zero_points,
                        (np.int64(pack), np.int64(prob_bits), np.int64(ntables)), zero_mask if use_mask else zero_mask[:0],
                        table_map, width, freqs, nwords, tc.max_tables_bytes(ntables, freqs.shape[1]))


@njit
def _write_model(head, shape, after_shape, qwords, qfirst, zwidth, zero_points, model_fields, zero_mask, table_map,
                 width, freqs, nwords, tables_bound):
    """Everything before the streams in one compiled call (small tensors pay per Python step):
    fixed fields, shape, ``after_shape`` (the transform's block byte), quantizer section (bytes
    ``qfirst``..3 of each little-endian word, then the zero points as ``zwidth``-bit fields), model section, table map, tables and stream
    directory (FORMAT.md). The streams are not copied here: a compiled byte loop was slower than
    ``bytes.join``."""
    channels = zero_mask.shape[0] + table_map.shape[0] + zero_points.shape[0]
    cap = (64 + 9 * shape.shape[0] + 4 * qwords.shape[0] + channels * 2 + tables_bound
           + 9 * (nwords.shape[0] + 1))
    out = np.empty(cap, np.uint8)
    pos = _write_frame(out, head, shape, after_shape, qwords, qfirst, zwidth, zero_points)
    for b in model_fields:
        out[pos] = b
        pos += 1
    pos = _put_fields(out, pos, zero_mask, 1)
    pos = _put_fields(out, pos, table_map, width)
    pos += tc.write_tables(freqs, out[pos:])
    return out[:_write_directory(out, pos, nwords)]


@njit(inline="always")
def _write_frame(out, head, shape, after_shape, qwords, qfirst, zwidth, zero_points):
    """The fields every version starts with, from out[0]: fixed fields, shape, ``after_shape`` (the
    transform's block byte), quantizer section (bytes ``qfirst``..3 of each little-endian word, then
    the zero points as ``zwidth``-bit fields). Returns the position after them."""
    pos = 0
    for b in head:
        out[pos] = b
        pos += 1
    pos = tc.write_uvarints(shape, out, pos)
    for b in after_shape:
        out[pos] = b
        pos += 1
    for w in qwords:
        for i in range(qfirst, 4):
            out[pos] = np.uint8((w >> np.uint32(8 * i)) & np.uint32(0xFF))
            pos += 1
    return _put_fields(out, pos, zero_points, zwidth)


@njit(inline="always")
def _write_directory(out, pos, nwords):
    """The stream directory (FORMAT.md section 4) at ``pos``; returns the position after it."""
    pos = tc.write_uvarints(np.full(1, nwords.shape[0], np.int64), out, pos)
    return tc.write_uvarints(nwords, out, pos)


@njit
def _put_fields(out, pos, values, width):
    """Fields of ``width`` bits (none for width 0), LSB first, padded to a byte (FORMAT.md section 5)."""
    acc = np.uint64(0)
    nacc = 0
    for v in values:
        pos, acc, nacc = tc._put(out, pos, acc, nacc, np.int64(v), width)
    if nacc > 0:
        out[pos] = np.uint8(acc & np.uint64(0xFF))
        pos += 1
    return pos


@njit
def table_map_width(ntables: int) -> int:
    """Bits per table map entry: enough for ntables - 1, at least 1."""
    width = 1
    while (1 << width) < ntables:
        width += 1
    return width


def unpack_fields(raw: memoryview, count: int, width: int, what: str) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")
    if bits[count * width:].any():
        raise HeaderError(f"{what}: nonzero padding bits at the end of a bit-packed block")
    fields = bits[:count * width].reshape(count, width).astype(np.int64)
    return fields @ (np.int64(1) << np.arange(width, dtype=np.int64))


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
    version = buf[4]
    if version not in VERSIONS:
        raise UnsupportedVersionError(
            f"format version {version} is not supported by this decoder (it reads versions "
            f"{', '.join(map(str, VERSIONS))}); upgrade splitwire on the decoding side")
    body_end = len(buf) - CRC_BYTES
    expected = int.from_bytes(buf[body_end:], "little")
    actual = crc32c(buf[:body_end])
    if actual != expected:
        raise ChecksumError(f"CRC32C mismatch (stored {expected:#010x}, computed {actual:#010x}): "
                            "the blob was damaged or truncated in transit")
    r = ByteReader(buf, 5, body_end)
    flags = r.u8("flags")
    known = KNOWN_FLAGS | (FLAG_TRANSFORM if version == VERSION_TRANSFORM else 0)
    if version == VERSION_PRIOR:
        known = FLAG_PER_CHANNEL | FLAG_ECSQ | FLAG_PRIOR | FLAG_TRANSFORM
        if not flags & FLAG_PRIOR:
            raise HeaderError("a version-3 blob must set the PRIOR flag")
    if flags & ~known:
        raise HeaderError(f"flags {flags:#04x} set reserved bits (version {version})")
    transform = bool(flags & FLAG_TRANSFORM)
    if version == VERSION_TRANSFORM and not transform:
        raise HeaderError("a version-2 blob must set the TRANSFORM flag (version 1 codes the elements)")
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
    block, tensor_shape = 0, ()
    if transform:
        shape, axis, block, tensor_shape = _transform_view(r, shape, axis, flags, max_elements)
    channels = 1 if axis is None else shape[axis]
    if channels > max_elements:           # possible when another dimension is 0
        raise LimitExceededError(f"the blob announces {channels} channels, more than max_elements={max_elements}; "
                                 "raise max_elements to accept it")
    per_channel = bool(flags & FLAG_PER_CHANNEL)
    ecsq = bool(flags & FLAG_ECSQ)
    if per_channel and (ecsq or axis is None):
        raise HeaderError("PER_CHANNEL flag needs a channel axis and the uniform quantizer")
    qmax = (1 << bits) - 1
    scale = levels = None
    if transform and version == VERSION_PRIOR:          # the compact per-frequency section (section 9)
        if bits < 2:
            raise HeaderError(f"a version-3 TRANSFORM blob needs bits >= 2, got {bits}")
        scale = _dct_prior_scales(r, block, channels)
        zero_point = np.full(channels, 1 << (bits - 1), np.int64)
    elif ecsq:
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
    if version == VERSION_PRIOR:
        return _prior_header(r, arr_end=body_end, buf=buf, dtype=DTYPES[dtype_code], bits=bits, shape=shape,
                             axis=axis, scale=scale, zero_point=zero_point, levels=levels, per_channel=per_channel,
                             block=block, tensor_shape=tensor_shape)
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
    h = Header(dtype=DTYPES[dtype_code], bits=bits, shape=shape, axis=axis, scale=scale,
               zero_point=zero_point, levels=levels, zero_mask=zero_mask, pack=pack, prob_bits=prob_bits,
               table_map=table_map, freqs=freqs.astype(np.uint32), nwords=np.zeros(0, np.int64),
               per_channel=per_channel, block=block, tensor_shape=tensor_shape)
    return _read_directory(h, arr, r.pos, body_end)


def _prior_header(r: ByteReader, arr_end: int, buf, **fields) -> Header:
    """The rest of a version-3 blob (FORMAT.md section 9): the prior's id, the stream directory. The
    header describes the tensor's own view; ``with_prior`` turns it into the one engines decode."""
    prior_id = int.from_bytes(r.take(4, "prior id"), "little")
    alphabet = 1 << fields["bits"]
    h = Header(zero_mask=None, pack=1, prob_bits=MIN_PROB_BITS, table_map=np.zeros(0, np.uint8),
               freqs=np.zeros((0, alphabet), np.uint32), nwords=np.zeros(0, np.int64), prior_id=prior_id, **fields)
    _read_directory(h, np.frombuffer(buf, np.uint8), r.pos, arr_end)
    return h


def _read_directory(h: Header, arr: np.ndarray, pos: int, body_end: int) -> Header:
    """The stream directory of ``h`` (FORMAT.md section 4), checked against its symbols and the bytes."""
    nstreams_box = np.zeros(1, np.int64)
    err, pos = tc.read_uvarints(arr, pos, body_end, 1, nstreams_box)
    _raise_varint_error(err, "stream count")
    nstreams = int(nstreams_box[0])
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
    h.total_bytes = body_end + CRC_BYTES
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


def _transform_view(r: ByteReader, shape: tuple[int, ...], axis, flags: int, max_elements: int):
    """(coded view shape, its axis, block, tensor shape) of a TRANSFORM blob (FORMAT.md section 8)."""
    if len(shape) < 2:
        raise HeaderError(f"TRANSFORM needs a tensor of at least 2 dimensions, got ndim={len(shape)}")
    if axis is not None:
        raise HeaderError(f"TRANSFORM blobs carry axis=255 (no channel axis), got {axis}")
    if not flags & FLAG_PER_CHANNEL or flags & FLAG_ECSQ:
        raise HeaderError("TRANSFORM needs the PER_CHANNEL uniform quantizer (one scale per frequency)")
    block = r.u8("block")
    if not _transform.MIN_BLOCK <= block <= _transform.MAX_BLOCK:
        raise HeaderError(f"block={block} out of range {_transform.MIN_BLOCK}..{_transform.MAX_BLOCK}")
    view = _transform.coded_view_shape(shape, block)
    if view[0] * view[1] > max_elements:
        raise LimitExceededError(f"the blob's {view[0]} blocks of {block}x{block} coefficients exceed "
                                 f"max_elements={max_elements}; raise max_elements to accept it")
    return view, 1, block, shape


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


# --------------------------------------------------------------------------------------------
# the compiled parse: the same validation in one Numba call, for the decode path
# --------------------------------------------------------------------------------------------
#
# ``parse_fields`` accepts exactly the blobs ``parse`` accepts (tests/test_codec_hostile.py and
# tests/test_codec_api.py compare them on mutated blobs). It reports a failure only as a code:
# the caller then runs ``parse``, which raises the typed error with its readable message, so
# every message comes from one place. Every read is checked against ``body_end`` before it is
# made (Numba does no bounds checks).

H_OK = 0
H_INVALID = 1

# indices into the int64 ``info`` array ``parse_fields`` returns
# (for a TRANSFORM blob, I_SIZE / I_CHANNELS / I_OUTER / I_INNER describe the coded (P, B*B) view,
# ``shape`` the tensor, I_BLOCK its block; I_BLOCK is 0 for version 1; I_PRIOR is 1 for version 3,
# I_PRIOR_ID its prior's id, and then there is no model: pack 1, prob_bits and ntables 0)
I_NDIM, I_SIZE, I_CHANNELS, I_OUTER, I_INNER, I_ROW, I_BITS, I_PACK, I_PROB_BITS, I_NTABLES, \
    I_NSTREAMS, I_PAYLOAD, I_NUM_PACKED, I_GROUPS, I_PER, I_VSTRIDE, I_CODED, I_BLOCK, I_PRIOR, I_PRIOR_ID = range(20)
INFO_LEN = 20
_MIN_BLOCK, _MAX_BLOCK = _transform.MIN_BLOCK, _transform.MAX_BLOCK


@njit
def _directory(buf, pos, body_end, num_packed):
    """The stream directory (FORMAT.md section 4) at ``pos``, checked against ``num_packed`` symbols and
    the bytes left: (ok, position after it, S, P, words per stream)."""
    nwords = np.zeros(0, np.int64)
    box = np.zeros(1, np.int64)
    err, pos = tc.read_uvarints(buf, pos, body_end, 1, box)
    nstreams = box[0]
    if err != tc.OK or (num_packed == 0) != (nstreams == 0) or nstreams > num_packed:
        return False, pos, nstreams, np.int64(0), nwords
    per = np.int64(0)
    if nstreams:
        per = (num_packed + nstreams - 1) // nstreams
        if (nstreams - 1) * per >= num_packed:
            return False, pos, nstreams, per, nwords
    if nstreams > body_end - pos:
        return False, pos, nstreams, per, nwords
    nwords = np.zeros(nstreams, np.int64)
    err, pos = tc.read_uvarints(buf, pos, body_end, nstreams, nwords)
    if err != tc.OK:
        return False, pos, nstreams, per, nwords
    payload = np.int64(0)
    for s in range(nstreams):
        count = per if s < nstreams - 1 else num_packed - per * (nstreams - 1)
        if nwords[s] > count:
            return False, pos, nstreams, per, nwords
        payload += STATE_BYTES + 2 * nwords[s]
    return pos + payload == body_end, pos, nstreams, per, nwords


@njit
def _prior_fields(buf, pos, body_end, info, shape, values, vstride, ndim, size, channels, outer, inner, bits, block):
    """``parse_fields`` after a version-3 blob's quantizer section: the prior's id, the directory.
    (``channels``, ``outer``, ``inner``: the prior's view; with a transform (``block``) ``size`` is
    the coded view's and each position's values are its frequency's, p % inner.)"""
    zmask = np.zeros(0, np.uint8)
    tmap = np.zeros(0, np.int64)
    freqs = np.zeros((0, 0), np.int64)
    bad = (H_INVALID, info, shape, values, zmask, np.empty(0, np.int64), tmap, freqs, np.zeros(0, np.int64))
    if pos + 4 > body_end:
        return bad
    prior_id = (np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8) | (np.int64(buf[pos + 2]) << 16)
                | (np.int64(buf[pos + 3]) << 24))
    pos += 4
    row = outer * inner
    num_packed = channels * row
    ok, pos, nstreams, per, nwords = _directory(buf, pos, body_end, num_packed)
    if not ok:
        return bad
    _fill_info(info, (ndim, size, channels, outer, inner, row, bits, 1, 0, 0, nstreams, pos, num_packed, row, per,
                      vstride, channels, block, 1, prior_id))
    return H_OK, info, shape, values, zmask, np.arange(channels), tmap, freqs, nwords


_MAX_VIEW_INNER = np.int64(1) << 40


@njit
def _view_inner(shape, axis, ndim):
    """The elements per channel of one sample, prod(shape[axis + 1:]), as ``parse`` computes it for an
    empty tensor (where ``parse_fields`` otherwise takes inner = 0); -1 beyond 2**40, which no prior
    matches."""
    inner = np.int64(1)
    for d in range(axis + 1, ndim):
        if shape[d] and inner > _MAX_VIEW_INNER // shape[d]:
            return np.int64(-1)
        inner *= shape[d]
    return inner


@njit
def _fill_info(info, fields):
    """``info`` from the INFO_LEN values in I_* order."""
    for i in range(INFO_LEN):
        info[i] = fields[i]


@njit
def _read_bitfields(buf, pos, count, width, out):
    """``count`` fields of ``width`` bits LSB first from buf[pos:]; False if a padding bit is set.
    The caller checked that ceil(count * width / 8) bytes are there."""
    nbytes = (count * width + 7) // 8
    for i in range(count):
        v = np.int64(0)
        for b in range(width):
            bit = i * width + b
            v |= np.int64((buf[pos + (bit >> 3)] >> (bit & 7)) & 1) << b
        out[i] = v
    for bit in range(count * width, nbytes * 8):
        if (buf[pos + (bit >> 3)] >> (bit & 7)) & 1:
            return False
    return True


@njit
def _f32_at(buf, pos, count, stride):
    """``count`` little-endian float32 (stride 4) or bf16 (stride 2, upper half) values."""
    raw = np.empty(count, np.uint32)
    for i in range(count):
        p = pos + stride * i
        if stride == 4:
            raw[i] = (np.uint32(buf[p]) | (np.uint32(buf[p + 1]) << 8) | (np.uint32(buf[p + 2]) << 16)
                      | (np.uint32(buf[p + 3]) << 24))
        else:
            raw[i] = (np.uint32(buf[p]) << 16) | (np.uint32(buf[p + 1]) << 24)
    return raw.view(np.float32)


@njit
def parse_fields(buf, body_end, max_elements):
    """Validate buf[5:body_end] (magic, version and CRC already checked) like ``parse``, for
    either version (buf[4]).

    Returns (status, info int64[INFO_LEN], shape int64[8], values float32 (rows * 2**bits,),
    zero_mask uint8 (C,), coded int64 (Cc,), table_map int64 (C,), freqs int64 (T, A), nwords int64 (S,)).
    ``values[r * 2**bits + q]`` is what symbol q decodes to with value row r = c if per-channel else 0;
    for a version-3 blob, what the zero-relative symbol q decodes to (FORMAT.md section 9), and the
    model arrays are empty.
    """
    info = np.zeros(INFO_LEN, np.int64)
    shape = np.zeros(MAX_NDIM, np.int64)
    values = np.empty(0, np.float32)
    zmask = np.zeros(0, np.uint8)
    coded = np.empty(0, np.int64)
    tmap = np.zeros(0, np.int64)
    freqs = np.zeros((0, 0), np.int64)
    nwords = np.zeros(0, np.int64)
    bad = (H_INVALID, info, shape, values, zmask, coded, tmap, freqs, nwords)
    pos = 5
    if pos + 5 > body_end:
        return bad
    flags = np.int64(buf[5])
    dtype_code = np.int64(buf[6])
    bits = np.int64(buf[7])
    ndim = np.int64(buf[8])
    axis = np.int64(buf[9])
    pos = 10
    version2 = buf[4] == VERSION_TRANSFORM
    prior = buf[4] == VERSION_PRIOR
    known = (KNOWN_FLAGS | FLAG_TRANSFORM) if version2 else KNOWN_FLAGS
    if prior:
        known = FLAG_PER_CHANNEL | FLAG_ECSQ | FLAG_PRIOR | FLAG_TRANSFORM
    if flags & ~known or dtype_code > 1 or bits < 1 or bits > 8 or ndim > MAX_NDIM:
        return bad
    if (version2 and not flags & FLAG_TRANSFORM) or (prior and not flags & FLAG_PRIOR):
        return bad
    transform = (flags & FLAG_TRANSFORM) != 0                 # version 2, or 3 with a transform
    if prior and transform and bits < 2:
        return bad
    if axis != NO_AXIS and axis >= ndim:
        return bad
    size = np.int64(1)
    for d in range(ndim):
        value = np.int64(0)
        done = False
        for b in range(9):
            if pos >= body_end:
                return bad
            byte = np.int64(buf[pos])
            pos += 1
            value |= (byte & 0x7F) << (7 * b)
            if byte < 0x80:
                done = True
                break
        if not done:
            return bad
        shape[d] = value
        if value != 0 and size > max_elements // value:       # size * value > max_elements
            return bad
        size *= value
    block = np.int64(0)
    if transform:                                              # FORMAT.md section 8: the coded view
        if ndim < 2 or axis != NO_AXIS or not flags & FLAG_PER_CHANNEL or flags & FLAG_ECSQ or pos >= body_end:
            return bad
        block = np.int64(buf[pos])
        pos += 1
        if block < _MIN_BLOCK or block > _MAX_BLOCK:
            return bad
        nblocks = np.int64(0)                                  # a zero dimension: no blocks
        if size:                                               # then every factor is <= size
            h, w = shape[ndim - 2], shape[ndim - 1]
            nblocks = size // (h * w) * ((h + block - 1) // block) * ((w + block - 1) // block)
        if nblocks * block * block > max_elements:
            return bad
        size = nblocks * block * block
        axis = np.int64(1)
    channels = np.int64(1)
    outer = np.int64(1)
    inner = size
    if transform:
        channels = block * block
        if channels > max_elements:
            return bad
        if size:
            outer, inner = size // channels, np.int64(1)
        else:
            outer = inner = 0
    elif axis != NO_AXIS:
        channels = shape[axis]
        if channels > max_elements:
            return bad
        if size == 0:
            outer = inner = 0
        else:
            for d in range(axis):
                outer *= shape[d]
            inner = size // (outer * channels)
    row = outer * inner
    per_channel = (flags & FLAG_PER_CHANNEL) != 0
    ecsq = (flags & FLAG_ECSQ) != 0
    if per_channel and (ecsq or axis == NO_AXIS):
        return bad
    nq = np.int64(1) << bits
    qmax = nq - 1
    if ecsq:
        if pos + 4 * nq > body_end:
            return bad
        levels = _f32_at(buf, pos, nq, 4)
        pos += 4 * nq
        zero_symbol = -1
        for q in range(nq):
            if not np.isfinite(levels[q]):
                return bad
            if zero_symbol < 0 and levels[q] == 0.0:
                zero_symbol = q
        values = levels.copy()
        if prior:                                     # zero-relative symbols: s -> level[(s + z) mod 2**b]
            for q in range(nq):
                values[q] = levels[(q + max(zero_symbol, 0)) & qmax]
        vstride = 0
    else:
        rows = channels if per_channel else 1
        if prior and transform:                       # the compact per-frequency section (section 9)
            if pos + 8 > body_end:
                return bad
            predictor = _f32_at(buf, pos, 2, 4)
            pos += 8
            for v in predictor:
                if not (np.isfinite(v) and v >= 0):
                    return bad
            mbytes = (channels + 7) // 8
            explicit = np.empty(channels, np.int64)
            if pos + mbytes > body_end or not _read_bitfields(buf, pos, channels, 1, explicit):
                return bad
            pos += mbytes
            nexplicit = explicit.sum()
            if pos + 2 * nexplicit > body_end:
                return bad
            stored = _f32_at(buf, pos, nexplicit, 2)
            pos += 2 * nexplicit
            scale = predicted_scales(predictor[0], predictor[1], block)
            j = 0
            for f in range(channels):
                if explicit[f]:
                    scale[f] = stored[j]
                    j += 1
            zero = np.full(channels, np.int64(1) << (bits - 1), np.int64)
        elif per_channel:
            zbytes = (channels * bits + 7) // 8
            if pos + 2 * channels > body_end:
                return bad
            scale = _f32_at(buf, pos, channels, 2)
            pos += 2 * channels
            if pos + zbytes > body_end:
                return bad
            zero = np.empty(channels, np.int64)
            if not _read_bitfields(buf, pos, channels, bits, zero):
                return bad
            pos += zbytes
        else:
            if pos + 5 > body_end:
                return bad
            scale = _f32_at(buf, pos, 1, 4)
            zero = np.empty(1, np.int64)
            zero[0] = buf[pos + 4]
            pos += 5
        for r in range(rows):
            s = scale[r]
            if not (np.isfinite(s) and s > 0) or zero[r] > qmax:
                return bad
        values = np.empty(rows * nq, np.float32)
        for r in range(rows):
            s = scale[r]
            z = zero[r]
            for q in range(nq):
                symbol = ((q - z) & qmax) if prior else q     # zero-relative in version 3
                values[r * nq + symbol] = np.float32(q - z) * s
        vstride = nq if per_channel else 0
    if prior and transform:                            # positions: a sample's blocks x frequencies
        samples = np.int64(1)
        for d in range(ndim - 3):
            samples *= shape[d]
        blocks = (shape[ndim - 3] if ndim >= 3 else 1) * ((shape[ndim - 2] + block - 1) // block) \
            * ((shape[ndim - 1] + block - 1) // block)
        return _prior_fields(buf, pos, body_end, info, shape, values, vstride, ndim, size, blocks, samples,
                             channels, bits, block)
    if prior:
        if size == 0 and axis != NO_AXIS:              # the prior's view still has its channel's elements
            inner = _view_inner(shape, axis, ndim)
        return _prior_fields(buf, pos, body_end, info, shape, values, vstride, ndim, size, channels, outer,
                             inner, bits, 0)
    if pos + 3 > body_end:
        return bad
    pack = np.int64(buf[pos])
    prob_bits = np.int64(buf[pos + 1])
    ntables = np.int64(buf[pos + 2])
    pos += 3
    if pack < 1 or pack * bits > 8 or prob_bits < MIN_PROB_BITS or prob_bits > MAX_PROB_BITS:
        return bad
    if ntables < 1 or ntables > MAX_TABLES:
        return bad
    zmask = np.zeros(channels, np.uint8)
    ncoded = channels
    if flags & FLAG_ZERO_MASK:
        mbytes = (channels + 7) // 8
        if pos + mbytes > body_end:
            return bad
        fields = np.empty(channels, np.int64)
        if not _read_bitfields(buf, pos, channels, 1, fields):
            return bad
        pos += mbytes
        for c in range(channels):
            zmask[c] = fields[c]
            ncoded -= fields[c]
    tmap = np.zeros(channels, np.int64)
    if ntables > 1:
        width = table_map_width(ntables)
        tbytes = (channels * width + 7) // 8
        if pos + tbytes > body_end:
            return bad
        if not _read_bitfields(buf, pos, channels, width, tmap):
            return bad
        pos += tbytes
        for c in range(channels):
            if tmap[c] >= ntables:
                return bad
    alphabet = np.int64(1) << (pack * bits)
    freqs = np.zeros((ntables, alphabet), np.int64)
    err, pos = tc.read_tables(buf, pos, body_end, ntables, alphabet, prob_bits, freqs)
    if err != tc.OK:
        return bad
    groups = (row + pack - 1) // pack
    num_packed = ncoded * groups
    ok, pos, nstreams, per, nwords = _directory(buf, pos, body_end, num_packed)
    if not ok:
        return bad
    coded = np.empty(ncoded, np.int64)
    j = 0
    for c in range(channels):
        if zmask[c] == 0:
            coded[j] = c
            j += 1
    _fill_info(info, (ndim, size, channels, outer, inner, row, bits, pack, prob_bits, ntables, nstreams, pos,
                      num_packed, groups, per, vstride, ncoded, block, 0, 0))
    return H_OK, info, shape, values, zmask, coded, tmap, freqs, nwords
