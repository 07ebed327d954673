import contextlib
import importlib.util
import os

import numpy as np
import pytest

os.environ.setdefault("NUMBA_NUM_THREADS", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def relu_features(rng, shape=(2, 16, 7, 9), zero_channels=(3, 11)):
    """Post-ReLU-like NCHW features: sparse, channel scales differ, some channels all zero."""
    scale = np.exp(rng.normal(size=(1, shape[1]) + (1,) * (len(shape) - 2)))
    x = np.maximum(rng.laplace(size=shape) * scale - 0.3 * scale, 0).astype(np.float32)
    for c in zero_channels:
        if c < shape[1]:
            x[:, c] = 0
    return x


def signed_features(rng, shape=(2, 16, 7, 9)):
    """Linear-bottleneck-like features: signed, dense."""
    scale = np.exp(rng.normal(size=(1, shape[1]) + (1,) * (len(shape) - 2)))
    return (rng.laplace(size=shape) * scale).astype(np.float32)


def smooth_features(rng, shape=(2, 6, 12, 10)):
    """Smooth signed maps (EfficientNet-like linear bottlenecks seen by the DCT): per map a few random
    low-frequency waves plus a little noise, one scale per channel."""
    h, w = shape[-2], shape[-1]
    lead = shape[:-2]
    yy = np.arange(h)[:, None] / max(h, 1)
    xx = np.arange(w)[None, :] / max(w, 1)
    out = np.zeros(shape)
    for _ in range(4):
        fy, fx = rng.uniform(0, 2, size=lead + (1, 1)), rng.uniform(0, 2, size=lead + (1, 1))
        phase = rng.uniform(0, 2 * np.pi, size=lead + (1, 1))
        out += rng.normal(size=lead + (1, 1)) * np.cos(2 * np.pi * (fy * yy + fx * xx) + phase)
    scale = np.exp(rng.normal(size=(1,) * (len(shape) - 3) + (shape[-3], 1, 1))) if len(shape) >= 3 else 1.0
    return ((out + 0.02 * rng.normal(size=shape)) * scale).astype(np.float32)


# Codec configurations the CUDA engine tests run through (host emulation and real GPU alike).
CUDA_CONFIGS = [
    dict(),
    dict(granularity="channel"),
    dict(quantizer="ecsq"),
    dict(tables=4, prob_bits=15),
    dict(tables=16, prob_bits=8, sparse="on"),
    dict(streams=5, sparse="off"),
    dict(clip="percentile", percentile=99.0, granularity="channel", tables=3),
]


# ---------------------------------------------------------------- real tritonserver helpers

def triton_available() -> bool:
    """The bundled tritonserver and tritonclient are importable; CI must have them."""
    if importlib.util.find_spec("pytriton") and importlib.util.find_spec("tritonclient"):
        return True
    if os.environ.get("CI"):
        raise RuntimeError("CI must install nvidia-pytriton and tritonclient for the Triton tests")
    return False


@contextlib.contextmanager
def running_server(repo, tmp_path_factory, timeout=180):
    """A bundled tritonserver on free loopback ports serving ``repo``; always stopped."""
    from splitwire.serve import TritonServer, resolve_ports

    http, grpc, metrics = resolve_ports(0, 0, 0)
    s = TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics,
                     log=tmp_path_factory.mktemp("log") / "tritonserver.log")
    s.start(timeout=timeout)
    try:
        yield s
    finally:
        s.stop()


@contextlib.contextmanager
def private_head_cache(tmp_path_factory):
    """Point SPLITWIRE_CACHE (where clients keep downloaded heads) at a fresh directory."""
    old = os.environ.get("SPLITWIRE_CACHE")
    os.environ["SPLITWIRE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield os.environ["SPLITWIRE_CACHE"]
    finally:
        if old is None:
            os.environ.pop("SPLITWIRE_CACHE", None)
        else:
            os.environ["SPLITWIRE_CACHE"] = old
