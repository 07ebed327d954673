"""The cpu engine's encoder front end: quantize, find the zero channels, plan and rANS-code the
symbols of one (outer, C, inner) view in a single compiled call.

``_encoder`` drives the other engines step by step (quantize, histograms, ``_planner.plan``,
``rans_encode``), with Python in between. On a single image's features (31-47 K elements) that
Python (argument lists, NumPy calls on C-sized arrays, a dozen Numba dispatches) was 15-20 % of
the cpu engine's encode (docs/BENCH_CODEC.md). These functions run the same kernels and the same planner
functions in the same order, so the bytes are the reference's (the engine-equivalence tests check
it); only the glue between them is compiled.
"""

from __future__ import annotations

import numpy as np

from . import _planner
from ._jit import njit

try:
    from numba.typed import List as _List
except ImportError:  # pragma: no cover - without Numba the functions run as plain Python
    _List = list

_NO_THRESHOLDS = np.zeros(0, np.float32)             # the uniform quantizer
_NO_SCALE = np.ones(1, np.float32)                   # ECSQ: levels, no scale


def quantize_and_code(xv, params, bits: int, sparse: str, settings):
    """Engine entry (see ``_encoder._encode_view``): (q, zero symbols, |q - zero| sums, zero-channel
    candidates, use the mask?, (pack, table map, freqs, prob_bits, stream bytes, words per stream))."""
    thresholds = _NO_THRESHOLDS if params.thresholds is None else params.thresholds          # float32
    scale = _NO_SCALE if params.scale is None else params.scale                               # float32
    q, zsym, absdev, zero, use_mask, coding = _quantize_and_code(
        xv, scale, np.asarray(params.zero_point, np.int64), thresholds, bits,
        _planner.SPARSE_CODES[sparse], *_plan_args(settings))
    return q, zsym, absdev, zero, bool(use_mask), _bytes(coding)


def code(q, coded, zsym, absdev, bits: int, settings):
    """Engine entry: plan and code the ``coded`` channels of quantized symbols (``_encoder._code``)."""
    return _bytes(_code(q, coded, zsym, absdev, bits, *_plan_args(settings)))


def _plan_args(settings):
    return (settings.ks, settings.tables, settings.tables_auto, settings.first_bits, settings.walk_bits,
            settings.min_bits, settings.max_bits, _planner.LOG2Q, settings.slack_ppm, settings.overhead_ppm,
            settings.fixed_streams)


def _bytes(coding):
    k, tmap, freqs, prob_bits, words, nwords = coding
    return int(k), tmap, freqs, int(prob_bits), words.astype("<u2", copy=False).view(np.uint8), nwords


@njit
def _per_channel(values, channels, out):
    """``_quantizer.per_channel`` into ``out``: (C,) or one per-tensor value broadcast."""
    for c in range(channels):
        out[c] = values[c] if values.shape[0] == channels else values[0]
    return out


@njit
def _code(q, coded, zsym, absdev, bits, ks, tables, tables_auto, first_bits, walk_bits, min_bits, max_bits,
         log2q, slack_ppm, overhead_ppm, fixed_streams):
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
    for k in ks:
        if k == kbig:
            hists.append(big)
        else:
            h = np.zeros((nrows, np.int64(1) << (k * bits)), np.int64)
            _cpu._marginal(big, kbig, k, bits, coded, zsym, length, h, rows)
            hists.append(h)
    ki, t, prob_bits, cost, tmap, freqs = _planner.plan(hists, row, order, ncoded, channels, tried, first_bits,
                                                        walk_bits, min_bits, max_bits, log2q, slack_ppm)
    k = ks[ki]
    nstreams = _planner.choose_streams(ncoded * ((length + k - 1) // k), cost, overhead_ppm, fixed_streams)
    tsel = np.empty(ncoded, np.int64)
    for j in range(ncoded):
        tsel[j] = tmap[coded[j]]
    words, nwords = _cpu._encode_streams(q, coded, tsel, zsym, k, bits, freqs, prob_bits, nstreams,
                                         values if k == kbig else values[:0])
    return k, tmap, freqs, prob_bits, words, nwords


@njit
def _quantize_and_code(xv, scale, zero_point, thresholds, bits, sparse, ks, tables, tables_auto, first_bits,
                      walk_bits, min_bits, max_bits, log2q, slack_ppm, overhead_ppm, fixed_streams):
    """Quantize (``_cpu._quantize_uniform`` or ``_quantize_thresholds``), ``_planner.zero_channels``
    and ``_code``: (q, zero symbols, |q - zero| sums, zero-channel candidates, use the mask?, then
    ``_code``'s tuple).
    ``thresholds`` non-empty: the ECSQ quantizer, else the uniform one."""
    outer, channels, inner = xv.shape
    length = outer * inner
    q = np.empty((channels, length), np.uint8)
    nonzero = np.zeros(channels, np.int64)
    absdev = np.zeros(channels, np.int64)
    zsym = _per_channel(zero_point, channels, np.empty(channels, np.int64))
    if thresholds.shape[0] > 0:
        _cpu._quantize_thresholds(xv, thresholds, zsym[0], q, nonzero, absdev)
    else:
        scales = _per_channel(scale, channels, np.empty(channels, np.float32))
        _cpu._quantize_uniform(xv, scales, zsym, (1 << bits) - 1, q, nonzero, absdev)
    zero, coded, use_mask = _planner.zero_channels(nonzero, length, sparse)
    coding = _code(q, coded, zsym, absdev, bits, ks, tables, tables_auto, first_bits, walk_bits, min_bits,
                  max_bits, log2q, slack_ppm, overhead_ppm, fixed_streams)
    return q, zsym, absdev, zero, use_mask, coding


# Last: ``_cpu`` imports this module's entries at its end, so either module may be imported first;
# the compiled functions above look ``_cpu``'s kernels up when they are first compiled.
from . import _cpu  # noqa: E402
