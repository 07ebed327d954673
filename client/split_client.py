"""The edge half: run the head, encode the features, send one blob to the Triton ensemble.

    from client import SplitClient
    c = SplitClient("127.0.0.1:8000", "efficientnet_lite0")
    logits = c.infer("cat.jpg")            # or a PIL image, or a preprocessed NCHW array
    c.classify("cat.jpg", k=5)             # [(label, probability), ...]

Only the URL and the model name are needed: the input shape, preprocessing, codec
configuration and labels come from the ensemble's config (``parameters["splitwire"]``),
and the head ONNX -- and the shared prior, where the export fitted one -- from ``<model>_head``
(cached by their SHA-256). No torch here.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import rawframe
from .preprocess import load_image

FORMATS = ("splitwire", "fp16", "raw")


class ClientError(RuntimeError):
    pass


@dataclass
class Timing:
    head_s: float = 0.0
    encode_s: float = 0.0
    round_trip_s: float = 0.0
    bytes_sent: int = 0
    raw_bytes: int = 0   # the same features as float32

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.bytes_sent if self.bytes_sent else float("nan")


def _cache_dir() -> Path:
    base = os.environ.get("SPLITWIRE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "splitwire")
    return Path(base) / "heads"


_CODEC_KEYS = ("bits", "granularity", "axis", "clip", "percentile", "quantizer", "ecsq_lambda", "transform", "block",
               "step", "frequency_weight", "search", "pack", "tables", "prob_bits")   # last three: ``cc.calibrate``'s


def codec_config(cc, settings: dict):
    """The ``CodecConfig`` of a model's published codec settings (``splitwire export``); unknown keys
    are an error, so a typo in an override does not silently fall back to a default."""
    unknown = sorted(set(settings) - set(_CODEC_KEYS))
    if unknown:
        raise ClientError(f"unknown codec setting(s) {', '.join(unknown)}; known: {', '.join(_CODEC_KEYS)}")
    try:
        return cc.CodecConfig(**settings)
    except cc.ConfigError as e:
        raise ClientError(f"codec settings {settings}: {e}") from None


class SplitClient:
    """One connection to one split model. Not thread-safe: use one per thread.

    ``codec`` overrides the model's published codec settings, e.g. ``{"transform": "dct", "step":
    0.04}`` (any decoder reads any valid blob; the settings only change what this client sends).
    Where the model publishes a shared prior (``splitwire export --prior``), blobs are coded with it
    (``self.prior``) while the settings keep its bit depth, transform and block, and where the
    export's held-out estimate says it pays (``prior=None``, the default); ``prior=True`` uses it
    regardless, ``prior=False`` sends self-contained blobs."""

    def __init__(self, url: str, model: str, *, protocol: str = "http", head: str | Path | None = None,
                 bits: int | None = None, payload: str = "splitwire", threads: int = 0,
                 timeout_s: float = 60.0, codec: dict | None = None, prior: bool | None = None):
        if protocol not in ("http", "grpc"):
            raise ClientError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
        if payload not in FORMATS:
            raise ClientError(f"payload must be one of {FORMATS}, got {payload!r}")
        self.url, self.model, self.protocol, self.payload = url, model, protocol, payload
        self.timeout_s = timeout_s
        if protocol == "grpc":
            import tritonclient.grpc as tc
        else:
            import tritonclient.http as tc
        self._tc = tc
        try:
            self._client = tc.InferenceServerClient(url, network_timeout=timeout_s) if protocol == "http" \
                else tc.InferenceServerClient(url)
            config = self._client.get_model_config(model, **({"as_json": True} if protocol == "grpc" else {}))
        except Exception as e:
            raise ClientError(f"cannot read the config of model {model!r} at {url} ({protocol}): {e}. "
                              "Is the server up (`splitwire serve`) and the name right?") from e
        config = config.get("config", config)
        raw = (config.get("parameters") or {}).get("splitwire", {}).get("string_value")
        if not raw:
            raise ClientError(f"model {model!r} publishes no 'splitwire' parameter: "
                              "it was not written by `splitwire export`")
        self.meta = json.loads(raw)
        settings = {**self.meta["codec"], **(codec or {})}     # the published codec, then overrides
        if bits is not None:
            settings["bits"] = int(bits)
        import codec_cupy as cc
        self._cc = cc
        self.codec_config = codec_config(cc, settings)
        self.labels = self.meta.get("labels")
        self._head = self._session(Path(head) if head else self._fetch_head(), threads)
        self.prior = self._fetch_prior(self.meta["prior"]) if self._wants_prior(prior) else None

    # -- the head -------------------------------------------------------------------------
    def _fetch_head(self) -> Path:
        info = self.meta["head"]
        path = _cache_dir() / f"{info['sha256']}.onnx"
        if path.is_file():
            return path
        req = np.zeros(1, np.uint8)
        inp = self._tc.InferInput("REQUEST", list(req.shape), "UINT8")
        inp.set_data_from_numpy(req)
        data = self._client.infer(info["model"], [inp]).as_numpy("HEAD_ONNX").tobytes()
        if hashlib.sha256(data).hexdigest() != info["sha256"]:
            raise ClientError(f"the head served by {info['model']!r} does not match the SHA-256 the "
                              f"ensemble publishes; re-export the model")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path

    def _wants_prior(self, prior: bool | None) -> bool:
        published = self.meta.get("prior")
        if prior is False:
            return False
        if not published:
            if prior:
                raise ClientError(f"model {self.model!r} publishes no prior (export it with --prior)")
            return False
        cfg = self.codec_config
        transform, block = published.get("transform", "none"), published.get("block")
        fits = (cfg.bits == published["bits"] and cfg.transform == transform
                and (transform == "none" or cfg.block == block))
        if prior and not fits:
            fitted = "without a transform" if transform == "none" else f"of {transform} blocks of {block}"
            raise ClientError(f"the model's prior codes {published['bits']}-bit symbols {fitted}; these codec "
                              f"settings ({cfg.bits} bits, transform={cfg.transform!r}, block={cfg.block}) cannot use it")
        held_out = published.get("held_out")
        return fits and (bool(prior) or held_out is None or held_out["ratio"] < 1)

    def _fetch_prior(self, info: dict):
        """The model's shared prior (``codec_cupy.Prior``), fetched from the head bundle once and
        cached by its SHA-256; its id must be the one the ensemble publishes."""
        path = _cache_dir() / f"{info['sha256']}.swprior"
        if not path.is_file():
            req = np.zeros(1, np.uint8)
            inp = self._tc.InferInput("REQUEST", list(req.shape), "UINT8")
            inp.set_data_from_numpy(req)
            out = self._tc.InferRequestedOutput("PRIOR")
            data = self._client.infer(self.meta["head"]["model"], [inp], outputs=[out]).as_numpy("PRIOR").tobytes()
            if hashlib.sha256(data).hexdigest() != info["sha256"]:
                raise ClientError(f"the prior served by {self.meta['head']['model']!r} does not match the SHA-256 "
                                  "the ensemble publishes; re-export the model")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        try:
            prior = self._cc.Prior.load(path)
        except self._cc.PriorError as e:
            raise ClientError(f"cached prior {path} is invalid ({e}); delete it to fetch it again") from None
        if f"{prior.id:#010x}" != info["id"]:
            raise ClientError(f"the prior has id {prior.id:#010x}, the ensemble publishes {info['id']}; re-export")
        return prior

    @staticmethod
    def _session(path: Path, threads: int):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    # -- inference ------------------------------------------------------------------------
    def preprocess(self, image) -> np.ndarray:
        return load_image(image, self.meta.get("preprocess", {}))

    def _as_input(self, x) -> np.ndarray:
        if isinstance(x, np.ndarray):
            want = tuple(self.meta["input"]["shape"])
            x = x[None] if x.ndim == len(want) else x
            if tuple(x.shape[1:]) != want:
                raise ClientError(f"input tensor has shape {list(x.shape)}; the head takes "
                                  f"[B, {', '.join(map(str, want))}] (preprocessed NCHW)")
            return np.ascontiguousarray(x, dtype=np.float32)
        return self.preprocess(x)

    def head(self, x) -> np.ndarray:
        return self._head.run(None, {self.meta["input"]["name"]: self._as_input(x)})[0]

    def calibrate(self, inputs) -> "codec_cupy.CodecConfig":
        """Fix the codec's entropy model (``pack``, ``tables``, ``prob_bits``) on the head's features
        of ``inputs`` (images or preprocessed tensors, each sent on its own later), searched afresh
        (``codec_cupy.calibrate``): later encodes skip the planner's per-tensor search. Returns the
        new ``CodecConfig`` (also ``self.codec_config``)."""
        feats = [self.head(x) for x in inputs]
        if not feats:
            raise ClientError("calibrate needs at least one input")
        fresh = self.codec_config.replace(pack="auto", tables="auto", prob_bits="auto")
        self.codec_config = self._cc.calibrate(feats, fresh)
        return self.codec_config

    def encode(self, features: np.ndarray) -> bytes:
        if self.payload == "splitwire":
            return self._cc.encode(features, self.codec_config, prior=self.prior)
        if self.payload == "fp16":
            return rawframe.encode(features.astype(np.float16))
        return rawframe.encode(features.astype(np.float32))

    def send(self, blob: bytes | np.ndarray) -> np.ndarray:
        """Send one payload as it is (no checks: tests use this for hostile payloads)."""
        arr = np.frombuffer(blob, np.uint8) if isinstance(blob, (bytes, bytearray)) else np.asarray(blob)
        inp = self._tc.InferInput("BLOB", list(arr.shape), self._tc_dtype(arr))
        inp.set_data_from_numpy(arr)
        out = self._tc.InferRequestedOutput("LOGITS")
        kw = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        return self._client.infer(self.model, [inp], outputs=[out], **kw).as_numpy("LOGITS")

    def _tc_dtype(self, arr: np.ndarray) -> str:
        from tritonclient.utils import np_to_triton_dtype
        return np_to_triton_dtype(arr.dtype)

    def infer_timed(self, x) -> tuple[np.ndarray, Timing]:
        t = Timing()
        x = self._as_input(x)
        t0 = time.perf_counter()
        feats = self._head.run(None, {self.meta["input"]["name"]: x})[0]
        t1 = time.perf_counter()
        blob = self.encode(feats)
        t2 = time.perf_counter()
        y = self.send(blob)
        t3 = time.perf_counter()
        t.head_s, t.encode_s, t.round_trip_s = t1 - t0, t2 - t1, t3 - t2
        t.bytes_sent, t.raw_bytes = len(blob), feats.size * 4
        return y, t

    def infer(self, x) -> np.ndarray:
        """The tail's output for an image (path / PIL) or a preprocessed NCHW tensor."""
        return self.infer_timed(x)[0]

    def classify(self, x, k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-k (label, softmax probability) per item."""
        return topk(self.infer(x), self.labels, k)

    def close(self) -> None:
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def topk(logits: np.ndarray, labels: list[str] | None, k: int = 5) -> list[list[tuple[str, float]]]:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    out = []
    for row in p:
        idx = np.argsort(-row)[:k]
        out.append([(labels[i] if labels else str(i), float(row[i])) for i in idx])
    return out
