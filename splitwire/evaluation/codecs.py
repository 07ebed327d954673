"""The codecs a sweep compares, behind one interface.

A codec is built for one feature layout (:class:`FeatureInfo`: the shape of one sample's tensor,
batch dimension of 1 included, and its channel axis) and codes ONE sample at a time, as a deployed
edge device does: ``encode(x) -> bytes`` with everything the receiver needs beyond the layout
(headers, side information) inside the bytes, ``decode(bytes) -> x``. The rate of a point is
``len(bytes)`` averaged over samples.

Registry (``type:`` in the YAML):

* ``splitwire``: codec_cupy (uniform/ECSQ, per tensor/channel, clipping; ``transform: dct`` with ``block``,
  ``frequency_weight`` and ``step``, the step being the sweep axis of its line), one blob per sample.
  ``prior: 2fold`` codes with a shared prior (``codec_cupy.fit_prior``, ``prior_tables`` tables): the
  samples are split into two folds (even and odd indices) and each is coded with the prior fitted on
  the other fold, so no sample is coded with a prior that has seen it; the prior itself, held by both
  ends, is not counted in the rate. ``pca: f`` (a fraction of the channels, in (0, 1]) codes the
  first ceil(f * C) principal components of the channels instead of the channels
  (``splitwire.projection``, the projection ``export --components`` folds into the head and the
  tail), fitted on the other fold like a prior (a prior then is fitted on that fold's projected
  features); the reconstruction is clamped at 0 where the fitted features were all >= 0. The
  projection (C x K floats), held by both ends, is not counted in the rate either. With
  ``projection: fisher`` it is the PCA of the channels whitened by the split's tail's Fisher
  information (``splitwire.projection.channel_fisher``: gradients of the tail's loss at its own top-1,
  no labels), fitted on the other fold too; the runner hands the tail over in ``FeatureInfo.fisher``.
* ``float32`` / ``float16``: raw little-endian values.
* ``int8``: per-tensor min-max to uint8 + 8-byte (min, max) header, then ``zstd`` (level 3) or ``lz4``
  (frame); ``entropy: none`` sends the bytes as they are.
* ``png`` / ``jpeg`` / ``webp`` / ``hevc``: the channel maps tiled into one near-square gray image,
  min-max quantized to 8 bits (the 8-byte min/max header is counted), then coded by Pillow
  (PNG lossless, JPEG and WebP at a quality) or by x265 through PyAV (one intra frame at a QP,
  the way Cohen, Choi & Bajic 2021 code tiled channels with HEVC).
"""

from __future__ import annotations

import copy
import io
import itertools
import math
import struct
from dataclasses import dataclass, field

import numpy as np

from ..projection import WEIGHTINGS, channel_fisher, components_for, fit_projection
from .forking import fork_map

__all__ = ["FeatureInfo", "Codec", "CODECS", "make_codec", "expand_codec_entry", "tile", "untile",
           "hevc_available"]


@dataclass(frozen=True)
class FeatureInfo:
    shape: tuple[int, ...]     # one sample, batch dim (1) included, e.g. (1, 112, 14, 14)
    channel_axis: int = 1
    fisher: "FoldFisher | None" = field(default=None, compare=False)   # the split's tail, for projection: fisher

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape))


class Codec:
    """Base class: subclasses set ``type`` and implement encode/decode of one sample."""

    type = ""
    lossless = False

    def __init__(self, params: dict, feature: FeatureInfo):
        self.params = dict(params)
        self.feature = feature

    def encode(self, x: np.ndarray) -> bytes:
        raise NotImplementedError

    def decode(self, blob: bytes) -> np.ndarray:
        raise NotImplementedError

    def prepare(self, features: np.ndarray, workers: int = 1) -> None:
        """Called once with every sample of the point (N, ...) before any is coded; ``workers``:
        how many processes it may fork for fitting."""

    def for_sample(self, index: int) -> "Codec":
        """The codec that codes sample ``index`` (a codec fitted on other samples may differ)."""
        return self


class FoldFisher:
    """The channel Fisher information of one split's tail (``projection.channel_fisher``) on each
    fold of the split's samples, computed on first use and shared by the split's points: a point
    with ``projection: fisher`` fits fold f's projection with the Fisher of the other fold."""

    def __init__(self, tail, features: np.ndarray, channel_axis: int, batch: int = 256):
        self._tail, self._features, self._axis, self._batch = tail, features, channel_axis, batch
        self._folds: dict[int, np.ndarray] = {}

    def of_fold(self, fold: int, features: np.ndarray) -> np.ndarray:
        """(C, C) on ``features[fold::2]``; ``features`` must be the samples this was built with."""
        if features is not self._features and not np.array_equal(features, self._features):
            raise ValueError("FoldFisher: these are not the samples its tail's Fisher was built for")
        if fold not in self._folds:
            self._folds[fold] = channel_fisher(self._tail, self._features[fold::2], self._axis % self._features.ndim,
                                               self._batch)
        return self._folds[fold]


# A fold's fit runs in a forked process only from this many feature elements on (both folds
# together): below it, a fork (~0.1 s from the sweep's large parent) costs more than it saves.
PARALLEL_FIT_ELEMENTS = 1 << 20

def _fit_with_one_blas_thread(fit, fold: int):
    from threadpoolctl import threadpool_limits

    # Two fits on the two cores: one BLAS thread each. With the parent's two threads apiece they
    # oversubscribe the cores, and the pair took as long as the two fits in a row here.
    with threadpool_limits(1):
        return fit(fold)


def fit_folds(fit, elements: int, workers: int) -> list:
    """``[fit(0), fit(1)]``, the fitted state of each fold (``prior: 2fold``, ``pca``): in two forked
    processes when ``workers`` > 1 and the features are large enough, else here. The two fits are
    independent and deterministic, so the results are the same either way; ``fit`` must return
    something picklable (a Prior, a Projection)."""
    if workers <= 1 or elements < PARALLEL_FIT_ELEMENTS:
        return [fit(0), fit(1)]
    return fork_map(lambda fold: _fit_with_one_blas_thread(fit, fold), (0, 1), 2)


def map_block(height: int, width: int) -> int:
    """``block: map``: the largest DCT block in 2..8 that tiles the maps without padding (14 x 14
    -> 7, 4 x 4 -> 4, 3 x 3 -> 3); maps that no such block divides (1 x 1, 13 x 13) get the smallest
    padded block, min(8, max(2, side))."""
    for b in range(8, 1, -1):
        if height % b == 0 and width % b == 0:
            return b
    return min(8, max(2, min(height, width)))


class SplitwireCodec(Codec):
    type = "splitwire"

    def __init__(self, params, feature):
        super().__init__(params, feature)
        import codec_cupy as cc

        self._cc = cc
        axis = feature.channel_axis if len(feature.shape) > feature.channel_axis else None
        p = dict(params)
        if axis is None and p.get("granularity") == "channel":
            p["granularity"] = "tensor"
        # The DCT runs over the last two dimensions, which must be the maps: channels-last features
        # (Swin-T) are moved to channels-first around the codec, as a client would before encoding.
        shape = feature.shape
        self._move = (p.get("transform", "none") == "dct" and axis is not None and len(shape) == 4
                      and axis % 4 != 1)
        if self._move:
            axis = 1
            ch = feature.channel_axis % 4
            shape = (shape[0], shape[ch]) + tuple(n for i, n in enumerate(shape) if i not in (0, ch))
        if p.get("block") == "map":
            p["block"] = map_block(*shape[-2:])
        self._prior_tables = p.pop("prior_tables", 32)
        self._cross_fit = p.pop("prior", "none") == "2fold"
        self.config = cc.CodecConfig(axis=axis, **p)
        self.prior = None
        self._folds: tuple = ()

    def prepare(self, features, workers=1):
        if not self._cross_fit:
            return
        if len(features) < 2:
            raise ValueError("prior: 2fold needs at least two samples (one per fold)")
        features = np.asarray(features)
        # Fold f is coded with the prior fitted on the other one.
        priors = fit_folds(lambda fold: self.fit_prior(features[1 - fold::2]), features.size, workers)
        self._folds = tuple(self.with_prior(p) for p in priors)

    def fit_prior(self, features):
        """``prior: 2fold`` for one fold: this codec's prior fitted on all of ``features``, the
        samples of the other fold; without ``prior``, None."""
        if not self._cross_fit:
            return None
        if self._move:                            # fitted on what is coded: channels first
            features = np.moveaxis(np.asarray(features), self.feature.channel_axis, 1)
        return self._cc.fit_prior([features[i:i + 1] for i in range(len(features))], self.config,
                                  tables=self._prior_tables)

    def with_prior(self, prior) -> "SplitwireCodec":
        coder = copy.copy(self)
        coder.prior = prior
        return coder

    def for_sample(self, index):
        if not self._cross_fit:
            return self
        if not self._folds:
            raise RuntimeError("prior: 2fold: prepare() was not called with the samples")
        return self._folds[index % 2]

    def encode(self, x):
        x = np.asarray(x, dtype=np.float32)
        if self._move:
            x = np.moveaxis(x, self.feature.channel_axis, 1)
        return bytes(self._cc.encode(np.ascontiguousarray(x), self.config, prior=self.prior))

    def decode(self, blob):
        y = np.asarray(self._cc.decode(blob, prior=self.prior), dtype=np.float32)
        return np.ascontiguousarray(np.moveaxis(y, 1, self.feature.channel_axis)) if self._move else y


class ProjectedCodec(Codec):
    """``splitwire`` with ``pca``: each fold's samples are projected on the principal components of
    the other fold's channels, coded by a ``SplitwireCodec`` for the projected layout (with its
    ``prior: 2fold`` fitted on the other fold's projected features), and reconstructed."""

    type = "splitwire"

    def __init__(self, params, feature):
        super().__init__(params, feature)
        p = dict(params)
        keep = p.pop("pca")
        self._weighting = p.pop("projection", "pca")
        if self._weighting == "fisher" and feature.fisher is None:
            raise ValueError("projection: fisher needs the split's tail (FeatureInfo.fisher), which the sweep provides")
        self._axis = feature.channel_axis % len(feature.shape)
        shape = list(feature.shape)
        shape[self._axis] = components_for(shape[self._axis], float(keep))
        self._components = shape[self._axis]
        self._inner = SplitwireCodec(p, FeatureInfo(tuple(shape), feature.channel_axis))
        self._folds: tuple = ()

    def prepare(self, features, workers=1):
        features = np.asarray(features)
        if len(features) < 2:
            raise ValueError("pca needs at least two samples (one per fold)")
        # The tail's gradients run here, before fit_folds may fork (torch is not fork-safe once its
        # thread pool runs); the fits get the other fold's matrix.
        fishers = ([self.feature.fisher.of_fold(1 - fold, features) for fold in (0, 1)]
                   if self._weighting == "fisher" else [None, None])
        fitted = fit_folds(lambda fold: self._fit(features[1 - fold::2], fishers[fold]), features.size, workers)
        self._folds = tuple(_ProjectedCoder(projection, self._inner.with_prior(prior))
                            for projection, prior in fitted)

    def _fit(self, other, fisher):
        """One fold's (projection, prior), both fitted on ``other``, the samples of the other fold
        (``fisher``: the tail's Fisher information on them, for ``projection: fisher``)."""
        projection = fit_projection(other, self._components, axis=self._axis, fisher=fisher)
        return projection, self._inner.fit_prior(projection.project(other))

    def for_sample(self, index):
        if not self._folds:
            raise RuntimeError("pca: prepare() was not called with the samples")
        return self._folds[index % 2]


@dataclass(frozen=True)
class _ProjectedCoder:
    projection: object                  # splitwire.projection.Projection
    coder: SplitwireCodec

    def encode(self, x):
        return self.coder.encode(self.projection.project(x))

    def decode(self, blob):
        return self.projection.reconstruct(self.coder.decode(blob))


class Float32Codec(Codec):
    type = "float32"
    lossless = True

    def encode(self, x):
        return np.ascontiguousarray(x, dtype="<f4").tobytes()

    def decode(self, blob):
        return np.frombuffer(blob, dtype="<f4").reshape(self.feature.shape).astype(np.float32)


class Float16Codec(Codec):
    type = "float16"

    def encode(self, x):
        return np.ascontiguousarray(x, dtype="<f2").tobytes()

    def decode(self, blob):
        return np.frombuffer(blob, dtype="<f2").reshape(self.feature.shape).astype(np.float32)


_MINMAX = struct.Struct("<ff")


def minmax_u8(x: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Per-tensor min-max quantization to 8 bits: (8-byte header, uint8 values)."""
    lo, hi = float(x.min()), float(x.max())
    lo32, hi32 = np.float32(lo), np.float32(hi)
    span = float(hi32) - float(lo32)
    q = np.zeros(x.shape, np.uint8) if span <= 0 else \
        np.clip(np.rint((x.astype(np.float64) - float(lo32)) * (255.0 / span)), 0, 255).astype(np.uint8)
    return _MINMAX.pack(lo32, hi32), q


def minmax_u8_inverse(header: bytes, q: np.ndarray) -> np.ndarray:
    lo, hi = _MINMAX.unpack(header)
    return (lo + q.astype(np.float32) * np.float32((hi - lo) / 255.0)).astype(np.float32)


class Int8Codec(Codec):
    type = "int8"

    def __init__(self, params, feature):
        super().__init__(params, feature)
        self.entropy = params.get("entropy", "zstd")
        if self.entropy == "zstd":
            import zstandard

            self._c = zstandard.ZstdCompressor(level=int(params.get("level", 3)))
            self._d = zstandard.ZstdDecompressor()
        elif self.entropy == "lz4":
            import lz4.frame

            self._lz4 = lz4.frame

    def encode(self, x):
        head, q = minmax_u8(x)
        raw = q.tobytes()
        if self.entropy == "zstd":
            raw = self._c.compress(raw)
        elif self.entropy == "lz4":
            raw = self._lz4.compress(raw)
        return head + raw

    def decode(self, blob):
        raw = blob[8:]
        if self.entropy == "zstd":
            raw = self._d.decompress(raw)
        elif self.entropy == "lz4":
            raw = self._lz4.decompress(raw)
        q = np.frombuffer(raw, np.uint8).reshape(self.feature.shape)
        return minmax_u8_inverse(blob[:8], q)


# ---- tiling: C channel maps of one sample -> one gray image --------------------------------------

def _channels_first(x: np.ndarray, axis: int) -> np.ndarray:
    """One sample (batch dim 1) -> [C, H, W]; 1-D maps become [C, 1, L]."""
    y = np.moveaxis(x[0], axis - 1, 0) if x.ndim > axis else x[0][None]
    if y.ndim == 1:
        return y[:, None, None]
    if y.ndim == 2:
        return y[:, None, :]
    return y.reshape(y.shape[0], y.shape[1], -1)


def grid(c: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(c))
    return math.ceil(c / cols), cols


def tile(maps: np.ndarray) -> np.ndarray:
    """[C, H, W] -> a (rows*H, cols*W) mosaic, channels in row-major order, unused tiles zero."""
    c, h, w = maps.shape
    rows, cols = grid(c)
    out = np.zeros((rows * cols, h, w), maps.dtype)
    out[:c] = maps
    return out.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)


def untile(img: np.ndarray, c: int, h: int, w: int) -> np.ndarray:
    rows, cols = grid(c)
    return img[: rows * h, : cols * w].reshape(rows, h, cols, w).transpose(0, 2, 1, 3).reshape(-1, h, w)[:c]


class TiledCodec(Codec):
    """Tile, 8-bit min-max quantize (8-byte header), code the gray image (subclasses)."""

    def __init__(self, params, feature):
        super().__init__(params, feature)
        x = np.zeros(feature.shape, np.float32)
        self._maps_shape = _channels_first(x, feature.channel_axis).shape

    def encode(self, x):
        maps = _channels_first(np.asarray(x, np.float32), self.feature.channel_axis)
        head, q = minmax_u8(maps)
        return head + self.code_image(tile(q))

    def decode(self, blob):
        c, h, w = self._maps_shape
        rows, cols = grid(c)
        img = self.decode_image(blob[8:], (rows * h, cols * w))
        maps = minmax_u8_inverse(blob[:8], untile(img, c, h, w))
        # back to the sample's layout
        ax = self.feature.channel_axis
        shape = list(self.feature.shape[1:])
        if len(self.feature.shape) > ax:
            moved = [shape[ax - 1]] + [s for i, s in enumerate(shape) if i != ax - 1]
            y = np.moveaxis(maps.reshape(moved), 0, ax - 1)
        else:
            y = maps.reshape(shape)
        return np.ascontiguousarray(y[None], dtype=np.float32)

    def code_image(self, img: np.ndarray) -> bytes:
        raise NotImplementedError

    def decode_image(self, data: bytes, hw: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError


class _PILCodec(TiledCodec):
    fmt = ""

    def save_args(self) -> dict:
        return {}

    def code_image(self, img):
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(img, "L").save(buf, self.fmt, **self.save_args())
        return buf.getvalue()

    def decode_image(self, data, hw):
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.uint8)


class PNGCodec(_PILCodec):
    type = "png"
    fmt = "PNG"

    def save_args(self):
        return {"compress_level": 9, "optimize": True}


class JPEGCodec(_PILCodec):
    type = "jpeg"
    fmt = "JPEG"

    def save_args(self):
        return {"quality": int(self.params["quality"]), "optimize": True}


class WebPCodec(_PILCodec):
    type = "webp"
    fmt = "WEBP"

    def save_args(self):
        return {"quality": int(self.params["quality"]), "method": int(self.params.get("method", 4))}


def hevc_available() -> str | None:
    """None when PyAV's libx265 encoder and HEVC decoder work, else the reason."""
    try:
        import av

        av.codec.Codec("libx265", "w")
        av.codec.Codec("hevc", "r")
    except Exception as e:  # ImportError, UnknownCodecError
        return f"{type(e).__name__}: {e}"
    return None


class HEVCCodec(TiledCodec):
    """One intra frame, constant QP, coded by x265 (PyAV's bundled FFmpeg); the bitstream (VPS/SPS/PPS
    + slice; x265's informational SEI is turned off with ``info=0``) and the 8-byte min/max header are
    what is counted. The frame is padded by edge replication to a multiple of 8 and at least 32 x 32,
    the smallest frame x265 accepts (cropped after decoding)."""

    type = "hevc"

    def __init__(self, params, feature):
        super().__init__(params, feature)
        import av

        self._av = av
        self.qp = int(params["qp"])
        self.pix_fmt = params.get("pix_fmt", "gray")
        self.preset = params.get("preset", "medium")

    def code_image(self, img):
        av = self._av
        h, w = img.shape
        ph, pw = max(32, h + (-h % 8)) - h, max(32, w + (-w % 8)) - w
        frame_img = np.pad(img, ((0, ph), (0, pw)), mode="edge") if ph or pw else img
        ctx = av.CodecContext.create("libx265", "w")
        ctx.width, ctx.height = frame_img.shape[1], frame_img.shape[0]
        ctx.pix_fmt = self.pix_fmt
        ctx.options = {"preset": self.preset,
                       "x265-params": f"qp={self.qp}:keyint=1:log-level=none:info=0:pools=none:frame-threads=1"}
        if self.pix_fmt == "gray":
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_img), format="gray")
        else:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_img), format="gray").reformat(
                format=self.pix_fmt)
        packets = list(ctx.encode(frame)) + list(ctx.encode(None))
        return b"".join(bytes(p) for p in packets)

    def decode_image(self, data, hw):
        av = self._av
        ctx = av.CodecContext.create("hevc", "r")
        frames = list(ctx.decode(av.Packet(data))) + list(ctx.decode(None))
        if not frames:
            raise ValueError("HEVC decoder returned no frame")
        f = frames[0]
        img = f.to_ndarray(format="gray") if f.format.name != "gray" else f.to_ndarray()
        return np.ascontiguousarray(img[: hw[0], : hw[1]])


CODECS: dict[str, type[Codec]] = {c.type: c for c in (
    SplitwireCodec, Float32Codec, Float16Codec, Int8Codec, PNGCodec, JPEGCodec, WebPCodec, HEVCCodec)}

# type -> (allowed keys, sweep key that varies along a line or None, display name)
_SCHEMA = {
    "splitwire": ({"bits", "quantizer", "granularity", "clip", "percentile", "ecsq_lambda", "sparse", "transform",
                   "block", "step", "frequency_weight", "prior", "prior_tables", "pca", "projection"}, "bits",
                  "splitwire"),
    "float32": (set(), None, "float32"),
    "float16": (set(), None, "float16"),
    "int8": ({"entropy", "level"}, None, "int8"),
    "png": (set(), None, "PNG (tiled)"),
    "jpeg": ({"quality"}, "quality", "JPEG (tiled)"),
    "webp": ({"quality", "method"}, "quality", "WebP (tiled)"),
    "hevc": ({"qp", "preset", "pix_fmt"}, "qp", "HEVC x265 (tiled)"),
}
_REQUIRED = {"jpeg": ("quality",), "webp": ("quality",), "hevc": ("qp",)}


def _prior_suffix(p: dict) -> str:
    """The line name's ending for the shared side information: `` prior``, `` pca=0.25``,
    `` fisher-pca=0.25``."""
    s = f" {'fisher-' if p.get('projection') == 'fisher' else ''}pca={p['pca']:g}" if "pca" in p else ""
    if p.get("prior", "none") == "none":
        return s
    return s + " prior" + (f"(T={p['prior_tables']})" if "prior_tables" in p else "")


def _line_name(typ: str, p: dict) -> str:
    if typ == "splitwire" and p.get("transform", "none") == "dct":
        block = p.get("block", 8)
        s = f"splitwire dct{'(map)' if block == 'map' else block}"   # the rate knob is step: one line per block size
        if p.get("frequency_weight", 0):
            s += f" w={p['frequency_weight']:g}"
        s += _prior_suffix(p)
        return s if p.get("bits", 8) == 8 else f"{s} bits={p['bits']}"
    if typ == "splitwire":
        s = f"splitwire {p.get('quantizer', 'uniform')}/{p.get('granularity', 'tensor')}"
        if p.get("quantizer") == "ecsq":
            s += f" λ={p.get('ecsq_lambda', 0.15):g}"
        if p.get("clip", "none") != "none":
            s += f" clip={p['clip']}"
            if p["clip"] == "percentile":
                s += f"({p.get('percentile', 99.99):g})"
        if p.get("sparse", "auto") != "auto":
            s += f" sparse={p['sparse']}"
        return s + _prior_suffix(p)
    if typ == "int8":
        e = p.get("entropy", "zstd")
        return "int8" if e == "none" else f"int8+{e}"
    return _SCHEMA[typ][2]


def _point_label(line: str, typ: str, p: dict) -> str:
    key = "step" if typ == "splitwire" and p.get("transform", "none") == "dct" else _SCHEMA[typ][1]
    return f"{line} {key}={p[key]}" if key else line


def expand_codec_entry(entry: dict) -> list[dict]:
    """One YAML ``codecs:`` item -> codec points ``{"type", "line", "label", "params"}``: every
    list-valued parameter is a sweep axis (cartesian product)."""
    entry = dict(entry)
    typ = entry.pop("type")
    if typ not in CODECS:
        raise ValueError(f"unknown codec type {typ!r}; known: {', '.join(CODECS)}")
    allowed, _, _ = _SCHEMA[typ]
    extra = sorted(set(entry) - allowed)
    if extra:
        raise ValueError(f"{typ}: unknown key(s) {', '.join(map(repr, extra))}; allowed: "
                         f"{', '.join(sorted(allowed)) or 'none'}")
    for k in _REQUIRED.get(typ, ()):
        if k not in entry:
            raise ValueError(f"{typ}: missing required key {k!r}")
    axes = {k: (v if isinstance(v, list) else [v]) for k, v in entry.items()}
    for k, v in axes.items():
        if not v:
            raise ValueError(f"{typ}.{k}: empty list")
    points = []
    for combo in itertools.product(*axes.values()) if axes else [()]:
        p = dict(zip(axes.keys(), combo))
        _validate_params(typ, p)
        line = _line_name(typ, p)
        points.append({"type": typ, "line": line, "label": _point_label(line, typ, p), "params": p})
    return points


def _validate_params(typ: str, p: dict) -> None:
    if typ == "splitwire":
        import codec_cupy as cc

        if p.get("block") == "map" and p.get("transform", "none") != "dct":
            raise ValueError("splitwire.block: 'map' (a block per split's map size) needs transform: dct")
        p = dict(p)
        prior, tables = p.pop("prior", "none"), p.pop("prior_tables", 32)
        if prior not in ("none", "2fold"):
            raise ValueError(f"splitwire.prior: {prior!r} is not one of none, 2fold")
        if prior != "none" and p.get("transform", "none") != "none" and p.get("bits", 8) < 2:
            raise ValueError("splitwire.prior: a prior with transform: dct needs bits >= 2")
        if isinstance(tables, bool) or not isinstance(tables, int) or not 1 <= tables <= 256:
            raise ValueError(f"splitwire.prior_tables: expected an integer in [1, 256], got {tables!r}")
        weighting = p.pop("projection", None)
        if weighting is not None and "pca" not in p:
            raise ValueError("splitwire.projection: goes with pca (the fraction of components kept)")
        if weighting is not None and weighting not in WEIGHTINGS:
            raise ValueError(f"splitwire.projection: {weighting!r} is not one of {', '.join(WEIGHTINGS)}")
        keep = p.pop("pca", 1.0)
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 < keep <= 1.0:
            raise ValueError(f"splitwire.pca: expected the fraction of channels kept, in (0, 1], got {keep!r}")
        try:
            cc.CodecConfig(**{**p, "block": 8} if p.get("block") == "map" else p)
        except (cc.ConfigError, TypeError) as e:
            raise ValueError(f"splitwire: {e}") from None
    elif typ == "int8":
        if p.get("entropy", "zstd") not in ("zstd", "lz4", "none"):
            raise ValueError(f"int8.entropy: {p['entropy']!r} is not one of zstd, lz4, none")
    elif typ in ("jpeg", "webp"):
        q = p["quality"]
        if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 100:
            raise ValueError(f"{typ}.quality: expected an integer in [1, 100], got {q!r}")
    elif typ == "hevc":
        q = p["qp"]
        if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q <= 51:
            raise ValueError(f"hevc.qp: expected an integer in [0, 51], got {q!r}")
        if p.get("pix_fmt", "gray") not in ("gray", "yuv420p"):
            raise ValueError(f"hevc.pix_fmt: {p['pix_fmt']!r} is not one of gray, yuv420p")


def make_codec(point: dict, feature: FeatureInfo) -> Codec:
    if point["type"] == "splitwire" and "pca" in point["params"]:
        return ProjectedCodec(point["params"], feature)
    return CODECS[point["type"]](point["params"], feature)
