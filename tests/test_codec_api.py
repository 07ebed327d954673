"""Config validation, input validation, inspect."""

import dataclasses

import numpy as np
import pytest

import codec_cupy as cc
from conftest import relu_features


@pytest.mark.parametrize("kw", [
    dict(bits=0), dict(bits=9), dict(bits=4.0), dict(granularity="layer"), dict(clip="max"),
    dict(quantizer="lloyd"), dict(sparse="yes"), dict(pack=3, bits=4), dict(pack=0), dict(tables=17),
    dict(prob_bits=7), dict(prob_bits=16), dict(streams=0), dict(percentile=30), dict(ecsq_lambda=-1),
    dict(granularity="channel", axis=None), dict(quantizer="ecsq", granularity="channel"),
    dict(stream_overhead=0), dict(speed_slack=-0.01), dict(speed_slack=1.5), dict(speed_slack="auto"),
])
def test_config_rejects_invalid_values(kw):
    with pytest.raises(cc.ConfigError):
        cc.CodecConfig(**kw)


def test_config_is_frozen_keyword_only_and_lists_valid_values():
    cfg = cc.CodecConfig(bits=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.bits = 5
    with pytest.raises(TypeError):
        cc.CodecConfig(4)
    with pytest.raises(cc.ConfigError, match="tensor"):
        cc.CodecConfig(granularity="nope")
    assert cc.VALID["quantizer"] == ("uniform", "ecsq")
    assert cfg.replace(bits=2).bits == 2


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("engine", ["reference", "cpu"])
def test_nan_inf_rejected(bad, engine):
    x = np.ones((2, 3, 4), np.float32)
    x[1, 2, 3] = bad
    with pytest.raises(cc.InputError, match="NaN or Inf"):
        cc.encode(x, engine=engine)


def test_input_type_errors():
    with pytest.raises(cc.InputError):
        cc.encode(np.ones(3, np.float64))
    with pytest.raises(cc.InputError):
        cc.encode([1.0, 2.0])
    with pytest.raises(cc.InputError):
        cc.encode(np.ones((1,) * 9, np.float32))
    with pytest.raises(cc.InputError):
        cc.encode(np.ones((2, 3), np.float32), cc.CodecConfig(axis=5))
    with pytest.raises(cc.ConfigError):
        cc.encode(np.ones(3, np.float32), engine="gpu9000")
    with pytest.raises(cc.ConfigError):
        cc.encode(np.ones(3, np.float32), {"bits": 4})


def test_inspect_reports_header_sizes_and_plan(rng):
    x = relu_features(rng)
    blob = cc.encode(x, cc.CodecConfig(bits=4, streams=2))
    info = cc.inspect(blob)
    assert info["shape"] == list(x.shape) and info["bits"] == 4 and info["version"] == 1
    sizes = info["sizes"]
    assert sizes["header_bytes"] + sizes["payload_bytes"] + sizes["crc_bytes"] == len(blob) == sizes["total_bytes"]
    plan = info["plan"]
    assert plan["streams"] == 2 and plan["zero_channels"] >= 2 and plan["zero_mask"]
    assert set(plan) >= {"pack", "prob_bits", "tables", "symbols_per_stream"}


def test_inspect_lists_every_channel_scale_and_zero_point(rng):
    # 40 channels: more than any display would show; inspect must not cut the header's fields.
    x = rng.standard_normal((1, 40, 6, 6)).astype(np.float32) * np.linspace(0.1, 4, 40, dtype=np.float32)[:, None, None]
    blob = cc.encode(x, cc.CodecConfig(bits=5, granularity="channel"))
    info = cc.inspect(blob)
    assert len(info["scale"]) == len(info["zero_point"]) == 40
    scale = np.asarray(info["scale"]).reshape(1, 40, 1, 1)
    zero = np.asarray(info["zero_point"]).reshape(1, 40, 1, 1)
    q = np.rint(cc.decode(blob) / scale) + zero       # the decoder's y = (q - z) * s, inverted
    assert np.array_equal((q - zero) * scale.astype(np.float32), cc.decode(blob))
    assert q.min() >= 0 and q.max() <= 31


def test_errors_form_one_tree():
    for name in cc.errors.__all__:
        assert issubclass(getattr(cc.errors, name), cc.CodecError)
    assert issubclass(cc.ChecksumError, cc.DecodeError) and issubclass(cc.LimitExceededError, cc.HeaderError)


def test_decode_batch_on_cpu_and_device_validation(rng):
    blobs = [cc.encode(relu_features(rng), cc.CodecConfig(bits=b)) for b in (2, 4, 8)]
    outs = cc.decode_batch(blobs, device="cpu")
    assert [o.shape for o in outs] == [(2, 16, 7, 9)] * 3
    for blob, out in zip(blobs, outs):
        assert np.array_equal(out, cc.decode(blob))
    with pytest.raises(cc.ConfigError):
        cc.decode(blobs[0], device="tpu")
    with pytest.raises(cc.ConfigError):
        cc.decode(blobs[0], device="cuda", engine="reference")
    with pytest.raises(cc.DecodeError):
        cc.decode_batch([blobs[0], blobs[1][:-1]], device="cpu")


@pytest.mark.parametrize("engine", ["reference", "cpu"])
def test_per_channel_on_a_tensor_without_channel_axis_codes_per_tensor(rng, engine):
    # The default axis=1 on a vector (or a 0-d tensor) leaves no channel axis: granularity="channel"
    # must fall back to one per-tensor range, not write a PER_CHANNEL header no decoder accepts.
    for x in (rng.standard_normal(1000).astype(np.float32), np.float32(1.5).reshape(())):
        blob = cc.encode(x, cc.CodecConfig(bits=4, granularity="channel"), engine=engine)
        assert blob == cc.encode(x, cc.CodecConfig(bits=4), engine=engine)
        assert cc.inspect(blob)["granularity"] == "tensor"
        assert cc.decode(blob).shape == x.shape
