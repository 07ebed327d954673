"""Shared priors: an entropy model fitted once on a split point's features, held by both ends.

A blob carries its frequency tables in its header (FORMAT.md section 3): on a 4 K-element tensor
coded at 1 bit those tables are a tenth of the bytes, and one table per channel group cannot say
that position (3, 2) of channel 17 is almost always zero while (0, 0) is not. A ``Prior`` gives
every *position* of a sample -- channel ``c``, index ``i`` within the channel's ``inner`` elements
-- one of up to 256 frequency tables, fitted on sample tensors of the split point (``fit_prior``),
and both the edge and the server hold it, as both hold the head and the tail. A blob coded with it
(format version 3, FORMAT.md section 9) names the prior by its 32-bit id and carries no model at
all. The prior's serialized form (FORMAT.md section 10) is validated like a blob: it may come from
a file.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np

from . import _container, _planner
from . import _tablecodec as tc
from ._bits import ByteReader, put_uvarint
from ._crc32c import crc32c
from .config import CodecConfig
from .errors import ConfigError, InputError, PriorError, PriorMismatchError

MAGIC = b"SPWP"
VERSION = 1
MAX_TABLES = 256
FIXED_BYTES = 8                        # magic, version, bits, prob_bits, ntables - 1
DEFAULT_TABLES = 32
DEFAULT_PROB_BITS = 12
FIT_ITERATIONS = 20


@dataclasses.dataclass(frozen=True, eq=False)
class Prior:
    """A validated prior. Build one with ``fit_prior`` or ``Prior.from_bytes`` / ``Prior.load``."""

    bits: int                        # symbols in [0, 2**bits)
    prob_bits: int                   # every table sums to 2**prob_bits
    channels: int                    # C of the (outer, C, inner) view the codec codes
    inner: int
    table_map: np.ndarray            # uint8 (C * inner,): the table of each position, c * inner + i
    freqs: np.ndarray                # uint32 (T, 2**bits), every frequency >= 1
    data: bytes                      # the serialized form (FORMAT.md section 10)
    cache: dict = dataclasses.field(default_factory=dict, repr=False)   # engines' derived tables

    @property
    def id(self) -> int:
        """The 32-bit id a blob names: the CRC-32C trailer of the serialized prior."""
        return int.from_bytes(self.data[-_container.CRC_BYTES:], "little")

    @property
    def ntables(self) -> int:
        return int(self.freqs.shape[0])

    @property
    def positions(self) -> int:
        return self.channels * self.inner

    def to_bytes(self) -> bytes:
        return self.data

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.data)
        return path

    @classmethod
    def load(cls, path: str | Path, *, max_positions: int = _container.DEFAULT_MAX_ELEMENTS) -> "Prior":
        return cls.from_bytes(Path(path).read_bytes(), max_positions=max_positions)

    @classmethod
    def from_bytes(cls, data, *, max_positions: int = _container.DEFAULT_MAX_ELEMENTS) -> "Prior":
        return parse(data, max_positions)

    @functools.cached_property
    def cost_q(self) -> int:
        """Expected cost of one sample in the planner's fixed point (bits << Q): what the stream
        count is chosen from (``_planner.choose_streams``), the same integer on every engine."""
        return int(self._table_cost_q[self.table_map.astype(np.int64)].sum())

    @functools.cached_property
    def _table_cost_q(self) -> np.ndarray:
        f = self.freqs.astype(np.int64)
        per_symbol = (self.prob_bits << _planner.Q) - _planner.LOG2Q[f]      # -log2(f / M), fixed point
        return (f * per_symbol).sum(axis=1) >> self.prob_bits

    def check(self, bits: int, channels: int, inner: int, what: str = "channels of {} elements") -> None:
        """Raise ``InputError`` unless tensors of this view can be coded with the prior (``what``
        names the view's units: a transform's are "blocks of {} coefficients")."""
        if (bits, channels, inner) != (self.bits, self.channels, self.inner):
            raise InputError(
                f"the prior (id {self.id:#010x}) was fitted for {self.bits}-bit symbols on {self.channels} "
                f"{what.format(self.inner)}; this tensor is {channels} {what.format(inner)} at {bits} bits: "
                "fit a prior on tensors of this split point with this config (codec_cupy.fit_prior)")

    def __repr__(self) -> str:
        return (f"Prior(id={self.id:#010x}, bits={self.bits}, channels={self.channels}, inner={self.inner}, "
                f"tables={self.ntables}, prob_bits={self.prob_bits})")


# --------------------------------------------------------------------------------------------
# bytes
# --------------------------------------------------------------------------------------------

def build(bits: int, prob_bits: int, channels: int, inner: int, table_map, freqs) -> Prior:
    """Serialize a model (FORMAT.md section 10) and return it as a ``Prior``; ``parse`` of the
    bytes gives the same prior back."""
    freqs = np.asarray(freqs, np.int64)
    table_map = np.asarray(table_map, np.int64)
    ntables = freqs.shape[0]
    out = bytearray(MAGIC)
    out += bytes((VERSION, bits, prob_bits, ntables - 1))
    put_uvarint(out, channels)
    put_uvarint(out, inner)
    if ntables > 1:
        width = _container.table_map_width(ntables)
        buf = np.zeros(-(-table_map.size * width // 8) + 8, np.uint8)
        out += buf[:_container._put_fields(buf, 0, table_map, width)].tobytes()
    tables = np.zeros(tc.max_tables_bytes(ntables, freqs.shape[1]), np.uint8)
    out += tables[:tc.write_tables(freqs, tables)].tobytes()
    out += crc32c(np.frombuffer(bytes(out), np.uint8)).to_bytes(_container.CRC_BYTES, "little")
    return parse(bytes(out))


def parse(data, max_positions: int = _container.DEFAULT_MAX_ELEMENTS) -> Prior:
    """Validate serialized prior bytes completely; raises ``PriorError`` naming what is wrong."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ConfigError(f"a prior is read from bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < FIXED_BYTES + 2 + _container.CRC_BYTES:
        raise PriorError(f"not a splitwire prior: {len(data)} bytes is shorter than the smallest prior")
    if data[:4] != MAGIC:
        raise PriorError(f"not a splitwire prior: magic {data[:4]!r}, expected {MAGIC!r}")
    if data[4] != VERSION:
        raise PriorError(f"prior format version {data[4]} is not supported (this codec reads version {VERSION}); "
                         "upgrade splitwire or refit the prior")
    body_end = len(data) - _container.CRC_BYTES
    stored = int.from_bytes(data[body_end:], "little")
    actual = crc32c(np.frombuffer(data, np.uint8)[:body_end])
    if stored != actual:
        raise PriorError(f"prior CRC32C mismatch (stored {stored:#010x}, computed {actual:#010x}): the file is damaged")
    bits, prob_bits, ntables = data[5], data[6], data[7] + 1
    if not 1 <= bits <= 8:
        raise PriorError(f"prior: bits={bits} out of range 1..8")
    if not _container.MIN_PROB_BITS <= prob_bits <= _container.MAX_PROB_BITS:
        raise PriorError(f"prior: prob_bits={prob_bits} out of range "
                         f"{_container.MIN_PROB_BITS}..{_container.MAX_PROB_BITS}")
    r = ByteReader(memoryview(data), FIXED_BYTES, body_end)
    try:
        channels = r.uvarint("prior channels")
        inner = r.uvarint("prior inner")
    except (PriorError, ValueError) as exc:
        raise PriorError(f"prior: {exc}") from None
    positions = channels * inner
    if positions < 1:
        raise PriorError(f"prior: {channels} channels of {inner} elements: a prior covers at least one position")
    if positions > max_positions:
        raise PriorError(f"prior: {positions} positions exceed max_positions={max_positions}")
    if ntables > positions:
        raise PriorError(f"prior: {ntables} tables for {positions} positions (at most one table per position)")
    arr = np.frombuffer(data, np.uint8)
    if ntables > 1:
        width = _container.table_map_width(ntables)
        nbytes = -(-positions * width // 8)
        if r.pos + nbytes > body_end:
            raise PriorError("prior truncated inside the table map")
        try:
            table_map = _container.unpack_fields(memoryview(data)[r.pos:r.pos + nbytes], positions, width,
                                                 "prior table map")
        except ValueError as exc:
            raise PriorError(str(exc)) from None
        if np.any(table_map >= ntables):
            raise PriorError(f"prior: the table map names a table >= ntables={ntables}")
        r.pos += nbytes
    else:
        table_map = np.zeros(positions, np.int64)
    freqs = np.zeros((ntables, 1 << bits), np.int64)
    err, pos = tc.read_tables(arr, r.pos, body_end, ntables, 1 << bits, prob_bits, freqs)
    if err != tc.OK:
        raise PriorError({tc.ERR_TRUNCATED: "prior truncated inside the frequency tables",
                          tc.ERR_SUM: "prior: a frequency table does not sum to 2**prob_bits"}.get(
                              err, "prior: malformed frequency tables"))
    if pos != body_end:
        raise PriorError(f"prior: {body_end - pos} bytes after the tables")
    if np.any(freqs == 0):
        raise PriorError("prior: a frequency is 0 (every symbol must be codable at every position)")
    return Prior(bits=bits, prob_bits=prob_bits, channels=channels, inner=inner,
                 table_map=table_map.astype(np.uint8), freqs=freqs.astype(np.uint32), data=data)


# --------------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------------

_COUNT_BATCH = 1 << 22                      # symbols counted per np.bincount call in fit_prior


def fit_prior(samples, config: CodecConfig | None = None, *, tables: int = DEFAULT_TABLES,
              prob_bits: int = DEFAULT_PROB_BITS, engine: str = "auto") -> Prior:
    """Fit a prior on ``samples`` (tensors shaped like the ones to be encoded with ``config``).

    Each sample is quantized exactly as ``encode(x, config, prior=...)`` will quantize it, each
    position's symbol counts are summed over the samples, and the positions are clustered into at
    most ``tables`` tables (Lloyd's iterations on the cross-entropy, started from quantiles of
    each position's mean symbol). Every symbol keeps a frequency of at least 1, so any tensor of
    the same view can be coded. More samples than positions per table give a steadier prior; the
    returned prior is what ``encode`` and ``decode`` need (``Prior.save`` / ``Prior.load``). With
    ``transform="dct"`` the positions are a sample's DCT blocks x frequencies (FORMAT.md section 9).
    ``engine`` quantizes the samples: a host engine ("auto": the fastest here); the engines make the
    same symbols, so every engine fits the same prior.
    """
    from . import _encoder
    from .api import host_engine

    config = CodecConfig() if config is None else config
    if not isinstance(config, CodecConfig):
        raise ConfigError(f"config must be a CodecConfig, got {type(config).__name__}")
    if not 1 <= int(tables) <= MAX_TABLES:
        raise ConfigError(f"tables={tables} out of range 1..{MAX_TABLES}")
    if not _container.MIN_PROB_BITS <= int(prob_bits) <= _container.MAX_PROB_BITS:
        raise ConfigError(f"prob_bits={prob_bits} out of range {_container.MIN_PROB_BITS}.."
                          f"{_container.MAX_PROB_BITS}")
    quantizer = host_engine(engine, "fit_prior")
    alphabet = 1 << config.bits
    counts = view = rows = None
    pending: list[np.ndarray] = []          # flat (position, symbol) indices not yet counted
    for x in samples:
        q, (_, *shape) = _encoder.prior_symbols(quantizer, _encoder.as_float32(x)[0], config)
        if view is None:
            view = tuple(shape)
            counts = np.zeros(view[0] * view[1] * alphabet, np.int64)
            rows = np.repeat(np.arange(q.shape[0], dtype=np.int64) * alphabet, q.shape[1])
        elif tuple(shape) != view:
            raise InputError(f"fit_prior: every sample must have the same view; got {tuple(shape)} after {view}")
        pending.append(rows + q.reshape(-1))
        # One bincount per batch of samples, not per sample: the counts array (positions x alphabet,
        # megabytes for a DCT view at 8 bits) is then swept once per batch instead of once per sample.
        if len(pending) * rows.size >= _COUNT_BATCH:
            counts += np.bincount(np.concatenate(pending), minlength=counts.size)
            pending = []
    if counts is None:
        raise ConfigError("fit_prior needs at least one sample")
    if pending:
        counts += np.bincount(np.concatenate(pending), minlength=counts.size)
    counts = counts.reshape(view[0] * view[1], alphabet)
    table_map, probs = _cluster(counts, min(int(tables), counts.shape[0]))
    freqs = np.stack([_frequencies(p, int(prob_bits)) for p in probs])
    return build(config.bits, int(prob_bits), view[0], view[1], table_map, freqs)


def _cluster(counts: np.ndarray, ntables: int) -> tuple[np.ndarray, np.ndarray]:
    """(table of each position, (T, A) probabilities): positions grouped so that coding each with
    its group's pooled distribution costs the fewest bits on the counts."""
    positions, alphabet = counts.shape
    c = counts.astype(np.float64)
    n = c.sum(axis=1)
    mean = (c @ np.arange(alphabet)) / np.maximum(n, 1)
    order = np.lexsort((np.arange(positions), mean))
    assign = np.empty(positions, np.int64)
    assign[order] = np.arange(positions) * ntables // positions           # quantiles of the mean symbol
    for _ in range(FIT_ITERATIONS):
        probs = _pooled(c, assign, ntables)
        cost = c @ -np.log2(probs).T                                       # (positions, T) bits
        new = np.argmin(cost, axis=1)
        if np.array_equal(new, assign):
            break
        assign = new
    used = np.unique(assign)                                               # drop empty tables
    remap = np.zeros(ntables, np.int64)
    remap[used] = np.arange(used.size)
    assign = remap[assign]
    return assign, _pooled(c, assign, used.size)


def _pooled(c: np.ndarray, assign: np.ndarray, ntables: int) -> np.ndarray:
    """Each table's distribution: its positions' counts pooled, plus half a count per symbol."""
    # Sum the rows of each table: a 0/1 membership matrix times the counts (exact: integer counts
    # far below 2**53; np.add.at does the same but an order of magnitude slower).
    member = np.zeros((ntables, c.shape[0]))
    member[assign, np.arange(c.shape[0])] = 1.0
    sums = member @ c
    sums += 0.5
    return sums / sums.sum(axis=1, keepdims=True)


def _frequencies(p: np.ndarray, prob_bits: int) -> np.ndarray:
    """Integer frequencies >= 1 summing to 2**prob_bits, close to ``p`` * 2**prob_bits."""
    total = 1 << prob_bits
    f = np.maximum(1, np.floor(p * total)).astype(np.int64)
    while f.sum() != total:
        if f.sum() < total:                 # the largest remainders first
            rem = p * total - f
            f[int(np.argmax(rem))] += 1
        else:                               # take from the largest frequency that stays >= 1
            i = int(np.argmax(f))
            f[i] -= 1
    return f

