"""The cpu engine's one-call decode (compiled header validation + 4-lane rANS) against ``parse`` and
the reference engine: same acceptance, same floats, on valid and on damaged blobs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import codec_cupy as cc
from codec_cupy import _container, _cpu, _transform
from codec_cupy.errors import DecodeError
from conftest import relu_features

from test_codec_hostile import reseal


def _same(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


LAYOUTS = [
    ((2, 16, 7, 9), 1), ((3, 5, 11), 2), ((4, 6, 5, 8), 3), ((13, 17), 0), ((37,), None), ((2, 3, 4, 5, 6), 4),
    ((1, 8, 1, 1), 1), ((5, 7, 3), -1),
]
CONFIGS = [dict(bits=4), dict(bits=2), dict(bits=1), dict(bits=8, granularity="channel"), dict(bits=3, quantizer="ecsq"),
           dict(bits=2, streams=1), dict(bits=4, streams=5, tables=3), dict(bits=2, streams=9, sparse="on")]


@pytest.mark.parametrize("shape,axis", LAYOUTS)
@pytest.mark.parametrize("cfg", CONFIGS)
def test_fast_decode_matches_reference(shape, axis, cfg):
    rng = np.random.default_rng(len(shape) * 31 + (axis or 0))
    x = (rng.laplace(size=shape) * np.exp(rng.normal(size=shape[-1]))).astype(np.float32)
    if axis is not None and axis % 2:
        x = np.maximum(x, 0)
        np.moveaxis(x, axis, 0)[1] = 0                          # an all-zero channel
    try:
        blob = cc.encode(x, cc.CodecConfig(axis=axis, **cfg))
    except cc.ConfigError:
        pytest.skip("configuration not valid for this layout")
    ref = cc.decode(blob, engine="reference")
    _same(cc.decode(blob, engine="cpu"), ref)
    _same(_cpu.decode(_container.parse(blob), blob), ref)


def test_streams_not_a_multiple_of_four():
    x = relu_features(np.random.default_rng(3), (2, 16, 7, 9))
    for streams in range(1, 12):
        blob = cc.encode(x, cc.CodecConfig(bits=2, streams=streams))
        _same(cc.decode(blob, engine="cpu"), cc.decode(blob, engine="reference"))


def _accepts(blob, max_elements=1 << 20):
    try:
        _container.parse(blob, max_elements)
        return True
    except DecodeError:
        return False


@pytest.mark.parametrize("seed", range(3))
def test_compiled_validation_accepts_exactly_what_parse_accepts(seed):
    rng = np.random.default_rng(seed)
    cfgs = [dict(bits=4, streams=3), dict(bits=4, granularity="channel", tables=3),
            dict(bits=3, quantizer="ecsq"), dict(bits=2, sparse="on", tables=5),
            dict(bits=2, pack=4, streams=6), dict(bits=1, pack=8, streams=5),     # the group-table kernel
            dict(transform="dct", block=3, step=0.05), dict(transform="dct", block=4, bits=6, streams=3)]
    for cfg in cfgs:
        x = relu_features(rng, (2, 16, 5, 4))
        blob = cc.encode(x, cc.CodecConfig(**cfg))
        for _ in range(150):
            body = bytearray(blob[:-4])
            for _ in range(int(rng.integers(1, 3))):
                pos = int(rng.integers(5, len(body)))
                if rng.random() < 0.5:
                    body[pos] ^= 1 << int(rng.integers(8))
                elif rng.random() < 0.5:
                    body[pos] = int(rng.integers(256))
                else:
                    del body[pos:pos + int(rng.integers(1, 4))]
            bad = reseal(bytes(body))
            buf = np.frombuffer(bad, np.uint8)
            status = _container.parse_fields(buf, len(bad) - 4, 1 << 20)[0]
            assert (status == _container.H_OK) == _accepts(bad), (cfg, bytes(body).hex())
            try:
                y = cc.decode(bad, engine="cpu", max_elements=1 << 20)
            except DecodeError as exc:
                with pytest.raises(type(exc)):
                    cc.decode(bad, engine="reference", max_elements=1 << 20)
            else:
                _same(y, cc.decode(bad, engine="reference", max_elements=1 << 20))


@pytest.mark.parametrize("seed", range(2))
def test_compiled_validation_of_prior_blobs_accepts_exactly_what_parse_accepts(seed):
    """Version 3 through the compiled path (``decode_prior_blob``): the same acceptance as ``parse``
    on mutated blobs, and the same values or the same error as the reference engine."""
    rng = np.random.default_rng(seed + 10)
    for cfg in (dict(bits=2, streams=5), dict(bits=3, granularity="channel"), dict(bits=3, quantizer="ecsq"),
                dict(transform="dct", block=3, step=0.02, bits=5, streams=3)):
        config = cc.CodecConfig(**cfg)
        xs = [relu_features(rng, (1, 8, 4, 5)) - 0.3 * seed for _ in range(6)]
        prior = cc.fit_prior(xs[:5], config)
        blob = cc.encode(xs[5], config, prior=prior)
        _same(cc.decode(blob, prior=prior), cc.decode(blob, prior=prior, engine="reference"))
        for _ in range(150):
            body = bytearray(blob[:-4])
            pos = int(rng.integers(5, len(body)))
            if rng.random() < 0.5:
                body[pos] ^= 1 << int(rng.integers(8))
            else:
                del body[pos:pos + int(rng.integers(1, 4))]
            bad = reseal(bytes(body))
            status = _container.parse_fields(np.frombuffer(bad, np.uint8), len(bad) - 4, 1 << 20)[0]
            assert (status == _container.H_OK) == _accepts(bad), (cfg, bytes(body).hex())
            try:
                y = cc.decode(bad, engine="cpu", max_elements=1 << 20, prior=prior)
            except DecodeError as exc:
                with pytest.raises(type(exc)):
                    cc.decode(bad, engine="reference", max_elements=1 << 20, prior=prior)
            else:
                _same(y, cc.decode(bad, engine="reference", max_elements=1 << 20, prior=prior))


@pytest.mark.parametrize("shape", [(3, 6, 4, 5), (1, 6, 4, 5), (0, 6, 4, 5)])
@pytest.mark.parametrize("transform", [False, True])
def test_prior_blobs_take_the_compiled_path(shape, transform):
    """Every valid prior blob, an empty batch and a transform included, decodes in the compiled call:
    it does not need ``parse`` (which only explains refusals)."""
    from codec_cupy import _cpu

    rng = np.random.default_rng(3)
    cfg = cc.CodecConfig(transform="dct", block=3, step=0.05) if transform else cc.CodecConfig(bits=2)
    prior = cc.fit_prior([relu_features(rng, (1, 6, 4, 5)) for _ in range(4)], cfg)
    x = relu_features(rng, shape) if shape[0] else np.zeros(shape, np.float32)
    blob = cc.encode(x, cfg, prior=prior)
    y = _cpu.decode_prior_blob(blob, 1 << 20, prior)
    assert y is not None
    _same(y, cc.decode(blob, engine="reference", prior=prior))


def test_version_byte_swapped_between_formats_is_refused_alike():
    """A version-1 body under version byte 2 (no TRANSFORM flag, no block byte) and a version-2 body
    under byte 1 (TRANSFORM is reserved there): the compiled path refuses both, as ``parse`` does."""
    x = relu_features(np.random.default_rng(6), (2, 16, 6, 5))
    for cfg, version in ((dict(bits=4), 2), (dict(transform="dct", block=3), 1)):
        blob = bytearray(cc.encode(x, cc.CodecConfig(**cfg)))
        blob[4] = version
        bad = reseal(bytes(blob[:-4]))
        assert _container.parse_fields(np.frombuffer(bad, np.uint8), len(bad) - 4, 1 << 20)[0] != _container.H_OK
        with pytest.raises(cc.errors.HeaderError):
            cc.decode(bad, engine="cpu")


@pytest.mark.parametrize("shape", [(2, 16, 7, 9), (1, 3, 1, 1), (4, 5), (3, 0, 8), (1, 24, 14, 14)])
@pytest.mark.parametrize("block", [2, 7, 8])
def test_transform_blobs_take_the_compiled_path(shape, block):
    """Version-2 blobs decode in the one-call path (coefficients, then the compiled inverse DCT) to
    the reference engine's floats; a max_elements below the padded coefficient count is refused."""
    x = np.random.default_rng(block).normal(size=shape).astype(np.float32)
    blob = cc.encode(x, cc.CodecConfig(transform="dct", block=block, step=0.03))
    _same(_cpu.decode_blob(blob, 1 << 20), cc.decode(blob, engine="reference"))
    padded = math.prod(_transform.coded_view_shape(shape, block))
    if padded > x.size:
        with pytest.raises(cc.errors.LimitExceededError):
            _cpu.decode_blob(blob, padded - 1)


def test_unusual_max_elements_take_the_parse_path():
    x = relu_features(np.random.default_rng(5))
    blob = cc.encode(x, cc.CodecConfig(bits=4))
    _same(cc.decode(blob, max_elements=1 << 70), cc.decode(blob, engine="reference"))
    with pytest.raises(cc.errors.LimitExceededError):
        cc.decode(blob, max_elements=-1)
    with pytest.raises(cc.errors.LimitExceededError):
        cc.decode(blob, max_elements=x.size - 1)


def test_huge_channel_count_with_an_empty_dimension_is_refused():
    body = bytearray(b"SPWC\x01\x00\x00\x04\x02\x01")          # float32, 4 bits, ndim 2, axis 1
    body += b"\x00" + b"\xff" * 5 + b"\x7f"                     # shape (0, 2**42 - 1)
    body += b"\x00\x00\x80\x3f\x00"                              # scale 1.0, zero point 0
    for max_elements in (1 << 20, 1 << 27):
        with pytest.raises(cc.errors.LimitExceededError):
            cc.decode(reseal(bytes(body)), max_elements=max_elements)


@pytest.mark.parametrize("bits,pack", [(1, 8), (1, 4), (2, 4)])
@pytest.mark.parametrize("shape", [(2, 6, 8, 10), (1, 24, 14, 14), (3, 5, 2, 3)])
@pytest.mark.parametrize("streams", [4, 7])
def test_low_bit_packs_decode_through_the_group_table(bits, pack, shape, streams):
    """Packs of 4 and 8 with shared dequantization and rows of even length take the four-lane
    group-table kernel (``_cpu._chunk_groups``): the floats equal the reference decoder's, with
    groups that cross row ends (rows of 6), a padded last group and an all-zero channel."""
    rng = np.random.default_rng(bits * 100 + pack * 10 + streams)
    x = relu_features(rng, shape)
    x[:, 1] = 0.0
    for sparse in ("auto", "off"):
        blob = cc.encode(x, cc.CodecConfig(bits=bits, pack=pack, streams=streams, sparse=sparse))
        assert cc.inspect(blob)["plan"]["pack"] == pack
        _same(cc.decode(blob, engine="cpu"), cc.decode(blob, engine="reference"))
