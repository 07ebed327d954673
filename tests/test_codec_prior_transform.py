"""Shared priors on transform blobs (format version 3 with TRANSFORM, FORMAT.md section 9): the DCT
coefficients coded position by position (a sample's blocks x frequencies), the compact quantizer
section, every host engine, edge shapes and hostile bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import codec_cupy as cc
from codec_cupy import _container, _cpu
from codec_cupy._crc32c import crc32c
from codec_cupy.errors import DecodeError, HeaderError, PriorError, PriorMismatchError
from test_codec_prior import assert_damage_is_typed

ENGINES = ("reference", "cpu")


def smooth_maps(rng, n, shape=(1, 6, 10, 12), signed=False):
    """Smooth maps whose energy depends on the channel and the place in the map (what a prior over
    blocks x frequencies models), post-ReLU unless ``signed``."""
    *lead, h, w = shape
    gain = rng.uniform(0.05, 2.0, shape[-3] if len(shape) >= 3 else 1).reshape(-1, 1, 1)
    out = []
    for _ in range(n):
        coarse = rng.normal(size=(*lead, -(-h // 3), -(-w // 3)))
        x = np.repeat(np.repeat(coarse, 3, axis=-2), 3, axis=-1)[..., :h, :w] * gain
        x = x + 0.1 * rng.normal(size=shape)
        out.append((x if signed else np.maximum(x, 0)).astype(np.float32))
    return out


def _same_floats(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(np.ascontiguousarray(a).view(np.uint32), np.ascontiguousarray(b).view(np.uint32))


def _check(x, cfg, prior):
    """Every engine writes the same version-3 bytes, and every engine decodes them to exactly what
    the self-contained (version-2) blob of the same config decodes to."""
    blob = cc.encode(x, cfg, prior=prior)
    assert cc.encode(x, cfg, engine="reference", prior=prior) == blob
    assert blob[4] == _container.VERSION_PRIOR and blob[5] & _container.FLAG_TRANSFORM
    plain = cc.decode(cc.encode(x, cfg))
    for e in ENGINES:
        _same_floats(cc.decode(blob, engine=e, prior=prior), plain)
    return blob


CONFIGS = [
    dict(block=4, step=0.05),
    dict(block=8, step=0.1, frequency_weight=0.5),
    dict(block=5, bits=4, step=0.02),                 # 10 x 12 maps: padded blocks
    dict(block=3, bits=2, step=0.2),
    dict(block=16, step=0.03, streams=5),
]


@pytest.mark.parametrize("fields", CONFIGS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
@pytest.mark.parametrize("signed", [False, True])
def test_round_trip_engines_agree_and_match_the_transform_decode(fields, signed):
    rng = np.random.default_rng(5)
    xs = smooth_maps(rng, 24, signed=signed)
    cfg = cc.CodecConfig(transform="dct", **fields)
    prior = cc.fit_prior(xs[:20], cfg)
    blocks = 6 * -(-10 // cfg.block) * -(-12 // cfg.block)
    assert (prior.channels, prior.inner) == (blocks, cfg.block ** 2)
    for x in xs[20:]:
        _check(x, cfg, prior)


def test_prior_blobs_drop_the_tables_and_most_of_the_quantizer():
    """The blob keeps the per-frequency scales (the same ones as the version-2 blob) in compact
    form and no tables: here a fraction of the version-2 header."""
    rng = np.random.default_rng(6)
    xs = smooth_maps(rng, 30)
    cfg = cc.CodecConfig(transform="dct", block=8, step=0.05, frequency_weight=0.5)
    prior = cc.fit_prior(xs[:28], cfg)
    blob = _check(xs[29], cfg, prior)
    plain = cc.encode(xs[29], cfg)
    h, h2 = _container.parse(blob), _container.parse(plain)
    np.testing.assert_array_equal(h.scale.view(np.uint32), h2.scale.view(np.uint32))
    assert np.all(h.zero_point == 128) and h.block == 8 and h.tensor_shape == xs[29].shape
    info, info2 = cc.inspect(blob, prior=prior), cc.inspect(plain)
    assert info["sizes"]["header_bytes"] < 50 < 3 * 50 < info2["sizes"]["header_bytes"]
    assert info["transform"] == info2["transform"] and info["plan"]["tables"] == prior.ntables


def test_scale_section_round_trips_predicted_and_explicit_scales():
    rng = np.random.default_rng(7)
    for block in (2, 5, 8, 16):
        base, weight = float(rng.uniform(1e-3, 2)), float(rng.choice([0.0, 0.25, 1.5]))
        predicted = _container.predicted_scales(base, weight, block)
        scale = predicted.copy()
        some = rng.random(block * block) < 0.3
        scale[some] = _container.predicted_scales(base * 3, 0.0, block)[some]     # other bf16 values
        section = _container.dct_scale_section(scale, base, weight, block)
        explicit = int(np.count_nonzero(scale.view(np.uint32) != predicted.view(np.uint32)))
        assert len(section) == 8 + -(-block * block // 8) + 2 * explicit
        from codec_cupy._bits import ByteReader
        r = ByteReader(memoryview(section.tobytes()), 0, len(section))
        np.testing.assert_array_equal(_container._dct_prior_scales(r, block, block * block).view(np.uint32),
                                      scale.view(np.uint32))
        assert r.pos == len(section)


def test_ranges_that_do_not_fit_the_step_travel_as_explicit_scales():
    """At 2 bits and a tiny step every frequency's range sets its scale: all of them explicit,
    still the same values as the version-2 blob."""
    rng = np.random.default_rng(8)
    xs = smooth_maps(rng, 12, signed=True)
    cfg = cc.CodecConfig(transform="dct", bits=2, block=4, step=1e-4)
    prior = cc.fit_prior(xs[:10], cfg)
    blob = _check(xs[11], cfg, prior)
    at = _container.FIXED_BYTES + 4 + 1                  # fixed fields, shape, block
    assert blob[at + 8:at + 10] == b"\xff\xff"           # 16 frequencies, every scale explicit


@pytest.mark.parametrize("shape,fit_shape", [
    ((3, 4, 9, 9), (1, 4, 9, 9)),              # a batch: outer = 3
    ((0, 4, 9, 9), (1, 4, 9, 9)),              # an empty batch
    ((9, 13), (9, 13)),                        # one map
    ((4, 9, 9), (4, 9, 9)),                    # channels, no batch dimension
    ((2, 1, 3, 6, 6), (2, 1, 3, 6, 6)),        # samples = prod(shape[:-3])
    ((1, 5, 1, 1), (1, 5, 1, 1)),              # 1 x 1 maps
    ((1, 2, 8, 8), (1, 2, 8, 8)),              # exactly one block per map
])
def test_edge_shapes(shape, fit_shape):
    rng = np.random.default_rng(9)
    cfg = cc.CodecConfig(transform="dct", block=8, step=0.05, bits=6)
    prior = cc.fit_prior(smooth_maps(rng, 6, fit_shape), cfg, tables=4)
    x = smooth_maps(rng, 1, shape)[0] if 0 not in shape else np.zeros(shape, np.float32)
    _check(x, cfg, prior)


@pytest.mark.parametrize("streams", [1, 3, 4, 5, 47, 48, 49])
def test_stream_counts_around_the_symbol_count(streams):
    rng = np.random.default_rng(10)
    cfg = cc.CodecConfig(transform="dct", block=4, step=0.05, streams=streams)
    xs = smooth_maps(rng, 6, (1, 3, 4, 4))                 # 3 blocks x 16 frequencies = 48 positions
    prior = cc.fit_prior(xs[:5], cfg)
    blob = _check(xs[5], cfg, prior)
    per = -(-48 // min(streams, 48))
    assert cc.inspect(blob)["plan"]["streams"] == -(-48 // per)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), bits=st.integers(2, 8), block=st.integers(2, 9),
       channels=st.integers(1, 3), h=st.integers(1, 11), w=st.integers(1, 11),
       step=st.sampled_from([0.005, 0.05, 0.3]), weight=st.sampled_from([0.0, 0.5]), signed=st.booleans(),
       tables=st.integers(1, 40))
def test_property_round_trip(seed, bits, block, channels, h, w, step, weight, signed, tables):
    rng = np.random.default_rng(seed)
    xs = smooth_maps(rng, 4, (1, channels, h, w), signed)
    cfg = cc.CodecConfig(transform="dct", bits=bits, block=block, step=step, frequency_weight=weight)
    prior = cc.fit_prior(xs[:3], cfg, tables=tables)
    again = cc.Prior.from_bytes(prior.to_bytes())
    blob = _check(xs[3], cfg, prior)
    _same_floats(cc.decode(blob, prior=again), cc.decode(blob, prior=prior))


# ------------------------------------------------------------------------------------------------
# the boundary
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def coded():
    rng = np.random.default_rng(12)
    xs = smooth_maps(rng, 12, (1, 3, 8, 8))
    cfg = cc.CodecConfig(transform="dct", block=4, step=0.05, bits=5, frequency_weight=0.5, streams=3)
    prior = cc.fit_prior(xs[:10], cfg)
    return cfg, prior, xs[11], cc.encode(xs[11], cfg, prior=prior)


def _resealed(body: bytes) -> bytes:
    return body + crc32c(np.frombuffer(body, np.uint8)).to_bytes(4, "little")


def _section_at(blob: bytes) -> int:
    """Offset of the compact quantizer section: fixed fields, 4 one-byte shape varints, block."""
    assert blob[_container.FIXED_BYTES + 4] == 4
    return _container.FIXED_BYTES + 4 + 1


def test_the_right_prior_and_only_it(coded):
    cfg, prior, x, blob = coded
    with pytest.raises(PriorError, match="prior="):
        cc.decode(blob)
    other = cc.fit_prior(smooth_maps(np.random.default_rng(13), 3, (1, 3, 8, 8)), cfg)
    with pytest.raises(PriorMismatchError):
        cc.decode(blob, prior=other)
    plain = cc.fit_prior(smooth_maps(np.random.default_rng(13), 3, (1, 3, 8, 8)), cc.CodecConfig(bits=5))
    with pytest.raises(PriorMismatchError):
        cc.decode(blob, prior=plain)
    _same_floats(_cpu.decode_prior_blob(blob, 1 << 20, prior), cc.decode(blob, prior=prior, engine="reference"))
    assert _cpu.decode_prior_blob(blob, 1 << 20, other) is None       # the compiled path leaves errors to parse
    _same_floats(cc.decode(blob, prior=[other, prior]), cc.decode(cc.encode(x, cfg)))


def test_hostile_transform_prior_blobs(coded):
    cfg, prior, x, blob = coded
    for n in range(len(blob)):
        with pytest.raises(DecodeError):
            cc.decode(blob[:n], prior=prior)
    assert_damage_is_typed(blob, prior, np.random.default_rng(14), x.shape)


@pytest.mark.parametrize("field,value,message", [
    ("base", np.float32(np.nan), "scale predictor"),
    ("base", np.float32(-1.0), "scale predictor"),
    ("weight", np.float32(np.inf), "scale predictor"),
    ("base", np.float32(3e38), "finite and > 0"),         # predicted scales overflow
    ("base", np.float32(0.0), "finite and > 0"),          # predicted scales 0
    ("mask_padding", None, "padding"),
    ("bits", 1, "bits >= 2"),
])
def test_hostile_quantizer_sections(coded, field, value, message):
    _, prior, _, blob = coded
    bad = bytearray(blob[:-4])
    at = _section_at(blob)
    if field == "base":
        bad[at:at + 4] = np.array([value], "<f4").tobytes()
    elif field == "weight":
        bad[at + 4:at + 8] = np.array([value], "<f4").tobytes()
    elif field == "mask_padding":
        bad[_container.FIXED_BYTES + 4] = 3          # block 3: 9 frequencies, 2 mask bytes, 7 padding bits
        bad[at + 9] |= 0x80
    elif field == "bits":
        bad[7] = value
    with pytest.raises(HeaderError, match=message):
        cc.decode(_resealed(bytes(bad)), prior=prior)
