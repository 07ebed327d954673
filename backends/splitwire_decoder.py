"""Triton Python backend: one splitwire codec blob (UINT8 [-1]) -> float32 features.

``splitwire export`` copies this file to ``<name>_decoder/1/model.py`` (and
``client/rawframe.py`` beside it). Everything but ``TritonPythonModel`` is plain Python
so tests import and exercise it without a server.

Untrusted bytes: every request gets exactly one response. A bad payload gets an
``INVALID_ARG`` error (HTTP 400 / gRPC INVALID_ARGUMENT) naming the problem; the
instance keeps serving. Prometheus counters (payload bytes, decode seconds, rejected
payloads by reason) appear on Triton's metrics port next to its own.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

try:  # present only inside the Triton Python backend stub
    import triton_python_backend_utils as pb_utils
except ImportError:
    pb_utils = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import rawframe  # the copy next to model.py in a model repository
except ImportError:
    from client import rawframe
try:
    from triton_tensors import host_array, quiet_capsule_noise  # the copy next to model.py
except ImportError:
    from backends.triton_tensors import host_array, quiet_capsule_noise

import codec_cupy as cc
from codec_cupy import errors as cerr
from codec_cupy._transform import MAX_BLOCK, MIN_BLOCK, coded_view_shape

# Most specific first; each reason becomes a metric label and starts the error message.
_REASONS = (
    (cerr.TruncatedError, "truncated", "resend the whole blob"),
    (cerr.ChecksumError, "checksum", "resend the blob"),
    (cerr.LimitExceededError, "too_large", "send fewer items per request"),
    (cerr.BadMagicError, "not_a_blob", "send the bytes codec_cupy.encode() returned"),
    (cerr.UnsupportedVersionError, "version", "encode with a codec_cupy release that writes formats 1-3"),
    (cerr.HeaderError, "header", "send the bytes codec_cupy.encode() returned"),
    (cerr.CorruptStreamError, "corrupt", "resend the blob"),
    (cerr.PriorError, "prior", "encode with the prior this model publishes (SplitClient fetches it), or "
                               "without a prior"),
    (cerr.DecodeError, "invalid", "send the bytes codec_cupy.encode() returned"),
)


class PayloadError(ValueError):
    """A request the client must fix; ``reason`` labels the rejection metric."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    feature_shape: tuple[int, ...]   # per item, batch excluded
    max_batch: int
    max_payload_bytes: int

    @property
    def max_elements(self) -> int:
        n = self.max_batch
        for d in self.feature_shape:
            n *= d
        return n

    @functools.cached_property
    def max_coded_elements(self) -> int:
        """``max_elements``, or more for a DCT blob of these tensors: its coded view pads the maps to
        whole blocks (docs/FORMAT.md section 8) for its block B in 2..16, so a 14 x 14 map coded in
        8 x 8 blocks takes 16 x 16 coefficients. Computed once per model (every payload asks)."""
        n = self.max_elements
        if len(self.feature_shape) >= 2:
            shape = (self.max_batch, *self.feature_shape)
            n = max(n, *(math.prod(coded_view_shape(shape, b)) for b in range(MIN_BLOCK, MAX_BLOCK + 1)))
        return n

    @classmethod
    def from_parameters(cls, params: dict) -> "Limits":
        def get(key):
            v = params.get(key)
            return v["string_value"] if isinstance(v, dict) else v
        return cls(tuple(json.loads(get("feature_shape"))), int(get("max_batch")),
                   int(get("max_payload_bytes")))


def decode_payload(blob: np.ndarray, limits: Limits, *, engine: str = "auto", device: str = "cpu", prior=None):
    """Validate and decode one payload; a NumPy (or, on ``device="cuda"``, CuPy) float32 array.

    ``prior``: the model's shared ``codec_cupy.Prior``, for blobs coded with it (format version 3).
    Raises ``PayloadError`` for anything the client sent wrong.
    """
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise PayloadError("dtype", f"BLOB must be a 1-D UINT8 tensor, got {blob.dtype} {list(blob.shape)}")
    if blob.size == 0:
        raise PayloadError("empty", "empty payload: send the codec blob as a 1-D UINT8 tensor")
    if blob.size > limits.max_payload_bytes:
        raise PayloadError("too_large", f"payload of {blob.size} bytes exceeds this model's limit of "
                                        f"{limits.max_payload_bytes} bytes; send at most "
                                        f"{limits.max_batch} items per request")
    buf = np.ascontiguousarray(blob)
    if bytes(buf[:4]) == rawframe.MAGIC:
        try:
            y = rawframe.decode(buf, limits.max_elements)
        except rawframe.RawFrameError as e:
            raise PayloadError("raw", f"raw frame rejected: {e}") from None
    else:
        try:
            y = _codec_decode(buf, limits.max_coded_elements, engine, device, prior)
        except cerr.DecodeError as e:
            for kind, reason, hint in _REASONS:
                if isinstance(e, kind):
                    raise PayloadError(reason, f"codec blob rejected ({reason}): {e} -- {hint}") from None
            raise  # pragma: no cover - _REASONS ends with DecodeError
    want = tuple(limits.feature_shape)
    if y.ndim != len(want) + 1 or tuple(y.shape[1:]) != want or not 1 <= y.shape[0] <= limits.max_batch:
        raise PayloadError("shape", f"decoded tensor has shape {list(y.shape)}; this model takes "
                                    f"[B, {', '.join(map(str, want))}] with 1 <= B <= {limits.max_batch} "
                                    "(encode the head's output unchanged)")
    return y


def _codec_decode(buf: np.ndarray, max_elements: int, engine: str, device: str, prior=None):
    kw = {"prior": prior} if prior is not None else {}
    if device == "cuda":
        if _HAS_DEVICE_ARG:
            return cc.decode(buf, device="cuda", max_elements=max_elements, **kw)  # CuPy, stays on the GPU
        # A codec_cupy without the CUDA engine: decode on the host, upload once.
        import cupy
        return cupy.asarray(cc.decode(buf, engine=engine, max_elements=max_elements, **kw))
    return cc.decode(buf, engine=engine, max_elements=max_elements, **kw)


PRIOR_FILE = "prior.swprior"


def load_prior(directory: str):
    """The shared prior next to model.py (``splitwire export --prior``), or None."""
    path = os.path.join(directory, PRIOR_FILE)
    return cc.Prior.load(path) if os.path.exists(path) else None


_HAS_DEVICE_ARG = "device" in inspect.signature(cc.decode).parameters






class _Metrics:
    """Counters on Triton's metrics endpoint. The families must outlive their metrics."""

    def __init__(self, model: str):
        fam = pb_utils.MetricFamily
        self._labels = {"model": model}
        self._families = {}

        def counter(name, doc):
            self._families[name] = fam(name, doc, fam.COUNTER)
            return self._families[name]

        self.requests = counter("splitwire_decoder_requests_total",
                                "Payloads received by the splitwire decoder").Metric(labels=self._labels)
        self.bytes = counter("splitwire_decoder_payload_bytes_total",
                             "Bytes of payload received").Metric(labels=self._labels)
        self.elements = counter("splitwire_decoder_decoded_elements_total",
                                "Feature elements decoded").Metric(labels=self._labels)
        self.seconds = counter("splitwire_decoder_decode_seconds_total",
                               "Seconds spent validating and decoding payloads").Metric(labels=self._labels)
        self._rejected_family = counter("splitwire_decoder_rejected_total", "Payloads rejected, by reason")
        self._rejected = {}

    def rejected(self, reason: str):
        if reason not in self._rejected:
            self._rejected[reason] = self._rejected_family.Metric(labels={**self._labels, "reason": reason})
        self._rejected[reason].increment(1)


class TritonPythonModel:
    def initialize(self, args):
        quiet_capsule_noise()
        config = json.loads(args["model_config"])
        self.limits = Limits.from_parameters(config.get("parameters", {}))
        engine = config.get("parameters", {}).get("engine", {}).get("string_value", "auto")
        self.engine = engine
        self.device = "cpu"
        if args.get("model_instance_kind") == "GPU":
            try:
                import cupy
                cupy.cuda.Device(int(args["model_instance_device_id"])).use()
                self.device = "cuda"
            except ImportError:
                pass  # no CuPy in this environment: decode with the CPU engine
        self.metrics = _Metrics(args["model_name"])
        self.prior = load_prior(os.path.dirname(os.path.abspath(__file__)))
        # Compile the Numba kernels now, not on the first client's request.
        warm = np.zeros((1, *self.limits.feature_shape), np.float32)
        decode_payload(np.frombuffer(cc.encode(warm, cc.CodecConfig(bits=8)), np.uint8),
                       self.limits, engine=self.engine, device=self.device)
        if self.prior is not None:                     # the prior's coding: its axis, or its DCT block
            params = config.get("parameters", {})
            axis = int(params.get("codec_axis", {}).get("string_value", "1"))
            block = int(params.get("codec_block", {}).get("string_value", "0"))
            dct = {"transform": "dct", "block": block} if block else {}
            blob = cc.encode(warm, cc.CodecConfig(bits=self.prior.bits, axis=axis, **dct), prior=self.prior)
            decode_payload(np.frombuffer(blob, np.uint8), self.limits, engine=self.engine, device=self.device,
                           prior=self.prior)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                blob = host_array(pb_utils.get_input_tensor_by_name(request, "BLOB"))
                self.metrics.requests.increment(1)
                self.metrics.bytes.increment(int(blob.size))
                t0 = time.perf_counter()
                y = decode_payload(blob, self.limits, engine=self.engine, device=self.device, prior=self.prior)
                self.metrics.seconds.increment(time.perf_counter() - t0)
                self.metrics.elements.increment(int(y.size))
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor.from_dlpack("FEATURES", y)]))
            except PayloadError as e:
                self.metrics.rejected(e.reason)
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(e), pb_utils.TritonError.INVALID_ARG)))
            except Exception as e:  # a bug, not the client's fault: fail this request only
                self.metrics.rejected("internal")
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"decoder failed: {type(e).__name__}: {e}",
                                               pb_utils.TritonError.INTERNAL)))
        return responses
