"""Encoder pipeline shared by every host engine: input checks, parameters, planning, container.

An engine module supplies the data-parallel steps (``minmax``, ``quantize``, ``histograms``,
``rans_encode``); everything that decides bytes from statistics lives here or in ``_planner``, so
engines cannot disagree on it. For speed, the cpu engine supplies ``encode_view`` (``_cpu_encode``)
instead of the last three: ``_encode_view``'s steps up to the blob's bytes in one compiled call,
calling the same ``_planner`` and ``_container`` functions (zero channels, table counts, the
planner, the stream count, the mask check, the model bytes) as ``_code`` and ``_write``; and
``tensor_range`` with ``encode_tensor``, the same from a flat min/max with the per-tensor
parameters chosen in that call (``encode_array``). For prior blobs it supplies ``encode_prior`` (the
element path in one call) and ``quantize`` with ``encode_positions`` (the transform path) in place
of ``rans_encode``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
from typing import NamedTuple

import numpy as np

from . import _container, _planner, _transform
from ._quantizer import (QuantParams, clip_range, ecsq_params, frequency_steps, subsample_rows, tensor_scale_zero,
                         transform_params, uniform_params)
from .config import AUTO, CodecConfig
from .errors import ConfigError, InputError

PROB_BITS_FIRST = 12
PROB_BITS_LAST = 14                   # larger tables cost more than they save here


def check_input(x) -> np.dtype:
    """The dtype of an encodable tensor (NumPy, CuPy, ...); InputError names what is wrong."""
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise InputError(f"encode expects a NumPy (or CuPy) float array, got {type(x).__name__}")
    dtype = np.dtype(x.dtype)
    if dtype not in _container.DTYPE_CODES:
        raise InputError(f"encode takes float32 or float16 tensors, got {dtype}; convert with .astype(np.float32)")
    if x.ndim > _container.MAX_NDIM:
        raise InputError(f"encode takes at most {_container.MAX_NDIM} dimensions, got {x.ndim}; reshape first")
    return dtype


def as_float32(x) -> tuple[np.ndarray, np.dtype]:
    """The input as a C-contiguous float32 array, and the dtype it came in."""
    dtype = check_input(x)
    return np.asarray(x, dtype=np.float32, order="C"), dtype  # keeps 0-d arrays 0-d


def channel_axis(cfg_axis: int | None, ndim: int) -> int | None:
    """The channel axis the codec uses for this tensor (None: no channel axis)."""
    if cfg_axis is None or ndim == 0:
        return None
    axis = cfg_axis + ndim if cfg_axis < 0 else cfg_axis
    if cfg_axis >= ndim or axis < 0:
        if cfg_axis == 1 and ndim == 1:
            return None                     # the default axis on a vector: no channels
        raise InputError(f"CodecConfig.axis={cfg_axis} is out of range for a {ndim}-d tensor")
    return axis


def view3(shape: tuple[int, ...], axis: int | None) -> tuple[int, int, int]:
    if axis is None:
        return 1, 1, math.prod(shape)
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _min_max_only(cfg: CodecConfig) -> bool:
    """One uniform quantizer from the tensor's min and max: no per-channel ranges, clipping or ECSQ."""
    return cfg.granularity != "channel" and cfg.clip == "none" and cfg.quantizer != "ecsq"


def choose_params(engine, xv, cfg: CodecConfig, to_host=np.asarray) -> QuantParams:
    """Quantizer parameters; ``to_host`` brings a device view to NumPy for the subsampling policies."""
    per_channel = cfg.granularity == "channel"
    lo, hi = engine.minmax(xv)                                      # also rejects NaN/Inf
    if _min_max_only(cfg):
        return _tensor_params(float(lo.min(initial=0.0)), float(hi.max(initial=0.0)), cfg.bits)
    if cfg.clip != "none" or cfg.quantizer == "ecsq":
        xv = to_host(xv)
    if cfg.clip != "none":
        lo, hi = clip_range(xv, per_channel, cfg.clip, cfg.percentile, cfg.bits)
    elif not per_channel:
        lo, hi = np.atleast_1d(lo.min(initial=0.0)), np.atleast_1d(hi.max(initial=0.0))
    if cfg.quantizer == "ecsq":
        samples = subsample_rows(xv, max(1, 65536 // max(1, xv.shape[1])))
        return ecsq_params(samples, lo.min(initial=0.0), hi.max(initial=0.0), cfg.bits, cfg.ecsq_lambda)
    return uniform_params(lo, hi, cfg.bits, per_channel)


def _tensor_params(lo: float, hi: float, bits: int) -> QuantParams:
    """``uniform_params`` for one per-tensor range (``tensor_scale_zero``)."""
    scale, zero = tensor_scale_zero(lo, hi, bits)
    return QuantParams(scale=np.array([scale], np.float32), zero_point=np.array([zero], np.int64))


def pack_candidates(cfg: CodecConfig) -> list[int]:
    if cfg.pack != AUTO:
        return [cfg.pack]
    return [k for k in (1, 2, 4, 8) if k * cfg.bits <= 8]


def encode(engine, x, cfg: CodecConfig) -> bytes:
    x32, dtype = as_float32(x)
    return encode_array(engine, x32, dtype, cfg)


def encode_array(engine, x32, dtype: np.dtype, cfg: CodecConfig, to_host=np.asarray) -> bytes:
    """Encode a validated float32 array that may live on a device (``engine`` knows how to touch it)."""
    if cfg.transform != "none":
        return _encode_transformed(engine, to_host(x32), dtype, cfg)
    axis = channel_axis(cfg.axis, x32.ndim)
    if axis is None and cfg.granularity == "channel":
        cfg = cfg.replace(granularity="tensor")       # no channel axis (a vector): one range, as documented
    shape = tuple(x32.shape)
    xv = x32.reshape(view3(shape, axis))
    fused = getattr(engine, "encode_tensor", None) if _min_max_only(cfg) else None
    if fused is not None:         # the cpu engine: one flat min/max, then parameters to bytes in one call
        lo, hi = engine.tensor_range(xv)                                # also rejects NaN/Inf
        head, shape_field, after_shape, _, qfirst, zwidth, _ = _tensor_frame(dtype, cfg.bits, shape, axis)
        return _container.seal(*fused(xv, lo, hi, cfg.bits, cfg.sparse, _settings(cfg),
                                      (head, shape_field, after_shape, qfirst, zwidth)))
    params = choose_params(engine, xv, cfg, to_host)
    return _encode_view(engine, xv, params, _Frame(dtype, shape, axis, cfg.granularity == "channel"), cfg)


def encode_with_prior(engine, x32, dtype: np.dtype, cfg: CodecConfig, prior, to_host=np.asarray) -> bytes:
    """A version-3 blob (FORMAT.md section 9): the quantizer of ``cfg`` chosen per tensor as always,
    the symbols coded with the tables of ``prior`` position by position; no model in the blob."""
    if cfg.transform != "none":
        return _encode_transformed_prior(engine, to_host(x32), dtype, cfg, prior)
    xv, cfg = coded_view(x32, cfg)
    outer, channels, inner = xv.shape
    prior.check(cfg.bits, channels, inner)
    fused = getattr(engine, "encode_prior", None)
    if fused is not None and _min_max_only(cfg):      # one flat min/max, as ``encode_array``'s fused path
        params = _tensor_params(*engine.tensor_range(xv), cfg.bits)
    else:
        params = choose_params(engine, xv, cfg, to_host)
    axis = channel_axis(cfg.axis, x32.ndim)
    fields = _container.frame_fields(dtype, cfg.bits, tuple(x32.shape), axis, cfg.granularity == "channel",
                                     params.scale, params.zero_point, params.levels, prior_id=prior.id)
    if fused is not None:                             # the cpu engine: the steps below in one compiled call
        overhead, fixed = _stream_settings(cfg)
        return _container.seal(*fused(xv, params, cfg.bits, prior, overhead, fixed, fields))
    return _seal_positions(engine, position_symbols(engine, xv, params, cfg.bits), outer, prior, cfg, fields)


def _encode_transformed_prior(engine, x: np.ndarray, dtype: np.dtype, cfg: CodecConfig, prior) -> bytes:
    """transform="dct" with a prior: the coefficients and per-frequency quantizer of
    ``_encode_transformed``, coded position by position (positions: blocks of a sample x
    frequencies), the quantizer section in its compact form (FORMAT.md section 9)."""
    q, (outer, channels, inner), params, base = _transform_symbols(engine, x, cfg)
    prior.check(cfg.bits, channels, inner, "blocks of {} coefficients")
    fields = _container.frame_fields(dtype, cfg.bits, (), 1, True, params.scale, params.zero_point, None, cfg.block,
                                     tuple(x.shape), prior_id=prior.id, predictor=(base, cfg.frequency_weight))
    return _seal_positions(engine, q, outer, prior, cfg, fields)


def _seal_positions(engine, q, outer: int, prior, cfg: CodecConfig, fields) -> bytes:
    """The version-3 blob of the position-major symbols ``q`` (positions, outer): stream count, rANS
    with each position's table (the cpu engine's compiled ``encode_positions``, else the engine's
    ``rans_encode``), the model bytes of ``fields``."""
    overhead, fixed = _stream_settings(cfg)
    nstreams = int(_planner.choose_streams(q.size, prior.cost_q * outer, overhead, fixed))
    if not nstreams:
        streams, nwords = np.zeros(0, np.uint8), np.zeros(0, np.int64)
    elif hasattr(engine, "encode_positions"):
        streams, nwords = engine.encode_positions(np.ascontiguousarray(q), prior, nstreams)
    else:
        streams, nwords = engine.rans_encode(q, prior.table_map.astype(np.int64), prior.freqs.astype(np.int64),
                                             prior.prob_bits, nstreams)
    return _container.seal(_container.prior_model_bytes(*fields, np.int64(prior.id), np.asarray(nwords, np.int64)),
                           streams)


def _stream_settings(cfg: CodecConfig) -> tuple[int, int]:
    """(stream_overhead in millionths, fixed stream count or 0) of ``cfg``."""
    return int(round(cfg.stream_overhead * 1e6)), 0 if cfg.streams == AUTO else cfg.streams


def prior_symbols(engine, x32, cfg: CodecConfig, to_host=np.asarray) -> tuple:
    """What a prior blob of ``x32`` codes (``fit_prior`` counts them): the position-major symbols
    (positions, outer) and the prior view (outer, C, inner) whose C * inner positions they fill."""
    if cfg.transform != "none":
        q, view, _, _ = _transform_symbols(engine, to_host(x32), cfg)
        return q, view
    xv, cfg = coded_view(x32, cfg)
    return position_symbols(engine, xv, choose_params(engine, xv, cfg, to_host), cfg.bits), xv.shape


def _transform_symbols(engine, x: np.ndarray, cfg: CodecConfig) -> tuple:
    """(position-major symbols, prior view, per-frequency quantizer, the predictor's base) of a
    transform blob coded with a prior: symbol (o, b, f) of sample o, block b of the sample,
    frequency f is at row b * B*B + f (the coded view (P, B*B) read sample by sample)."""
    if cfg.bits < 2:
        raise ConfigError("a prior with transform='dct' needs bits >= 2 (every frequency's zero point is the "
                          "middle symbol 2**(bits-1)); raise bits")
    xv, params, base = _dct_view(engine, x, cfg)
    outer, blocks, freqs = _container.transform_prior_view(tuple(x.shape), cfg.block)
    q = position_symbols(engine, xv, params, cfg.bits)
    q = q.reshape(freqs, outer, blocks).transpose(2, 0, 1).reshape(blocks * freqs, outer)
    return q, (outer, blocks, freqs), params, base


def coded_view(x32, cfg: CodecConfig) -> tuple:
    """The (outer, C, inner) view the codec codes ``x32`` as, and ``cfg`` as it applies to that view
    (without a channel axis, granularity="channel" means one range: per tensor)."""
    axis = channel_axis(cfg.axis, x32.ndim)
    if axis is None and cfg.granularity == "channel":
        cfg = cfg.replace(granularity="tensor")
    return x32.reshape(view3(tuple(x32.shape), axis)), cfg


def position_symbols(engine, xv, params: QuantParams, bits: int):
    """The symbols a prior blob codes for the (outer, C, inner) view (FORMAT.md section 9): each
    quantized symbol relative to its channel's zero symbol, s = (q - z) mod 2**bits, in position-major
    order (C * inner, outer), from the engine's channel-major (C, outer * inner) symbols (the same
    array when outer = 1; a transpose, on the engine's device, otherwise)."""
    outer, channels, inner = xv.shape
    q, _, _ = engine.quantize(xv, params, bits)
    xp = np if isinstance(q, np.ndarray) else importlib.import_module("cupy")
    q = _container.zero_relative(q, params.zero_symbols(channels), bits, xp)
    if outer == 1:
        return q.reshape(channels * inner, 1)
    return q.reshape(channels, outer, inner).transpose(0, 2, 1).reshape(channels * inner, outer)


@functools.lru_cache(maxsize=256)
def _tensor_frame(dtype: np.dtype, bits: int, shape: tuple[int, ...], axis: int | None) -> tuple:
    """``_container.frame_fields`` of a per-tensor uniform quantizer, cached per frame (a stream of
    same-shaped tensors pays for them once). Its scale words and zero points are placeholders: the
    encoder writes its own. Callers must not modify the arrays."""
    return _container.frame_fields(dtype, bits, shape, axis, False, np.ones(1, np.float32), np.zeros(1, np.int64), None)


@dataclasses.dataclass(frozen=True)
class _Frame:
    """What the header says about the coded view besides the quantizer and the model."""

    dtype: np.dtype
    shape: tuple[int, ...]           # of the coded view
    axis: int | None
    per_channel: bool
    block: int = 0                   # DCT block (format version 2), then ``tensor_shape`` is the tensor's
    tensor_shape: tuple[int, ...] = ()


def _encode_transformed(engine, x: np.ndarray, dtype: np.dtype, cfg: CodecConfig) -> bytes:
    """transform="dct": the (P, B*B) DCT coefficients of the maps, one uniform quantizer per frequency
    (its step at least ``cfg.step`` of the tensor's range, times 1 + frequency_weight * (u + v)),
    coded as a per-channel view."""
    xv, params, _ = _dct_view(engine, x, cfg)
    frame = _Frame(dtype, xv.shape[:2], 1, True, cfg.block, tuple(x.shape))
    return _encode_view(engine, xv, params, frame, cfg)


def _dct_view(engine, x: np.ndarray, cfg: CodecConfig) -> tuple:
    """The (P, B*B, 1) DCT coefficients of ``x``, their per-frequency quantizer, and its step
    before the frequency weighting (``cfg.step`` of the tensor's value range)."""
    if x.ndim < 2:
        raise InputError(f"transform='dct' transforms the last two dimensions (the maps); got a {x.ndim}-d "
                         "tensor: reshape it to at least 2 dimensions or use transform='none'")
    lo, hi = engine.minmax(x.reshape(1, 1, -1))                      # also rejects NaN/Inf
    value_range = max(float(hi.max(initial=0.0)), 0.0) - min(float(lo.min(initial=0.0)), 0.0)
    coef = getattr(engine, "forward_transform", _transform.forward)(x, cfg.block)    # same floats either way
    if not np.isfinite(coef).all():
        raise InputError("transform='dct': the DCT coefficients overflow float32 (values near the float32 "
                         "limit); scale the tensor down or use transform='none'")
    xv = coef.reshape(coef.shape[0], coef.shape[1], 1)
    clo, chi = engine.minmax(xv)
    base = cfg.step * value_range
    return xv, transform_params(clo, chi, frequency_steps(base, cfg.block, cfg.frequency_weight), cfg.bits), base


class _Settings(NamedTuple):
    """The planner's search space for one ``CodecConfig`` (arguments of ``_planner.plan``), in the
    order the cpu engine's compiled encoder takes them."""

    ks: np.ndarray                   # pack candidates, increasing
    tables: np.ndarray               # table counts to try (auto: those <= coded channels are tried)
    tables_auto: bool                # else one fixed count, clamped to the coded channels
    first_bits: int
    walk_bits: bool                  # prob_bits="auto": walk from first_bits within min_bits..max_bits
    min_bits: int
    max_bits: int
    log2q: np.ndarray                # _planner.LOG2Q
    slack_ppm: int
    overhead_ppm: int
    fixed_streams: int               # 0: streams="auto"
    full_search: bool                # search="full": every pack through tables and precision


@functools.lru_cache(maxsize=64)
def _settings(cfg: CodecConfig) -> _Settings:
    tables = (1, 2, 4, 8, 16) if cfg.tables == AUTO else (cfg.tables,)
    return _Settings(np.array(pack_candidates(cfg), np.int64), np.array(tables, np.int64), cfg.tables == AUTO,
                     cfg.prob_bits if cfg.prob_bits != AUTO else PROB_BITS_FIRST, cfg.prob_bits == AUTO,
                     _container.MIN_PROB_BITS, PROB_BITS_LAST, _planner.LOG2Q,
                     int(round(cfg.speed_slack * 1e6)), int(round(cfg.stream_overhead * 1e6)),
                     0 if cfg.streams == AUTO else cfg.streams, cfg.search == "full")


class _Coding(NamedTuple):
    """What ``_code`` decided and wrote for the coded channels (``_cpu_encode._code`` returns the same
    fields as a plain tuple, the streams as u16 words)."""

    pack: int
    table_map: np.ndarray            # (C,) table of each channel
    freqs: np.ndarray                # (T, A)
    prob_bits: int
    streams: np.ndarray              # the stream bytes (uint8)
    nwords: np.ndarray               # u16 words per stream


def _encode_view(engine, xv, params: QuantParams, frame: _Frame, cfg: CodecConfig) -> bytes:
    """Quantize the (outer, C, inner) view, then code it with and, where that can be smaller
    (``_planner.mask_may_cost``), without the zero-channel mask. An engine with ``encode_view``
    (cpu) runs these steps up to the blob's bytes in one compiled call, with the same functions."""
    channels = xv.shape[1]
    settings = _settings(cfg)
    fields = _container.frame_fields(frame.dtype, cfg.bits, frame.shape, frame.axis, frame.per_channel, params.scale,
                                     params.zero_point, params.levels, frame.block, frame.tensor_shape)
    fused = getattr(engine, "encode_view", None)
    if fused is not None:
        return _container.seal(*fused(xv, params, cfg.bits, cfg.sparse, settings, fields))
    zsym = params.zero_symbols(channels)
    q, nonzero, absdev = engine.quantize(xv, params, cfg.bits)
    zero, coded, use_mask = _planner.zero_channels(np.asarray(nonzero), xv.shape[0] * xv.shape[2],
                                                   _planner.SPARSE_CODES[cfg.sparse])
    blob = _write(_code(engine, q, coded, zsym, absdev, cfg.bits, settings), use_mask, zero, fields)
    if cfg.sparse == "auto" and use_mask and _planner.mask_may_cost(len(blob), channels):
        everything = np.arange(channels, dtype=np.int64)
        unmasked = _write(_code(engine, q, everything, zsym, absdev, cfg.bits, settings), False, zero, fields)
        if len(unmasked) < len(blob):
            blob = unmasked
    return blob


def _write(coding: _Coding, use_mask: bool, zero, fields: tuple) -> bytes:
    """The blob: ``fields`` (``_container.frame_fields``), the zero mask if ``use_mask``, the model and
    the streams of ``coding``."""
    pack, table_map, freqs, prob_bits, streams, nwords = coding
    model = _container.model_bytes(*fields, use_mask, zero.view(np.uint8), pack, prob_bits, table_map, freqs, nwords)
    return _container.seal(model, streams)


def _code(engine, q, coded, zsym, absdev, bits: int, settings: _Settings) -> _Coding:
    """Plan (``_planner``: the cheapest pack, tables, prob_bits, then the streams) and rANS-code the
    symbols of the ``coded`` channels."""
    channels, length = q.shape
    ncoded = int(coded.size) if length else 0
    if ncoded == 0:                       # nothing to code
        tmap, freqs = _planner.empty_model(channels, bits, settings.min_bits)
        return _Coding(1, tmap, freqs, settings.min_bits, np.empty(0, np.uint8), np.zeros(0, np.int64))
    ks = [int(k) for k in settings.ks]
    tables = _planner.table_counts(settings.tables, settings.tables_auto, ncoded)
    order, bounds, row, _ = _planner.segments(absdev, coded, tables, channels)
    hists = engine.histograms(q, coded, zsym, bits, ks)
    sums = tuple(_planner.segment_sums(np.ascontiguousarray(h, np.int64), order, bounds) for h, _ in hists)
    ki, t, prob_bits, cost, tmap, freqs = _planner.plan(
        sums, row, order, ncoded, channels, tables, settings.first_bits, settings.walk_bits,
        settings.min_bits, settings.max_bits, settings.log2q, settings.slack_ppm, settings.full_search)
    k, packed = ks[ki], hists[ki][1]
    groups = -(-length // k)
    nstreams = int(_planner.choose_streams(ncoded * groups, cost, settings.overhead_ppm, settings.fixed_streams))
    streams, nwords = engine.rans_encode(packed, tmap[coded], freqs, prob_bits, nstreams)
    return _Coding(k, tmap, freqs, prob_bits, streams, nwords)
