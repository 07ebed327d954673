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
