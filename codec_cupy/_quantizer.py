"""Choosing quantizer parameters (scale/zero point, clipping, ECSQ levels).

This is encoder policy, shared by every engine so their bytes agree: it runs in NumPy (float64)
on exact statistics (min/max) or on a deterministic subsample, and its outputs are rounded to the
float32/bf16 values that travel in the header. Applying the parameters (``x -> q``) is the engines'
job and is specified exactly in FORMAT.md section 2.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._jit import njit

F32_TINY = float(np.finfo(np.float32).tiny)          # 2**-126, also a bf16 value
BF16_MAX = float(np.uint32(0x7F7F0000).view(np.float32))
SAMPLE_PER_ROW = 4096                                  # subsample size for clipping / ECSQ design
SAMPLE_TOTAL = 1 << 16
ECSQ_ITERATIONS = 30
ECSQ_MIN_GAP = 0.05                                   # of the uniform step
MSE_GRID = np.linspace(0.25, 1.0, 31)                 # candidate clip fractions of the range


@dataclasses.dataclass
class QuantParams:
    """What the encoder applies and the header carries."""

    scale: np.ndarray | None        # float32 (1,) or (C,)
    zero_point: np.ndarray          # int64 (1,) or (C,) -- the zero symbol for ECSQ
    levels: np.ndarray | None = None       # float32 (2**bits,)
    thresholds: np.ndarray | None = None   # float32 (2**bits - 1,)

    def zero_symbols(self, channels: int) -> np.ndarray:
        """The symbol of 0.0 in each channel (padding and zero-mask value)."""
        return per_channel(self.zero_point, channels, np.int64)


def per_channel(values: np.ndarray, channels: int, dtype) -> np.ndarray:
    """(C,) contiguous ``dtype`` copy of per-channel or per-tensor (1,) parameters (np.full: a
    per-tensor value costs a fraction of what np.broadcast_to does on small tensors)."""
    values = np.asarray(values)
    if values.shape[0] == channels:
        return np.array(values, dtype)
    return np.full(channels, values[0], dtype)


@njit
def tensor_scale_zero(lo: float, hi: float, bits: int) -> tuple:
    """``uniform_params`` for one per-tensor range, compiled: (float32 scale, int64 zero point) by
    the same float64 operations, float32 rounding and round-half-even, without a dozen NumPy calls
    on 1-element arrays (small tensors pay for each), and callable from the cpu engine's encoder."""
    qmax = (1 << bits) - 1
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = hi - lo
    scale = np.float32(min(max(span / qmax if span > 0 else 1.0, F32_TINY), BF16_MAX))
    zero = min(max(np.int64(np.rint(-lo / np.float64(scale))), 0), qmax)
    return scale, zero


def uniform_params(lo: np.ndarray, hi: np.ndarray, bits: int, per_channel: bool) -> QuantParams:
    """Scale/zero point covering [min(lo, 0), max(hi, 0)] so that 0.0 is exactly representable."""
    qmax = (1 << bits) - 1
    lo = np.minimum(np.asarray(lo, np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, np.float64), 0.0)
    span = hi - lo
    scale64 = np.where(span > 0, span / qmax, 1.0)
    scale = np.clip(scale64, F32_TINY, BF16_MAX).astype(np.float32)
    if per_channel:
        scale = round_up_bf16(scale)
    zero = np.clip(np.rint(-lo / scale.astype(np.float64)), 0, qmax).astype(np.int64)
    return QuantParams(scale=np.atleast_1d(scale), zero_point=np.atleast_1d(zero))


def frequency_steps(step: float, block: int, weight: float) -> np.ndarray:
    """(B*B,) float64: step * (1 + weight * (u + v)) for frequency u*B + v."""
    u, v = np.divmod(np.arange(block * block), block)
    return step * (1.0 + weight * (u + v))


def transform_params(lo: np.ndarray, hi: np.ndarray, step, bits: int) -> QuantParams:
    """Per-frequency scale/zero point for DCT coefficients. Every frequency gets the same zero point,
    the middle symbol 2**(bits-1) (at 1 bit: its range's), so that their symbol distributions line up
    and the channel-group tables fit them all; the scale is the frequency's ``step`` (a scalar or one
    per frequency) where its range fits around that zero point, else the smallest that fits (rounded
    up to bf16, so 0.0 stays exact and nothing clips)."""
    qmax = (1 << bits) - 1
    lo = np.minimum(np.asarray(lo, np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, np.float64), 0.0)
    if bits == 1:
        zero64 = None
        scale64 = np.maximum(hi - lo, step)
    else:
        mid = 1 << (bits - 1)
        scale64 = np.maximum(np.maximum(hi / (qmax - mid), -lo / mid), step)
    scale64 = np.where(scale64 > 0, scale64, 1.0)
    scale = round_up_bf16(np.clip(scale64, F32_TINY, BF16_MAX).astype(np.float32))
    if bits == 1:
        zero = np.clip(np.rint(-lo / scale.astype(np.float64)), 0, qmax).astype(np.int64)
    else:
        zero = np.full(scale.shape, mid, np.int64)
    return QuantParams(scale=np.atleast_1d(scale), zero_point=np.atleast_1d(zero))


def round_up_bf16(x: np.ndarray) -> np.ndarray:
    """The smallest bf16 value >= x (positive finite x): a larger step never clips more."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    up = np.where(u & 0xFFFF, (u & 0xFFFF0000) + 0x10000, u)
    return up.astype(np.uint32).view(np.float32)


def subsample_rows(xv: np.ndarray, per_row: int) -> np.ndarray:
    """(outer, C, inner) -> (C, m) evenly strided samples of each channel, float64, deterministic."""
    outer, channels, inner = xv.shape
    rows = np.moveaxis(xv, 1, 0).reshape(channels, outer * inner)
    step = max(1, -(-rows.shape[1] // per_row))
    return rows[:, ::step].astype(np.float64)


def clip_range(xv: np.ndarray, per_channel: bool, clip: str, percentile: float, bits: int):
    """(lo, hi) per channel (C,) or per tensor (1,) for clip='percentile' or 'mse'."""
    rows = subsample_rows(xv, SAMPLE_PER_ROW if per_channel else max(1, SAMPLE_TOTAL // max(1, xv.shape[1])))
    if not per_channel:
        rows = rows.reshape(1, -1)
    if rows.shape[1] == 0:
        return np.zeros(rows.shape[0]), np.zeros(rows.shape[0])
    if clip == "percentile":
        lo = np.percentile(rows, 100.0 - percentile, axis=1)
        hi = np.percentile(rows, percentile, axis=1)
        return lo, hi
    return _mse_clip(rows, bits)


def _mse_clip(rows: np.ndarray, bits: int):
    """Shrink [lo, hi] by the grid factor with the smallest quantize/dequantize MSE, per row."""
    lo0 = np.minimum(rows.min(axis=1), 0.0)
    hi0 = np.maximum(rows.max(axis=1), 0.0)
    qmax = (1 << bits) - 1
    best_err = np.full(rows.shape[0], np.inf)
    best = np.ones(rows.shape[0])
    for alpha in MSE_GRID:
        lo, hi = lo0 * alpha, hi0 * alpha
        step = np.where(hi > lo, (hi - lo) / qmax, 1.0)[:, None]
        zero = np.rint(-lo[:, None] / step)
        q = np.clip(np.rint(rows / step) + zero, 0, qmax)
        err = np.mean(((q - zero) * step - rows) ** 2, axis=1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best = np.where(better, alpha, best)
    return lo0 * best, hi0 * best


def ecsq_params(samples: np.ndarray, lo: float, hi: float, bits: int, lam: float) -> QuantParams:
    """Entropy-constrained scalar quantizer (Chou, Lookabaugh & Gray 1989) for one tensor.

    Minimises D + lam * step**2 * R over thresholds and levels by alternating optimisation, starting
    from the uniform quantizer of [lo, hi]. The level of 0.0 stays pinned at exactly 0.0 so exact
    zeros (ReLU) stay exact, and 0.0 always maps to it.
    """
    qmax = (1 << bits) - 1
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    step = (hi - lo) / qmax if hi > lo else 1.0
    zsym = int(np.clip(np.rint(-lo / step), 0, qmax))
    levels = (np.arange(qmax + 1, dtype=np.float64) - zsym) * step
    x = np.clip(samples.astype(np.float64).ravel(), lo, hi)
    weight = lam * step * step
    thresholds = (levels[:-1] + levels[1:]) / 2
    for _ in range(ECSQ_ITERATIONS if x.size else 0):
        q = np.searchsorted(thresholds, x, side="right")
        counts = np.bincount(q, minlength=qmax + 1).astype(np.float64)
        sums = np.bincount(q, weights=x, minlength=qmax + 1)
        filled = counts > 0
        new_levels = np.where(filled, sums / np.maximum(counts, 1), levels)
        new_levels[zsym] = 0.0
        levels = np.maximum.accumulate(new_levels)        # keep levels ordered
        length = -np.log2(np.maximum(counts, 1.0) / x.size)
        gap = np.maximum(np.diff(levels), ECSQ_MIN_GAP * step)
        shift = weight * (length[1:] - length[:-1]) / (2 * gap)
        # The rate term may move a boundary at most a quarter of the way towards either level:
        # unbounded, a rarely used cell pushes its boundary past its neighbours and the design
        # collapses into a few cells (seen on signed, dense features).
        thresholds = (levels[:-1] + levels[1:]) / 2 + np.clip(shift, -gap / 4, gap / 4)
        thresholds = np.maximum.accumulate(thresholds)
    t32 = thresholds.astype(np.float32)
    # 0.0 must fall in the zero cell: t[zsym - 1] <= 0 < t[zsym]
    t32[:zsym] = np.minimum(t32[:zsym], np.float32(0.0))
    t32[zsym:] = np.maximum(t32[zsym:], np.float32(F32_TINY))
    lv32 = levels.astype(np.float32)
    lv32[zsym] = np.float32(0.0)
    return QuantParams(scale=None, zero_point=np.array([zsym], np.int64), levels=lv32, thresholds=t32)
