"""The Python-backend models' logic, without a server (as python_backend's examples test it)."""

import numpy as np
import pytest

import codec_cupy as cc
from backends import splitwire_decoder as dec
from client import rawframe

LIMITS = dec.Limits(feature_shape=(8, 5, 5), max_batch=4, max_payload_bytes=4 * 4 * 8 * 5 * 5 + 4096)


def _blob(x, bits=8):
    return np.frombuffer(cc.encode(x, cc.CodecConfig(bits=bits)), np.uint8)


def _feats(b=2, seed=0):
    return np.maximum(np.random.default_rng(seed).normal(size=(b, 8, 5, 5)), 0).astype(np.float32)


def test_valid_blob_decodes_to_features():
    x = _feats()
    y = dec.decode_payload(_blob(x), LIMITS)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.abs(y - x).max() < (x.max() / 255) * 0.51 + 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_raw_frames_decode(dtype):
    x = _feats().astype(dtype)
    y = dec.decode_payload(np.frombuffer(rawframe.encode(x), np.uint8), LIMITS)
    np.testing.assert_array_equal(y, x.astype(np.float32))


def _reason(payload):
    with pytest.raises(dec.PayloadError) as e:
        dec.decode_payload(payload, LIMITS)
    return e.value.reason, str(e.value)


def test_hostile_payloads_name_the_problem():
    blob = _blob(_feats())
    assert _reason(blob[: len(blob) // 2])[0] in ("truncated", "checksum")
    bad = blob.copy()
    bad[len(bad) // 2] ^= 0x5A
    reason, msg = _reason(bad)
    assert reason == "checksum" and "CRC" in msg
    assert _reason(np.zeros(0, np.uint8))[0] == "empty"
    assert _reason(np.frombuffer(b"GARBAGE!" * 4, np.uint8))[0] == "not_a_blob"
    # Element-count bomb: a valid blob whose shape is far beyond what this model takes.
    bomb = _blob(np.zeros((1, 8, 5, 5 * 200), np.float32))
    reason, msg = _reason(bomb)
    assert reason == "too_large" and str(LIMITS.max_coded_elements) in msg    # what a padded DCT view may take
    reason, msg = _reason(np.zeros(LIMITS.max_payload_bytes + 1, np.uint8))
    assert reason == "too_large"
    reason, msg = _reason(_blob(np.zeros((1, 8, 5, 4), np.float32)))  # right size class, wrong shape
    assert reason == "shape" and "[B, 8, 5, 5]" in msg
    assert _reason(_blob(_feats(b=5)))[0] in ("shape", "too_large")
    assert _reason(np.zeros(16, np.float32))[0] == "dtype"


def test_raw_frame_bombs_are_refused_before_allocating():
    frame = bytearray(rawframe.encode(np.zeros((1, 8, 5, 5), np.float32)))
    frame[8:12] = (2 ** 31).to_bytes(4, "little")   # batch dim claims 2^31
    reason, msg = _reason(np.frombuffer(bytes(frame), np.uint8))
    assert reason == "raw" and "at most" in msg
    reason, _ = _reason(np.frombuffer(rawframe.encode(np.zeros((1, 8, 5, 5), np.float32))[:-3], np.uint8))
    assert reason == "raw"


def test_limits_from_triton_parameters():
    params = {"feature_shape": {"string_value": "[8, 5, 5]"}, "max_batch": {"string_value": "4"},
              "max_payload_bytes": {"string_value": "999"}}
    lim = dec.Limits.from_parameters(params)
    assert lim == dec.Limits((8, 5, 5), 4, 999) and lim.max_elements == 800


def test_tail_runner_batches_requests_and_splits_outputs(tmp_path):
    torch = pytest.importorskip("torch")
    from backends import onnx_tail
    from splitwire.export import _onnx_export

    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 5 * 5, 3)).eval()
    path = tmp_path / "t.onnx"
    _onnx_export(m, torch.zeros(1, 8, 5, 5), path, "features", "logits", 17)      # batch axis dynamic
    sess = onnx_tail.make_session(str(path))
    xs = [_feats(1, 1), _feats(3, 2), _feats(2, 3)]
    ys = onnx_tail.run_batched(sess, xs)
    assert [y.shape for y in ys] == [(1, 3), (3, 3), (2, 3)]
    with torch.no_grad():
        for x, y in zip(xs, ys):
            np.testing.assert_allclose(y, m(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)


def test_head_bundle_checks_its_digest(tmp_path):
    import hashlib

    from backends import head_bundle

    p = tmp_path / "head.onnx"
    p.write_bytes(b"onnx-bytes")
    assert head_bundle.load_head(str(p), hashlib.sha256(b"onnx-bytes").hexdigest()).tobytes() == b"onnx-bytes"
    with pytest.raises(RuntimeError, match="re-run splitwire export"):
        head_bundle.load_head(str(p), "0" * 64)


def test_prior_blobs_decode_with_the_models_prior_and_name_a_missing_or_wrong_one(tmp_path):
    """A decoder holding a shared prior reads prior blobs and self-contained ones; a prior blob it
    cannot read (no prior here, another prior) is the client's error ("prior"), not a crash."""
    fit = [_feats(b=1, seed=s) for s in range(10)]
    cfg = cc.CodecConfig(bits=2)
    prior = cc.fit_prior(fit, cfg)
    prior.save(tmp_path / dec.PRIOR_FILE)
    loaded = dec.load_prior(str(tmp_path))
    assert loaded.id == prior.id and dec.load_prior(str(tmp_path / "none")) is None
    x = _feats(b=3, seed=20)
    blob = np.frombuffer(cc.encode(x, cfg, prior=prior), np.uint8)
    y = dec.decode_payload(blob, LIMITS, prior=loaded)
    np.testing.assert_array_equal(y, cc.decode(cc.encode(x, cfg)))
    np.testing.assert_array_equal(dec.decode_payload(_blob(x), LIMITS, prior=loaded), cc.decode(_blob(x)))
    reason, msg = _reason(blob)                                                   # this decoder has no prior
    assert reason == "prior" and f"{prior.id:#010x}" in msg
    other = cc.fit_prior([_feats(b=1, seed=s) for s in range(30, 33)], cfg)
    with pytest.raises(dec.PayloadError) as e:
        dec.decode_payload(blob, LIMITS, prior=other)
    assert e.value.reason == "prior" and "not with the one given" in str(e.value)
    dct = cc.CodecConfig(transform="dct", block=5, step=0.05)                       # a DCT prior (version 3)
    dct_prior = cc.fit_prior(fit, dct)
    blob = np.frombuffer(cc.encode(x, dct, prior=dct_prior), np.uint8)
    np.testing.assert_array_equal(dec.decode_payload(blob, LIMITS, prior=dct_prior), cc.decode(cc.encode(x, dct)))
    with pytest.raises(dec.PayloadError) as e:                                      # the element prior: wrong one
        dec.decode_payload(blob, LIMITS, prior=loaded)
    assert e.value.reason == "prior"


def test_head_bundle_hands_out_the_prior(tmp_path, monkeypatch):
    import json
    import types

    from backends import head_bundle

    (tmp_path / "head.onnx").write_bytes(b"onnx-bytes")
    (tmp_path / "prior.swprior").write_bytes(b"prior-bytes")
    sent = []
    monkeypatch.setattr(head_bundle, "__file__", str(tmp_path / "model.py"))
    monkeypatch.setattr(head_bundle, "pb_utils", types.SimpleNamespace(
        Tensor=types.SimpleNamespace(from_dlpack=lambda name, a: (name, a.tobytes())),
        InferenceResponse=lambda outputs: sent.append(outputs)))
    model = head_bundle.TritonPythonModel()
    model.initialize({"model_config": json.dumps({})})
    model.execute([object()])
    assert sent == [[("HEAD_ONNX", b"onnx-bytes"), ("PRIOR", b"prior-bytes")]]


def test_dct_blobs_with_padded_maps_fit_the_limits():
    """A DCT blob's coded view pads the maps to whole blocks (5 x 5 in 8 x 8 blocks: 64 coefficients
    per map): the decoder's element limit allows for it, and the decoded tensor is still checked
    against the model's shape."""
    x = _feats(b=4, seed=3)
    assert LIMITS.max_coded_elements >= 4 * 8 * 8 * 8 > LIMITS.max_elements
    for block in (2, 3, 8, 16):
        blob = np.frombuffer(cc.encode(x, cc.CodecConfig(transform="dct", block=block, step=0.05)), np.uint8)
        np.testing.assert_array_equal(dec.decode_payload(blob, LIMITS), cc.decode(blob.tobytes()))
    blob = np.frombuffer(cc.encode(_feats(b=5, seed=3), cc.CodecConfig(transform="dct", block=16)), np.uint8)
    reason, _ = _reason(blob)                              # one item more than max_batch: still refused
    assert reason in ("too_large", "shape")
