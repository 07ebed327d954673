"""The cpu engine's chunked 4-lane decoder: every chunk kernel (u64 pairs, single values, any k /
stride / per-channel values), chunks cut at row and channel ends and at padding, and word reads
bounded by the end of the blob, against the reference engine."""

from __future__ import annotations

import numpy as np
import pytest

import codec_cupy as cc
from codec_cupy import _container
from codec_cupy._bits import put_uvarint
from codec_cupy.errors import CorruptStreamError
from test_codec_hostile import reseal

LAYOUTS = [(8, 24, 14, 14), (3, 10, 7, 9), (2, 12, 5), (40, 6), (1, 40, 28, 28)]
CONFIGS = [dict(bits=4, pack=2), dict(bits=4, pack=1), dict(bits=4, pack=2, granularity="channel"),
           dict(bits=4, pack=1, granularity="channel"), dict(bits=3, pack=2, tables=5), dict(bits=2, pack=4),
           dict(bits=4, pack=2, quantizer="ecsq"), dict(bits=4, pack=2, streams=7)]


def _features(shape, seed):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.laplace(size=shape), 0).astype(np.float32)
    if len(shape) > 1:
        x[:, 1] = 0                                            # a zero-mask channel
    return x


def _same(a, b):
    assert a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("shape", LAYOUTS)
@pytest.mark.parametrize("cfg", CONFIGS)
def test_chunk_kernels_match_reference(shape, cfg):
    blob = cc.encode(_features(shape, len(shape)), cc.CodecConfig(**cfg))
    _same(cc.decode(blob, engine="cpu"), cc.decode(blob, engine="reference"))


def test_unaligned_blob_buffer():
    blob = cc.encode(_features((2, 16, 6, 6), 1), cc.CodecConfig(bits=4, pack=2))
    raw = bytearray(len(blob) + 1)
    raw[1:] = blob
    _same(cc.decode(memoryview(raw)[1:], engine="cpu"), cc.decode(blob, engine="reference"))


def _directory(nwords) -> bytes:
    out = bytearray()
    for v in [len(nwords), *nwords]:
        put_uvarint(out, v)
    return bytes(out)


def _drop_words(blob: bytes, stream: int, drop: int) -> bytes:
    """The blob with the last ``drop`` words of ``stream`` removed and its word count lowered."""
    h = _container.parse(blob)
    nwords = [int(w) for w in h.nwords]
    head = blob[:h.payload_offset - len(_directory(nwords))]
    cut = h.payload_offset + sum(4 + 2 * w for w in nwords[:stream + 1])
    nwords[stream] -= drop
    return reseal(head + _directory(nwords) + blob[h.payload_offset:cut - 2 * drop] + blob[cut:-4])


@pytest.mark.parametrize("stream", [0, 3])
@pytest.mark.parametrize("engine", ["reference", "cpu"])
def test_stream_short_of_words(stream, engine):
    """Lane 3 is the blob's last stream: its reads run into the CRC and past the blob's end."""
    blob = cc.encode(_features((2, 16, 8, 8), 5), cc.CodecConfig(bits=4, pack=2, streams=4, sparse="off"))
    for drop in (1, 5, 40):
        with pytest.raises(CorruptStreamError, match=f"stream {stream}"):
            cc.decode(_drop_words(blob, stream, drop), engine=engine)
