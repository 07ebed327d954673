"""The cpu engine's encoder: quantize, find the zero channels, plan, rANS-code the symbols of one
(outer, C, inner) view and write the bytes before the streams, in a single compiled call.

``_encoder`` drives the other engines step by step (quantize, histograms, ``_planner.plan``,
``rans_encode``, ``_container.model_bytes``), with Python in between. On a single image's features
(31-47 K elements) that Python (argument lists, NumPy calls on C-sized arrays, a dozen Numba
dispatches, boxing their results) was a quarter of the cpu engine's encode (docs/BENCH_CODEC.md).
These functions run the same kernels and the same planner and container functions in the same
order, so the bytes are the reference's (the engine-equivalence tests check it); only the glue
between them is compiled.
"""

from __future__ import annotations

import numpy as np

from . import _container, _planner
from ._jit import njit
from ._quantizer import tensor_scale_zero

try:
    from numba.typed import List as _List
except ImportError:  # pragma: no cover - without Numba the functions run as plain Python
    _List = list

_NO_THRESHOLDS = np.zeros(0, np.float32)             # the uniform quantizer
_NO_SCALE = np.ones(1, np.float32)                   # ECSQ: levels, no scale


def encode_view(xv, params, bits: int, sparse: str, settings, fields) -> tuple[np.ndarray, np.ndarray]:
    """Engine entry (``_encoder._encode_view``): the blob's bytes before the streams and the stream
    bytes (uint8), for the quantizer ``params``, the planner's ``settings`` (``_encoder._Settings``)
    and ``fields`` (``_container.frame_fields``)."""
    thresholds = _NO_THRESHOLDS if params.thresholds is None else params.thresholds          # float32
    scale = _NO_SCALE if params.scale is None else params.scale                               # float32
    return _encode_view(xv, scale, params.zero_point, thresholds, bits, _planner.SPARSE_CODES[sparse], *settings,
                        *fields)


def encode_tensor(xv, lo: float, hi: float, bits: int, sparse: str, settings, frame) -> tuple[np.ndarray, np.ndarray]:
    """Engine entry (``_encoder.encode_array``): ``encode_view`` with the per-tensor uniform quantizer of
    the range [lo, hi], its parameters chosen in the same call (``_quantizer.tensor_scale_zero``).
    ``frame``: ``_container.frame_fields`` but for the quantizer words and zero points (head, shape,
    after_shape, first byte, zero point width)."""
    return _encode_tensor(xv, lo, hi, bits, _planner.SPARSE_CODES[sparse], *settings, *frame)


def quantize(xv, params, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Engine entry (``_encoder.position_symbols``): ``_reference.quantize`` compiled, the kernels of
    ``encode_view``: channel-major symbols (C, outer * inner), per-channel nonzero counts and sums
    of |q - z|."""
    thresholds = _NO_THRESHOLDS if params.thresholds is None else params.thresholds
    scale = _NO_SCALE if params.scale is None else params.scale
    q, nonzero, absdev, _ = _quantize_view(xv, scale, params.zero_point, thresholds, bits)
    return q, nonzero, absdev


@njit
def _quantize_view(xv, scale, zero_point, thresholds, bits):
    return _quantize(xv, scale, zero_point, thresholds, bits)


def encode_positions(symbols, prior, nstreams: int) -> tuple[np.ndarray, np.ndarray]:
    """Engine entry (``_encoder._seal_positions``): the stream bytes and words per stream of the
    position-major symbols (positions, outer) uint8, each position coded with its table of
    ``prior``."""
    tsel, freqs = _prior_arrays(prior)
    words, nwords = _code_positions(symbols, tsel, freqs, prior.bits, prior.prob_bits, nstreams)
    return words.view(np.uint8), nwords


@njit
def _code_positions(symbols, tsel, freqs, bits, prob_bits, nstreams):
    """rANS of the position-major symbols (positions, outer) uint8, position p with table tsel[p]:
    the version-1 coding of the (outer, positions, 1) view (FORMAT.md section 9), u16 words and
    words per stream."""
    positions = symbols.shape[0]
    return _cpu._encode_streams(symbols, np.arange(positions), tsel, np.zeros(positions, np.int64), 1, bits, freqs,
                                prob_bits, nstreams, symbols.reshape(symbols.size))


def _prior_arrays(prior) -> tuple[np.ndarray, np.ndarray]:
    """The prior's table map and tables as the compiled coder takes them, built once per prior."""
    cached = prior.cache.get("cpu_encode")
    if cached is None:
        cached = prior.cache["cpu_encode"] = (prior.table_map.astype(np.int64), prior.freqs.astype(np.int64))
    return cached


def encode_prior(xv, params, bits: int, prior, overhead_ppm: int, fixed_streams: int, fields):
    """Engine entry (``_encoder.encode_with_prior``): a version-3 blob's bytes before the streams and
    the stream bytes, for the quantizer ``params`` and ``prior``, in one compiled call."""
    thresholds = _NO_THRESHOLDS if params.thresholds is None else params.thresholds
    scale = _NO_SCALE if params.scale is None else params.scale
    tsel, freqs = _prior_arrays(prior)
    return _encode_prior(xv, scale, params.zero_point, thresholds, bits, tsel, freqs, prior.prob_bits,
                         np.int64(prior.cost_q), overhead_ppm, fixed_streams, *fields, np.int64(prior.id))


@njit
def _encode_prior(xv, scale, zero_point, thresholds, bits, tsel, freqs, prob_bits, cost_q, overhead_ppm,
                  fixed_streams, head, shape, after_shape, qwords, qfirst, zwidth, zero_points, prior_id):
    """``_encoder.encode_with_prior`` compiled: quantize (the kernels of ``_encode_view``), the
    zero-relative symbols in position-major order (FORMAT.md section 9), the stream count, rANS with
    each position's table, the model bytes. Returns (model bytes, stream bytes)."""
    outer, channels, inner = xv.shape
    q, _, _, zsym = _quantize(xv, scale, zero_point, thresholds, bits)
    positions = channels * inner
    qmask = (1 << bits) - 1
    symbols = np.empty((positions, outer), np.uint8)
    for c in range(channels):
        z = zsym[c]
        for o in range(outer):
            for i in range(inner):
                symbols[c * inner + i, o] = np.uint8((np.int64(q[c, o * inner + i]) - z) & qmask)
    total = positions * outer
    nstreams = _planner.choose_streams(total, cost_q * outer, overhead_ppm, fixed_streams)
    words = np.empty(0, np.uint16)
    nwords = np.zeros(0, np.int64)
    if nstreams:
        words, nwords = _code_positions(symbols, tsel, freqs, bits, prob_bits, nstreams)
    model = _container.prior_model_bytes(head, shape, after_shape, qwords, qfirst, zwidth, zero_points, prior_id,
                                         nwords)
    return model, words.view(np.uint8)


@njit(inline="always")
def _quantize(xv, scale, zero_point, thresholds, bits):
    """Symbols (C, outer * inner) of the (outer, C, inner) view with ``_cpu``'s kernels (ECSQ where
    ``thresholds`` is non-empty), per-channel nonzero counts and sums of |q - z|, zero symbols."""
    outer, channels, inner = xv.shape
    q = np.empty((channels, outer * inner), np.uint8)
    nonzero = np.zeros(channels, np.int64)
    absdev = np.zeros(channels, np.int64)
    zsym = _per_channel(zero_point, channels, np.empty(channels, np.int64))
    if thresholds.shape[0] > 0:
        _cpu._quantize_thresholds(xv, thresholds, zsym[0], q, nonzero, absdev)
    elif outer == 1 and inner < _cpu.FLAT_QUANTIZE_BELOW and scale.shape[0] == 1:
        _cpu._quantize_flat(xv, scale[0], zsym[0], (1 << bits) - 1, q, nonzero, absdev)
    else:
        scales = _per_channel(scale, channels, np.empty(channels, np.float32))
        _cpu._quantize_uniform(xv, scales, zsym, (1 << bits) - 1, q, nonzero, absdev)
    return q, nonzero, absdev, zsym


@njit
def _per_channel(values, channels, out):
    """``_quantizer.per_channel`` into ``out``: (C,) or one per-tensor value broadcast."""
    for c in range(channels):
        out[c] = values[c] if values.shape[0] == channels else values[0]
    return out


@njit
def _code(q, coded, zsym, absdev, bits, ks, tables, tables_auto, first_bits, walk_bits, min_bits, max_bits,
         log2q, slack_ppm, overhead_ppm, fixed_streams, full_search):
    """``_encoder._code``: the planner, then ``rans_encode``: (pack, table map, freqs, prob_bits, stream
    words (u16), words per stream)."""
    channels, length = q.shape
    ncoded = coded.shape[0] if length else 0
    if ncoded == 0:                                   # nothing to code
        tmap, freqs = _planner.empty_model(channels, bits, min_bits)
        return 1, tmap, freqs, min_bits, np.empty(0, np.uint16), np.zeros(0, np.int64)
    tried = _planner.table_counts(tables, tables_auto, ncoded)
    order, bounds, row, rows = _planner.segments(absdev, coded, tried, channels)
    nrows = bounds.shape[0] - 1
    kbig = ks[ks.shape[0] - 1]                        # candidates come in increasing k
    big = np.zeros((nrows, np.int64(1) << (kbig * bits)), np.int64)
    values = np.empty(ncoded * ((length + kbig - 1) // kbig), np.uint8)
    _cpu._histogram(q, coded, zsym, bits, kbig, big, rows, values)
    hists = _List()
    for _ in ks:
        hists.append(big)
    for i in range(ks.shape[0] - 2, -1, -1):          # each from the next larger candidate (k from 2k:
        k = ks[i]                                     # the halves of one value, a vectorized sum)
        h = np.zeros((nrows, np.int64(1) << (k * bits)), np.int64)
        _cpu._marginal(hists[i + 1], ks[i + 1], k, bits, coded, zsym, length, h, rows)
        hists[i] = h
    ki, t, prob_bits, cost, tmap, freqs = _planner.plan(hists, row, order, ncoded, channels, tried, first_bits,
                                                        walk_bits, min_bits, max_bits, log2q, slack_ppm, full_search)
    k = ks[ki]
    nstreams = _planner.choose_streams(ncoded * ((length + k - 1) // k), cost, overhead_ppm, fixed_streams)
    tsel = np.empty(ncoded, np.int64)
    for j in range(ncoded):
        tsel[j] = tmap[coded[j]]
    words, nwords = _cpu._encode_streams(q, coded, tsel, zsym, k, bits, freqs, prob_bits, nstreams,
                                         values if k == kbig else values[:0])
    return k, tmap, freqs, prob_bits, words, nwords


@njit
def _encode_view(xv, scale, zero_point, thresholds, bits, sparse, ks, tables, tables_auto, first_bits, walk_bits,
                 min_bits, max_bits, log2q, slack_ppm, overhead_ppm, fixed_streams, full_search, head, shape, after_shape,
                 qwords, qfirst, zwidth, zero_points):
    """``_encoder._encode_view``: quantize (``_cpu._quantize_uniform``, or ``_quantize_thresholds``
    where ``thresholds`` is non-empty: ECSQ), ``_planner.zero_channels``, ``_code``, the model
    bytes, and the blob without the zero mask where ``_planner.mask_may_cost`` says so. Returns
    (model bytes, stream bytes)."""
    outer, channels, inner = xv.shape
    length = outer * inner
    q, nonzero, absdev, zsym = _quantize(xv, scale, zero_point, thresholds, bits)
    zero, coded, use_mask = _planner.zero_channels(nonzero, length, sparse)
    mask = zero.view(np.uint8)
    coding = _code(q, coded, zsym, absdev, bits, ks, tables, tables_auto, first_bits, walk_bits, min_bits,
                   max_bits, log2q, slack_ppm, overhead_ppm, fixed_streams, full_search)
    model = _model(coding, use_mask, mask, head, shape, after_shape, qwords, qfirst, zwidth, zero_points)
    streams = coding[4].view(np.uint8)
    blob_bytes = model.shape[0] + streams.shape[0] + _container.CRC_BYTES
    if sparse == _planner.SPARSE_AUTO and use_mask and _planner.mask_may_cost(blob_bytes, channels):
        coding = _code(q, np.arange(channels), zsym, absdev, bits, ks, tables, tables_auto, first_bits, walk_bits,
                       min_bits, max_bits, log2q, slack_ppm, overhead_ppm, fixed_streams, full_search)
        unmasked = _model(coding, False, mask, head, shape, after_shape, qwords, qfirst, zwidth, zero_points)
        words = coding[4].view(np.uint8)
        if unmasked.shape[0] + words.shape[0] < model.shape[0] + streams.shape[0]:
            return unmasked, words
    return model, streams


@njit
def _encode_tensor(xv, lo, hi, bits, sparse, ks, tables, tables_auto, first_bits, walk_bits, min_bits, max_bits, log2q,
                   slack_ppm, overhead_ppm, fixed_streams, full_search, head, shape, after_shape, qfirst, zwidth):
    """``encode_tensor``: the scale and zero point of [lo, hi], then ``_encode_view``."""
    scale, zero = tensor_scale_zero(lo, hi, bits)
    scales = np.full(1, scale, np.float32)
    zeros = np.full(1, zero, np.int64)
    return _encode_view(xv, scales, zeros, _NO_THRESHOLDS, bits, sparse, ks, tables, tables_auto, first_bits, walk_bits,
                        min_bits, max_bits, log2q, slack_ppm, overhead_ppm, fixed_streams, full_search, head, shape,
                        after_shape, scales.view(np.uint32), qfirst, zwidth, zeros)


@njit
def _model(coding, use_mask, mask, head, shape, after_shape, qwords, qfirst, zwidth, zero_points):
    k, tmap, freqs, prob_bits, words, nwords = coding
    return _container.model_bytes(head, shape, after_shape, qwords, qfirst, zwidth, zero_points, use_mask, mask, k,
                                  prob_bits, tmap, freqs, nwords)


# Last: ``_cpu`` imports this module's entries at its end, so either module may be imported first;
# the compiled functions above look ``_cpu``'s kernels up when they are first compiled.
from . import _cpu  # noqa: E402
