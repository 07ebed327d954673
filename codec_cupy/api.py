"""The public verbs: ``encode``, ``decode``, ``inspect``, ``available_engines``."""

from __future__ import annotations

import importlib
import math

import numpy as np

from . import _container, _encoder, _transform
from ._prior import Prior
from .config import CodecConfig
from .errors import ConfigError, EngineUnavailableError

# Fastest first: "auto" takes the first one that is available.
_HOST_ENGINES = {"cpu": "._cpu", "reference": "._reference"}
ENGINES = ("cpu", "reference")


def _load(name: str):
    if name not in _HOST_ENGINES:
        raise ConfigError(f"engine={name!r} is not valid; choose one of {('auto', 'cuda') + ENGINES}")
    try:
        module = importlib.import_module(_HOST_ENGINES[name], __package__)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise EngineUnavailableError(f"engine {name!r} is not available here ({exc}); "
                                     "install numba or use engine='reference'") from exc
    if not getattr(module, "AVAILABLE", True):  # pragma: no cover
        raise EngineUnavailableError(f"engine {name!r} is not available here; use engine='reference'")
    return module


_RESOLVED: dict = {}      # engine name -> module, so a call does not pay for the import machinery


def _engine(name: str):
    module = _RESOLVED.get(name)
    if module is None:
        module = _RESOLVED[name] = _resolve(name)
    return module


def host_engine(name: str, verb: str):
    """The host engine module ``name`` names ("auto": the fastest here) for a verb that runs on the
    CPU only (``fit_prior``)."""
    if name == "cuda":
        raise ConfigError(f"{verb} runs on the CPU; choose engine 'auto' or one of {ENGINES}")
    return _engine(name)


def _resolve(name: str):
    if name == "auto":
        for candidate in ENGINES:
            try:
                return _load(candidate)
            except EngineUnavailableError:  # pragma: no cover
                continue
    return _load(name)


def _cuda():
    from . import _cuda as module          # imports CuPy lazily; raises EngineUnavailableError on use
    return module


def available_engines() -> list[str]:
    """Engines usable in this process, fastest first ("cuda" only with CuPy and a device)."""
    names = ["cuda"] if _cuda().available() else []
    for name in ENGINES:
        try:
            _load(name)
            names.append(name)
        except EngineUnavailableError:  # pragma: no cover
            pass
    return names


def _on_gpu(x) -> bool:
    return hasattr(x, "__cuda_array_interface__")


def encode(x, config: CodecConfig | None = None, *, engine: str = "auto", prior: Prior | None = None) -> bytes:
    """Quantize and entropy-code ``x`` (float32/float16, <= 8 dims) into one self-describing blob.

    ``x`` may be a NumPy array or, with ``engine="cuda"`` or "auto", a CuPy array / any CUDA DLPack
    producer: then quantization, statistics and rANS run on the GPU (same bytes).
    With ``prior`` (``fit_prior``), the symbols are coded with the prior's per-position tables and the
    blob (format version 3) carries no model: the decoder needs the same prior. The config's
    quantizer fields apply as always; its entropy-model fields (pack, tables, prob_bits, sparse,
    search) are the prior's.
    """
    config = CodecConfig() if config is None else config
    if not isinstance(config, CodecConfig):
        raise ConfigError(f"config must be a CodecConfig, got {type(config).__name__}")
    if prior is not None and not isinstance(prior, Prior):
        raise ConfigError(f"prior must be a codec_cupy.Prior (fit_prior, Prior.load), got {type(prior).__name__}")
    if engine == "cuda" or (engine == "auto" and _on_gpu(x)):
        return _cuda().encode(x, config, prior=prior)
    if prior is not None:
        x32, dtype = _encoder.as_float32(x)
        return _encoder.encode_with_prior(_engine(engine), x32, dtype, config, prior)
    return _encoder.encode(_engine(engine), x, config)


def decode(blob, *, engine: str = "auto", device: str = "cpu",
           max_elements: int = _container.DEFAULT_MAX_ELEMENTS, out_dtype=np.float32, prior=None):
    """Validate ``blob`` and decode it to an array of the encoded shape.

    ``device="cpu"`` returns NumPy float32 (host engines); ``device="cuda"`` decodes and dequantizes
    in one kernel launch and returns a CuPy array of ``out_dtype`` (float32 or float16).
    Raises a ``codec_cupy.errors.DecodeError`` subclass for anything that is not a valid blob; a
    blob announcing more than ``max_elements`` elements is refused before anything is allocated.
    ``prior``: the ``Prior`` (or a list of them, found by id) that blobs coded with a prior need;
    blobs that carry their own model ignore it.
    """
    data = _as_bytes(blob)
    if _names_prior(data):                           # version 3; other blobs carry their own model
        on_gpu = _device(device, engine) == "cuda"
        fast = None if on_gpu else getattr(_engine(engine), "decode_prior_blob", None)
        if fast is not None and isinstance(prior, Prior):
            y = fast(data, max_elements, prior)      # header + streams compiled; None: the slow path says why
            if y is not None:
                return y
        (item,) = _parse_items([data], max_elements, prior)
        return _decode_cuda([item], out_dtype)[0] if on_gpu else _decode_host(_engine(engine), *item)
    if _device(device, engine) == "cuda":
        return _decode_cuda([(_container.parse(data, max_elements), data)], out_dtype)[0]
    host = _engine(engine)
    fast = getattr(host, "decode_blob", None)          # parse + decode in one compiled call
    if fast is not None:
        return fast(data, max_elements)
    return _decode_host(host, _container.parse(data, max_elements), data)


def decode_batch(blobs, *, engine: str = "auto", device: str = "cuda",
                 max_elements: int = _container.DEFAULT_MAX_ELEMENTS, out_dtype=np.float32, prior=None) -> list:
    """Decode many blobs (e.g. one per request of a dynamic batch); on CUDA in a single launch."""
    items = _parse_items(list(map(_as_bytes, blobs)), max_elements, prior)
    if _device(device, engine) == "cuda":
        return _decode_cuda(items, out_dtype)
    host = _engine(engine)
    return [_decode_host(host, h, d) for h, d in items]


def _names_prior(data) -> bool:
    """Whether ``data`` looks like a version-3 blob (``parse`` still validates it)."""
    return len(data) > 4 and data[4] == _container.VERSION_PRIOR and bytes(data[:4]) == _container.MAGIC


def _parse_items(datas, max_elements: int, prior) -> list:
    """(header, bytes) of each blob, version-3 headers in the position view of their prior."""
    items = []
    for data in datas:
        h = _container.parse(data, max_elements)
        if h.prior_id is not None:
            h = _container.with_prior(h, _find_prior(prior, h.prior_id))
        items.append((h, data))
    return items


def _find_prior(prior, prior_id: int):
    """``prior`` itself, or the one of a sequence of priors with this id (None if none has it)."""
    if prior is None or isinstance(prior, Prior):
        return prior
    if isinstance(prior, (list, tuple)) and all(isinstance(p, Prior) for p in prior):
        match = [p for p in prior if p.id == prior_id]
        return match[0] if match else (prior[0] if prior else None)     # no match: the mismatch error
    raise ConfigError(f"prior must be a codec_cupy.Prior or a list of them, got {type(prior).__name__}")


def _decode_host(host, h, data):
    """A host engine's decode of a parsed blob, with the inverse DCT of a transform blob."""
    y = host.decode(h, data)
    if not h.block:
        return y.reshape(h.output_shape)
    return getattr(host, "inverse_transform", _transform.inverse)(y, h.tensor_shape, h.block)


def _decode_cuda(items, out_dtype):
    """The cuda engine's decode of parsed blobs (one launch), then the inverse DCT of transform blobs
    (in float32; ``out_dtype`` applies to the result)."""
    cuda = _cuda()
    if not any(h.block for h, _ in items):
        return [y.reshape(h.output_shape) for (h, _), y in zip(items, cuda.decode_batch(items, out_dtype=out_dtype))]
    ys = cuda.decode_batch(items, out_dtype=np.float32)
    return [cuda.inverse_transform(y, h.tensor_shape, h.block, out_dtype=out_dtype) if h.block
            else y.astype(out_dtype, copy=False) for (h, _), y in zip(items, ys)]


def _device(device: str, engine: str) -> str:
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device={device!r} is not valid; choose 'cpu' or 'cuda'")
    if engine == "cuda":
        return "cuda"
    if device == "cuda" and engine != "auto":
        raise ConfigError(f"device='cuda' decodes with the cuda engine; engine={engine!r} runs on the CPU")
    return device


def inspect(blob, *, max_elements: int = _container.DEFAULT_MAX_ELEMENTS, prior=None) -> dict:
    """Header fields, sizes and the stream plan of a (validated) blob.

    Every field is whole: per-channel (or, with a transform, per-frequency) scales and zero points
    are listed in channel order, ECSQ levels in symbol order. A blob coded with a prior shows the
    prior's id; its tables and precision only where ``prior`` is given."""
    h = _container.parse(_as_bytes(blob), max_elements)
    model = h
    if h.prior_id is not None:
        found = _find_prior(prior, h.prior_id)
        model = _container.with_prior(h, found) if found is not None else None
    size = math.prod(h.output_shape)
    zero_channels = int(h.zero_mask.sum()) if h.zero_mask is not None else 0
    return {
        "version": h.version,
        "dtype": str(h.dtype),
        "shape": list(h.output_shape),
        "axis": None if h.block else h.axis,
        "transform": {"kind": "dct", "block": h.block, "coded_shape": list(h.shape)} if h.block else None,
        "bits": h.bits,
        "quantizer": "ecsq" if h.levels is not None else "uniform",
        "granularity": "channel" if h.per_channel else "tensor",
        "scale": None if h.scale is None else [float(s) for s in h.scale],    # one per channel
        "zero_point": [int(z) for z in h.zero_point],                         # (or frequency)
        "levels": None if h.levels is None else [float(v) for v in h.levels],
        "prior": None if h.prior_id is None else f"{h.prior_id:#010x}",
        "plan": {
            "pack": h.pack,
            "alphabet": h.alphabet,
            "prob_bits": None if model is None else model.prob_bits,
            "tables": None if model is None else model.ntables,
            "streams": h.num_streams,
            "symbols_per_stream": h.symbols_per_stream,
            "packed_symbols": h.num_packed,
            "channels": h.channels,
            "zero_channels": zero_channels,
            "zero_mask": h.zero_mask is not None,
        },
        "sizes": {
            "total_bytes": h.total_bytes,
            "header_bytes": h.payload_offset,
            "payload_bytes": h.total_bytes - h.payload_offset - _container.CRC_BYTES,
            "crc_bytes": _container.CRC_BYTES,
            "raw_float32_bytes": 4 * size,
        },
        "bits_per_element": 8.0 * h.total_bytes / size if size else None,
        "elements": size,
    }


def _as_bytes(blob):
    if isinstance(blob, (bytes, bytearray, memoryview)):
        return blob
    if isinstance(blob, np.ndarray):
        if blob.dtype != np.uint8 or blob.ndim != 1:
            raise ConfigError(f"a blob given as an array must be 1-d uint8, got {blob.dtype} with shape {blob.shape}")
        return memoryview(np.ascontiguousarray(blob))
    raise ConfigError(f"decode expects bytes, bytearray, memoryview or a 1-d uint8 array, got {type(blob).__name__}")
