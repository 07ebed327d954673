"""transform="dct" (format version 2): round trips, engine agreement, the exact inverse, hostile headers."""

import hashlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import codec_cupy as cc
from codec_cupy import _container, _transform
from codec_cupy._bits import put_uvarint
from codec_cupy._crc32c import crc32c
from codec_cupy.errors import (ConfigError, DecodeError, HeaderError, InputError, LimitExceededError,
                               UnsupportedVersionError)
from conftest import smooth_features

ENGINES = ["reference", "cpu"]


def reseal(body: bytes) -> bytes:
    return body + crc32c(body).to_bytes(4, "little")


def bits_of(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


# ------------------------------------------------------------------------------------------------
# the transform itself
# ------------------------------------------------------------------------------------------------

def test_basis_tables_are_pinned():
    """The integer bases are part of the format: a change here changes every decoded tensor."""
    digest = hashlib.sha256(b"".join(_transform.basis_int(b).astype("<i4").tobytes()
                                     for b in range(_transform.MIN_BLOCK, _transform.MAX_BLOCK + 1)))
    assert digest.hexdigest()[:16] == BASIS_DIGEST


BASIS_DIGEST = hashlib.sha256(b"".join(
    np.rint(np.where(np.arange(b)[:, None] == 0, np.sqrt(1 / b), np.sqrt(2 / b))
            * np.cos(np.pi * (2 * np.arange(b)[None, :] + 1) * np.arange(b)[:, None] / (2 * b)) * 32768)
    .astype("<i4").tobytes() for b in range(2, 17))).hexdigest()[:16]


@pytest.mark.parametrize("block", range(2, 17))
def test_basis_is_orthonormal_to_its_rounding(block):
    t = _transform.basis(block, np.float64)
    np.testing.assert_allclose(t @ t.T, np.eye(block), atol=block * 2.0 ** -14)


@pytest.mark.parametrize("block", [2, 3, 7, 8, 16])
@pytest.mark.parametrize("shape", [(1, 1), (5, 9), (3, 16, 16), (2, 3, 13, 6)])
def test_inverse_undoes_forward(block, shape):
    x = smooth_features(np.random.default_rng(block), shape) if len(shape) >= 3 else \
        np.random.default_rng(block).normal(size=shape).astype(np.float32)
    coef = _transform.forward(x, block)
    assert coef.shape == _transform.coded_view_shape(x.shape, block) and coef.dtype == np.float32
    y = _transform.inverse(coef, x.shape, block)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, x, atol=1e-3 * (1 + np.abs(x).max()))


def test_inverse_follows_the_specified_operation_order():
    """FORMAT.md section 8 written out with Python floats rounded to float32 after every operation."""
    rng = np.random.default_rng(3)
    block, shape = 3, (1, 4, 5)
    coef = (rng.normal(size=_transform.coded_view_shape(shape, block)) * 10.0 ** rng.uniform(-3, 3, size=(4, 9)))
    coef = coef.astype(np.float32)
    t = _transform.basis(block)
    f32 = np.float32
    out = np.zeros((2 * block, 2 * block), np.float32)
    for p in range(4):
        c = coef[p].reshape(block, block)
        rows = np.zeros((block, block), np.float32)
        for u in range(block):
            for j in range(block):
                acc = f32(c[u, 0] * t[0, j])
                for v in range(1, block):
                    acc = f32(acc + f32(c[u, v] * t[v, j]))
                rows[u, j] = acc
        by, bx = divmod(p, 2)
        for i in range(block):
            for j in range(block):
                acc = f32(t[0, i] * rows[0, j])
                for u in range(1, block):
                    acc = f32(acc + f32(t[u, i] * rows[u, j]))
                out[by * block + i, bx * block + j] = acc
    expect = out[None, :4, :5]
    np.testing.assert_array_equal(bits_of(_transform.inverse(coef, shape, block)), bits_of(expect))


@pytest.mark.parametrize("block", range(2, 17))
def test_cpu_engine_inverse_is_the_reference_bit_for_bit(block):
    from codec_cupy import _cpu

    rng = np.random.default_rng(block)
    for shape in ((3, 5, 7, 9), (1, 1, 1), (2, 17, 16), (1, 2 * block, 3 * block + 1), (80, 2 * block, 2 * block - 1)):
        view = _transform.coded_view_shape(shape, block)
        coef = (rng.normal(size=view) * 10.0 ** rng.uniform(-3, 3, size=view)).astype(np.float32)
        coef[0, :2] = -0.0
        np.testing.assert_array_equal(bits_of(_cpu.inverse_transform(coef, shape, block)),
                                      bits_of(_transform.inverse(coef, shape, block)))


def test_forward_follows_the_specified_operation_order():
    """The encoder's forward DCT (docstring of ``_transform.forward``) with Python floats (float64),
    one rounding to float32 at the end: fixed so that every engine and machine writes the same bytes."""
    rng = np.random.default_rng(4)
    block, shape = 3, (1, 4, 5)
    x = (rng.normal(size=shape) * 10.0 ** rng.uniform(-3, 3, size=shape)).astype(np.float32)
    t = _transform.basis(block, np.float64)
    padded = np.pad(x[0].astype(np.float64), ((0, 2), (0, 1)), mode="edge")
    expect = np.empty((4, block * block), np.float32)
    for p in range(4):
        by, bx = divmod(p, 2)
        xb = padded[by * block:(by + 1) * block, bx * block:(bx + 1) * block]
        rows = [[sum_in_order(float(t[u, i]) * float(xb[i, j]) for i in range(block)) for j in range(block)]
                for u in range(block)]
        for u in range(block):
            for v in range(block):
                expect[p, u * block + v] = sum_in_order(rows[u][j] * float(t[v, j]) for j in range(block))
    np.testing.assert_array_equal(bits_of(_transform.forward(x, block)), bits_of(expect))


def sum_in_order(terms) -> float:
    terms = iter(terms)
    acc = next(terms)
    for term in terms:
        acc = acc + term
    return acc


@pytest.mark.parametrize("block", range(2, 17))
def test_cpu_engine_forward_is_the_reference_bit_for_bit(block):
    from codec_cupy import _cpu

    rng = np.random.default_rng(block + 100)
    for shape in ((3, 5, 7, 9), (1, 1, 1), (2, 17, 16), (1, 2 * block, 3 * block + 1), (0, 4, 4), (2, 0, 3),
                  (80, 2 * block, 2 * block - 1)):      # 320 blocks: more than one pass of lanes
        x = (rng.normal(size=shape) * 10.0 ** rng.uniform(-3, 3, size=shape)).astype(np.float32)
        ref = _transform.forward(x, block)
        got = _cpu.forward_transform(x, block)
        assert got.shape == ref.shape and got.dtype == np.float32
        np.testing.assert_array_equal(bits_of(got), bits_of(ref))


# ------------------------------------------------------------------------------------------------
# encode / decode
# ------------------------------------------------------------------------------------------------

shapes = st.lists(st.integers(0, 19), min_size=2, max_size=4).map(tuple)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes, block=st.integers(2, 16), bits=st.integers(1, 8), step=st.sampled_from([0.003, 0.02, 0.1, 1.0]),
       seed=st.integers(0, 2 ** 16), f16=st.booleans())
def test_round_trip_engines_agree(shape, block, bits, step, seed, f16):
    x = smooth_features(np.random.default_rng(seed), shape) if 0 not in shape and len(shape) >= 3 else \
        np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    if f16:
        x = x.astype(np.float16)
    cfg = cc.CodecConfig(transform="dct", block=block, bits=bits, step=step)
    blob = cc.encode(x, cfg, engine="reference")
    assert cc.encode(x, cfg, engine="cpu") == blob
    assert blob[4] == 2
    ref = cc.decode(blob, engine="reference")
    for engine in ("cpu", "auto"):
        np.testing.assert_array_equal(bits_of(cc.decode(blob, engine=engine)), bits_of(ref))
    assert ref.shape == x.shape and ref.dtype == np.float32
    info = cc.inspect(blob)
    assert info["version"] == 2 and info["shape"] == list(x.shape) and info["elements"] == x.size
    assert info["transform"] == {"kind": "dct", "block": block,
                                 "coded_shape": list(_transform.coded_view_shape(x.shape, block))}
    if x.size:
        # each frequency's error is at most one of its steps (half a step, one more where a zero point
        # rounds against the range); the orthonormal inverse keeps a block's error norm
        h = _container.parse(blob)
        bound = block * float(h.scale.max()) + 1e-3 * float(np.abs(x.astype(np.float32)).max())
        assert float(np.abs(ref - x.astype(np.float32)).max()) <= bound


def test_smooth_maps_cost_fewer_bits_than_element_coding():
    """Why the transform exists: at equal reconstruction error, smooth maps code smaller."""
    x = smooth_features(np.random.default_rng(5), (1, 16, 32, 32))
    plain = cc.encode(x, cc.CodecConfig(bits=6))
    err = float(np.sqrt(np.mean((cc.decode(plain) - x) ** 2)))
    for step in (0.06, 0.04, 0.03, 0.02, 0.015, 0.01):
        blob = cc.encode(x, cc.CodecConfig(transform="dct", block=8, step=step))
        if float(np.sqrt(np.mean((cc.decode(blob) - x) ** 2))) <= err:
            break
    else:
        pytest.fail("no step reached the 6-bit error")
    assert len(blob) < 0.6 * len(plain)


def test_zero_tensor_and_batch_decode():
    z = np.zeros((2, 3, 9, 9), np.float32)
    blob = cc.encode(z, cc.CodecConfig(transform="dct"))
    assert np.array_equal(cc.decode(blob), z) and cc.inspect(blob)["plan"]["channels"] == 64
    x = smooth_features(np.random.default_rng(1), (1, 4, 10, 10))
    blobs = [cc.encode(x, cc.CodecConfig(transform="dct", block=4)), cc.encode(x, cc.CodecConfig(bits=4))]
    out = cc.decode_batch(blobs, device="cpu")
    assert [o.shape for o in out] == [x.shape, x.shape]
    np.testing.assert_array_equal(out[0], cc.decode(blobs[0]))
    assert blobs[1][4] == 1                                  # no transform: still version 1


def test_config_and_input_errors():
    with pytest.raises(ConfigError, match="transform"):
        cc.CodecConfig(transform="wavelet")
    for bad in (dict(quantizer="ecsq"), dict(granularity="channel"), dict(clip="mse")):
        with pytest.raises(ConfigError, match="step"):
            cc.CodecConfig(transform="dct", **bad)
    for block in (1, 17, 8.0, True):
        with pytest.raises(ConfigError, match="block"):
            cc.CodecConfig(transform="dct", block=block)
    for step in (0, -0.1, 1.5, float("nan"), "0.1"):
        with pytest.raises(ConfigError, match="step"):
            cc.CodecConfig(transform="dct", step=step)
    for weight in (-0.1, 17, float("inf"), True):
        with pytest.raises(ConfigError, match="frequency_weight"):
            cc.CodecConfig(transform="dct", frequency_weight=weight)
    for x in (np.ones(5, np.float32), np.array(1.0, np.float32)):
        with pytest.raises(InputError, match="2 dimensions"):
            cc.encode(x, cc.CodecConfig(transform="dct"))
    with pytest.raises(InputError, match="NaN"):
        cc.encode(np.array([[1.0, np.nan]], np.float32), cc.CodecConfig(transform="dct"))
    with pytest.raises(InputError, match="overflow"):
        cc.encode(np.full((4, 4), 3e38, np.float32), cc.CodecConfig(transform="dct", block=4))


# ------------------------------------------------------------------------------------------------
# hostile version-2 headers
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def blob():
    return cc.encode(smooth_features(np.random.default_rng(2), (1, 3, 11, 13)),
                     cc.CodecConfig(transform="dct", block=4, step=0.05, streams=2))


def _head(version=2, flags=9, ndim=2, axis=255, shape=(6, 6), block=4, bits=4):
    out = bytearray(b"SPWC") + bytes((version, flags, 0, bits, ndim, axis))
    for d in shape:
        put_uvarint(out, d)
    return out + bytes((block,))


@pytest.mark.parametrize("body, error", [
    (_head(flags=1), HeaderError),                       # version 2 without the TRANSFORM flag
    (_head(version=1), HeaderError),                     # TRANSFORM is not a version-1 flag
    (_head(version=4), UnsupportedVersionError),
    (_head(version=3), HeaderError),                     # version 3 (a prior) has no TRANSFORM flag
    (_head(block=1), HeaderError),
    (_head(block=17), HeaderError),
    (_head(ndim=1, shape=(6,)), HeaderError),            # maps need two dimensions
    (_head(axis=0), HeaderError),
    (_head(flags=8), HeaderError),                       # per-frequency scales are required
    (_head(flags=11), HeaderError),                      # ... and ECSQ is not allowed
    (_head(shape=(1 << 12, 1, 1), ndim=3, block=16), LimitExceededError),   # padding: 256 x the elements
])
def test_bad_transform_headers(body, error):
    with pytest.raises(error):
        cc.decode(reseal(bytes(body) + bytes(8)), max_elements=1 << 16)


def test_padding_bomb_is_refused_before_allocating():
    """Elements within max_elements, but 16 x 16 blocks around 1-wide maps would allocate 2**28."""
    for shape in ((1 << 20, 1, 1), (3, 1 << 24)):
        body = _head(ndim=len(shape), shape=shape, block=16)
        with pytest.raises(LimitExceededError, match="blocks"):
            cc.decode(reseal(bytes(body) + bytes(8)))


@pytest.mark.parametrize("engine", ENGINES)
def test_every_truncation_is_rejected(blob, engine):
    for n in range(len(blob)):
        with pytest.raises(DecodeError):
            cc.decode(blob[:n], engine=engine)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutations_raise_typed_errors_or_agree(blob, data):
    """Random edits with a resealed CRC: both engines raise a DecodeError or return the same floats."""
    body = bytearray(blob[:-4])
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(body) - 1))
        if data.draw(st.booleans()):
            body[pos] ^= 1 << data.draw(st.integers(0, 7))
        else:
            body[pos] = data.draw(st.integers(0, 255))
    candidate = reseal(bytes(body))
    results = []
    for engine in ENGINES:
        try:
            results.append(bits_of(cc.decode(candidate, engine=engine, max_elements=1 << 20)))
        except DecodeError as exc:
            results.append(type(exc))
    if isinstance(results[0], np.ndarray):
        assert isinstance(results[1], np.ndarray) and np.array_equal(results[0], results[1])
    else:
        assert results[0] is results[1]


def test_scale_floor_is_the_step():
    """Quiet frequencies get the common step (not their own tiny range), loud ones their range / qmax."""
    x = smooth_features(np.random.default_rng(4), (1, 2, 16, 16))
    step = 0.05
    h = _container.parse(cc.encode(x, cc.CodecConfig(transform="dct", block=8, step=step, bits=8)))
    floor = step * (max(float(x.max()), 0.0) - min(float(x.min()), 0.0))
    assert h.per_channel and h.scale.shape == (64,)
    assert np.all(h.scale >= np.float32(floor) * (1 - 2 ** -8))
    assert np.sum(np.isclose(h.scale, h.scale.min(), rtol=2 ** -7)) > 32


def test_frequency_weight_coarsens_the_fine_frequencies():
    """step * (1 + w * (u + v)): the floors grow with u + v, the DC keeps the plain step, and the
    blob gets smaller (the bytes still agree between engines)."""
    x = smooth_features(np.random.default_rng(6), (1, 3, 16, 16))
    floor = 0.03 * (max(float(x.max()), 0.0) - min(float(x.min()), 0.0))
    plain = cc.encode(x, cc.CodecConfig(transform="dct", block=4, step=0.03))
    cfg = cc.CodecConfig(transform="dct", block=4, step=0.03, frequency_weight=0.5)
    weighted = cc.encode(x, cfg)
    assert weighted == cc.encode(x, cfg, engine="reference") and len(weighted) < len(plain)
    scale = _container.parse(weighted).scale
    u, v = np.divmod(np.arange(16), 4)
    assert np.all(scale >= np.float32(floor * (1 + 0.5 * (u + v))) * (1 - 2 ** -8))
    assert scale[15] >= 3.9 * floor and scale[0] < 2 * floor
