"""Shared priors (format version 3, FORMAT.md sections 9-10): fitting, the prior's bytes, blobs coded
with a prior on every host engine, and what the boundary does with hostile priors and blobs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import codec_cupy as cc
from codec_cupy import _container, _prior
from codec_cupy._crc32c import crc32c
from codec_cupy.errors import (ConfigError, DecodeError, HeaderError, InputError, PriorError, PriorMismatchError)

ENGINES = ("reference", "cpu")


def positional_samples(rng, n, shape=(1, 6, 4, 5), signed=False):
    """ReLU-like features whose sparsity depends on the position (what a prior models)."""
    keep = rng.uniform(0.02, 0.9, shape[1:])
    out = []
    for _ in range(n):
        x = rng.exponential(1.0, shape) * (1.0 + keep)
        if signed:
            x = x - rng.exponential(0.5, shape)
        else:
            x = np.where(rng.random(shape) < keep, x, 0.0)
        out.append(x.astype(np.float32))
    return out


CONFIGS = [
    dict(bits=1),
    dict(bits=2, clip="percentile", percentile=99.0),
    dict(bits=4, granularity="channel"),
    dict(bits=3, quantizer="ecsq"),
    dict(bits=8, streams=7),
    dict(bits=5, granularity="channel", clip="mse"),
]


@pytest.fixture(scope="module")
def samples():
    return positional_samples(np.random.default_rng(11), 40)


def _same_floats(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(np.ascontiguousarray(a).view(np.uint32), np.ascontiguousarray(b).view(np.uint32))


@pytest.mark.parametrize("fields", CONFIGS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_round_trip_engines_agree_and_match_the_plain_decode(samples, fields):
    """Same quantizer, other model: the prior blob decodes to exactly what the self-contained blob
    decodes to, every engine writes the same bytes and reads every engine's."""
    cfg = cc.CodecConfig(**fields)
    prior = cc.fit_prior(samples[:30], cfg)
    for x in samples[30:34]:
        blobs = {e: cc.encode(x, cfg, engine=e, prior=prior) for e in ENGINES}
        assert blobs["reference"] == blobs["cpu"]
        blob = blobs["cpu"]
        assert blob[4] == _container.VERSION_PRIOR
        plain = cc.decode(cc.encode(x, cfg))
        for e in ENGINES:
            _same_floats(cc.decode(blob, engine=e, prior=prior), plain)


def test_signed_features_code_symbols_relative_to_the_zero_point():
    """Per-sample zero points move the symbols of signed features; a prior blob codes them relative
    to the zero point, so a prior fitted on other samples still predicts them."""
    rng = np.random.default_rng(4)
    xs = [(rng.normal(size=(1, 4, 6, 6)) * rng.uniform(0.5, 2.0)).astype(np.float32) for _ in range(40)]
    cfg = cc.CodecConfig(bits=2)
    zeros = {cc.inspect(cc.encode(x, cfg))["zero_point"][0] for x in xs}
    assert len(zeros) > 1                                            # the zero point does move
    prior = cc.fit_prior(xs[:30], cfg)
    for x in xs[30:]:
        blob = cc.encode(x, cfg, prior=prior)
        for e in ENGINES:
            _same_floats(cc.decode(blob, engine=e, prior=prior), cc.decode(cc.encode(x, cfg)))
    from codec_cupy import _container
    q = np.array([[0, 1, 2, 3], [3, 0, 1, 2]], np.uint8)
    assert _container.zero_relative(q, [2, 0], 2).tolist() == [[2, 3, 0, 1], [3, 0, 1, 2]]


def test_prior_blobs_are_smaller_where_positions_differ(samples):
    cfg = cc.CodecConfig(bits=2)
    prior = cc.fit_prior(samples[:30], cfg)
    with_prior = sum(len(cc.encode(x, cfg, prior=prior)) for x in samples[30:])
    without = sum(len(cc.encode(x, cfg)) for x in samples[30:])
    assert with_prior < 0.95 * without


def test_inspect_names_the_prior(samples):
    cfg = cc.CodecConfig(bits=2)
    prior = cc.fit_prior(samples[:10], cfg, tables=8, prob_bits=10)
    blob = cc.encode(samples[20], cfg, prior=prior)
    info = cc.inspect(blob)
    assert info["version"] == 3 and info["prior"] == f"{prior.id:#010x}"
    assert info["plan"]["tables"] is None and info["plan"]["prob_bits"] is None
    assert info["plan"]["packed_symbols"] == samples[20].size and info["plan"]["pack"] == 1
    full = cc.inspect(blob, prior=prior)
    assert full["plan"]["tables"] == prior.ntables <= 8 and full["plan"]["prob_bits"] == 10
    assert full["shape"] == list(samples[20].shape)
    assert cc.inspect(cc.encode(samples[20], cfg))["prior"] is None


def test_a_batch_and_empty_tensors_use_the_prior_of_one_sample(samples):
    """The prior covers one sample's (C, inner) positions; a batch (outer > 1) and an empty batch
    are coded position by position, outer index last."""
    cfg = cc.CodecConfig(bits=3, granularity="channel")
    prior = cc.fit_prior(samples[:20], cfg)
    batch = np.concatenate(samples[20:25])
    for x in (batch, batch[:0], batch[:1]):
        blob = cc.encode(x, cfg, prior=prior)
        assert cc.encode(x, cfg, engine="reference", prior=prior) == blob
        for e in ENGINES:
            _same_floats(cc.decode(blob, engine=e, prior=prior), cc.decode(cc.encode(x, cfg)))


@pytest.mark.parametrize("shape,axis", [((1, 1, 1, 1), 1), ((7,), None), ((), None), ((2, 3), 0), ((3, 4, 5), -1)])
def test_edge_shapes(shape, axis):
    rng = np.random.default_rng(3)
    cfg = cc.CodecConfig(bits=4, axis=axis)
    xs = [rng.normal(size=shape).astype(np.float32) for _ in range(5)]
    prior = cc.fit_prior(xs[:4], cfg)
    blob = cc.encode(xs[4], cfg, prior=prior)
    assert cc.encode(xs[4], cfg, engine="reference", prior=prior) == blob
    for e in ENGINES:
        _same_floats(cc.decode(blob, engine=e, prior=prior), cc.decode(cc.encode(xs[4], cfg)))


@pytest.mark.parametrize("streams", [1, 2, 4, 5, 119, 120, 121])
def test_stream_counts_around_the_symbol_count(samples, streams):
    cfg = cc.CodecConfig(bits=2, streams=streams)
    prior = cc.fit_prior(samples[:10], cfg)           # 120 positions per sample
    blob = cc.encode(samples[12], cfg, prior=prior)
    per = -(-120 // min(streams, 120))
    assert cc.inspect(blob)["plan"]["streams"] == -(-120 // per)         # no empty stream (FORMAT.md 4)
    assert cc.encode(samples[12], cfg, engine="reference", prior=prior) == blob
    _same_floats(cc.decode(blob, prior=prior), cc.decode(blob, prior=prior, engine="reference"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), bits=st.integers(1, 8), tables=st.integers(1, 300),
       prob_bits=st.integers(8, 15), channels=st.integers(1, 5), inner=st.integers(1, 9),
       granularity=st.sampled_from(["tensor", "channel"]), signed=st.booleans())
def test_property_round_trip(seed, bits, tables, prob_bits, channels, inner, granularity, signed):
    rng = np.random.default_rng(seed)
    xs = positional_samples(rng, 4, (1, channels, inner), signed)
    cfg = cc.CodecConfig(bits=bits, granularity=granularity)
    if tables > _prior.MAX_TABLES:
        with pytest.raises(ConfigError, match="tables"):
            cc.fit_prior(xs, cfg, tables=tables)
        return
    prior = cc.fit_prior(xs[:3], cfg, tables=tables, prob_bits=prob_bits)
    assert prior.ntables <= min(tables, channels * inner)
    again = cc.Prior.from_bytes(prior.to_bytes())
    assert again.id == prior.id and np.array_equal(again.freqs, prior.freqs)
    blob = cc.encode(xs[3], cfg, prior=prior)
    assert cc.encode(xs[3], cfg, engine="reference", prior=prior) == blob
    _same_floats(cc.decode(blob, prior=again), cc.decode(cc.encode(xs[3], cfg)))


# ------------------------------------------------------------------------------------------------
# the prior itself
# ------------------------------------------------------------------------------------------------

def test_fit_is_deterministic_and_saves(samples, tmp_path):
    cfg = cc.CodecConfig(bits=2)
    a = cc.fit_prior(samples[:20], cfg)
    b = cc.fit_prior(iter(samples[:20]), cfg)          # any iterable
    assert a.to_bytes() == b.to_bytes() and a.id == b.id
    path = a.save(tmp_path / "p.swprior")
    assert cc.Prior.load(path).id == a.id
    assert np.all(a.freqs >= 1) and np.all(a.freqs.sum(axis=1) == 1 << a.prob_bits)
    assert "channels=6" in repr(a)


@pytest.mark.parametrize("fields", CONFIGS + [dict(bits=6, transform="dct", block=4, frequency_weight=0.5)],
                         ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_every_host_engine_fits_the_same_prior(samples, fields):
    """fit_prior quantizes with the fastest engine by default; the engines make the same symbols."""
    cfg = cc.CodecConfig(**fields)
    fitted = {e: cc.fit_prior(samples[:12], cfg, engine=e).to_bytes() for e in ENGINES + ("auto",)}
    assert len(set(fitted.values())) == 1


def test_fit_rejects_what_it_cannot_fit(samples):
    with pytest.raises(ConfigError, match="at least one sample"):
        cc.fit_prior([], cc.CodecConfig())
    with pytest.raises(ConfigError, match="bits >= 2"):
        cc.fit_prior(samples, cc.CodecConfig(bits=1, transform="dct"))
    with pytest.raises(ConfigError, match="prob_bits"):
        cc.fit_prior(samples, cc.CodecConfig(), prob_bits=16)
    with pytest.raises(InputError, match="same view"):
        cc.fit_prior([samples[0], samples[1][:, :3]], cc.CodecConfig())
    with pytest.raises(InputError, match="NaN"):
        cc.fit_prior([np.full((1, 2, 2), np.nan, np.float32)], cc.CodecConfig())
    with pytest.raises(ConfigError, match="runs on the CPU"):
        cc.fit_prior(samples, cc.CodecConfig(), engine="cuda")
    with pytest.raises(ConfigError, match="engine='gpu' is not valid"):
        cc.fit_prior(samples, cc.CodecConfig(), engine="gpu")


def test_encode_checks_the_prior_fits(samples):
    prior = cc.fit_prior(samples[:5], cc.CodecConfig(bits=2))
    with pytest.raises(InputError, match="fit a prior"):
        cc.encode(samples[0][:, :3], cc.CodecConfig(bits=2), prior=prior)
    with pytest.raises(InputError, match="2-bit"):
        cc.encode(samples[0], cc.CodecConfig(bits=3), prior=prior)
    with pytest.raises(InputError, match="this tensor is 6 blocks of 64 coefficients"):
        cc.encode(samples[0], cc.CodecConfig(bits=2, transform="dct"), prior=prior)
    with pytest.raises(ConfigError, match="bits >= 2"):
        cc.encode(samples[0], cc.CodecConfig(bits=1, transform="dct"), prior=prior)
    with pytest.raises(ConfigError, match="codec_cupy.Prior"):
        cc.encode(samples[0], cc.CodecConfig(bits=2), prior=prior.to_bytes())


def test_decode_needs_the_right_prior(samples):
    cfg = cc.CodecConfig(bits=2)
    prior = cc.fit_prior(samples[:10], cfg)
    other = cc.fit_prior(samples[10:20], cfg)
    blob = cc.encode(samples[25], cfg, prior=prior)
    for e in ENGINES:
        with pytest.raises(PriorError, match="prior=") as info:
            cc.decode(blob, engine=e)
        assert not isinstance(info.value, PriorMismatchError)
        with pytest.raises(PriorMismatchError, match=f"{prior.id:#010x}"):
            cc.decode(blob, engine=e, prior=other)
    # a list of priors is searched by id; a self-contained blob ignores the prior
    _same_floats(cc.decode(blob, prior=[other, prior]), cc.decode(blob, prior=prior))
    plain = cc.encode(samples[25], cfg)
    _same_floats(cc.decode(plain, prior=other), cc.decode(plain))
    ys = cc.decode_batch([blob, plain], device="cpu", prior=[prior])
    _same_floats(ys[0], cc.decode(blob, prior=prior))
    with pytest.raises(ConfigError, match="Prior"):
        cc.decode(blob, prior="p")


def _forge(fields: bytes) -> bytes:
    """Prior bytes with a valid CRC around ``fields`` (everything before the CRC)."""
    return fields + crc32c(np.frombuffer(fields, np.uint8)).to_bytes(4, "little")


def test_hostile_prior_bytes():
    good = cc.fit_prior(positional_samples(np.random.default_rng(1), 8, (1, 3, 5)), cc.CodecConfig(bits=2),
                        tables=4).to_bytes()
    for n in range(len(good)):                                    # every truncation
        with pytest.raises(PriorError):
            cc.Prior.from_bytes(good[:n])
    for i in range(len(good)):                                    # every byte flipped: the CRC
        bad = bytearray(good)
        bad[i] ^= 0x5A
        with pytest.raises(PriorError):
            cc.Prior.from_bytes(bytes(bad))
    body = good[:-4]
    cases = {
        "magic": b"XXXX" + body[4:],
        "version": body[:4] + b"\x02" + body[5:],
        "bits=0": body[:5] + b"\x00" + body[6:],
        "prob_bits=7": body[:6] + b"\x07" + body[7:],
        "tables for": body[:7] + b"\xff" + body[8:],              # 256 tables for 15 positions
        "after the tables": body + b"\x00",
        "at least one position": body[:8] + b"\x00\x05" + body[10:],
        "max_positions": body[:8] + b"\xff\xff\xff\x7f\x05" + body[10:],
    }
    for what, fields in cases.items():
        with pytest.raises(PriorError):
            cc.Prior.from_bytes(_forge(fields))
    # a valid serialization of invalid models: a zero frequency, a table outside the map
    with pytest.raises(PriorError, match="frequency is 0"):
        _prior.build(1, 8, 1, 2, [0, 0], [[256, 0]])
    with pytest.raises(PriorError, match="table map"):
        _prior.build(1, 8, 2, 2, [0, 1, 2, 3], [[128, 128]] * 3)
    with pytest.raises(PriorError, match="sum"):
        _prior.build(1, 8, 1, 2, [0, 0], [[128, 127]])
    with pytest.raises(PriorError, match="max_positions"):
        cc.Prior.from_bytes(good, max_positions=14)
    with pytest.raises(ConfigError):
        cc.Prior.from_bytes("not bytes")


def assert_damage_is_typed(blob, prior, rng, shape=None, n=300):
    """One random byte of ``blob`` replaced (CRC fixed up), ``n`` times: every engine raises a
    ``DecodeError`` or returns float32 (of ``shape``, if given)."""
    for _ in range(n):
        bad = bytearray(blob[:-4])
        bad[int(rng.integers(4, len(bad)))] = int(rng.integers(0, 256))
        bad = _container.MAGIC + bytes(bad[4:])
        bad += crc32c(np.frombuffer(bytes(bad), np.uint8)).to_bytes(4, "little")
        for e in ENGINES:
            try:
                y = cc.decode(bad, prior=prior, engine=e)
            except DecodeError:
                continue
            assert y.dtype == np.float32 and (shape is None or y.shape == shape)


def test_hostile_prior_blobs(samples):
    """Version-3 blobs: truncations, damaged bytes (with the CRC fixed up) and reserved flags raise
    typed errors and never anything else."""
    cfg = cc.CodecConfig(bits=3, streams=3)
    prior = cc.fit_prior(samples[:10], cfg)
    blob = cc.encode(samples[30], cfg, prior=prior)
    for n in range(len(blob)):
        with pytest.raises(DecodeError):
            cc.decode(blob[:n], prior=prior)
    assert_damage_is_typed(blob, prior, np.random.default_rng(0))
    for flag, message in ((_container.FLAG_ZERO_MASK, "reserved"), (0x20, "reserved"),
                          (_container.FLAG_TRANSFORM, "TRANSFORM blobs carry axis=255")):
        bad = bytearray(blob[:-4])
        bad[5] |= flag
        bad += crc32c(np.frombuffer(bytes(bad), np.uint8)).to_bytes(4, "little")
        with pytest.raises(HeaderError, match=message):
            cc.decode(bytes(bad), prior=prior)
    bad = bytearray(blob[:-4])
    bad[5] &= ~_container.FLAG_PRIOR
    bad += crc32c(np.frombuffer(bytes(bad), np.uint8)).to_bytes(4, "little")
    with pytest.raises(HeaderError, match="PRIOR"):
        cc.decode(bytes(bad), prior=prior)
