"""Engine "cuda" on a real GPU (CuPy + NVRTC): skipped cleanly without cupy or a device.

Same contract as tests/test_cuda_host.py, on the device: GPU decode == reference decode bit for bit,
GPU-encoded bytes == reference bytes, corrupt streams -> CorruptStreamError, and (when the tool is
installed) compute-sanitizer memcheck reports no error on corrupt streams.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import codec_cupy as cc
from codec_cupy import _container, _cuda, _reference, _transform
from codec_cupy._crc32c import crc32c
from codec_cupy.errors import CorruptStreamError
from conftest import CUDA_CONFIGS, relu_features, signed_features

pytestmark = pytest.mark.gpu

cp = pytest.importorskip("cupy", reason="engine 'cuda' needs CuPy")
if not _cuda.available():
    pytest.skip("no CUDA device visible", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]


def bits_of(a) -> np.ndarray:
    a = np.ascontiguousarray(cp.asnumpy(a) if isinstance(a, cp.ndarray) else a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint16)


CONFIGS = CUDA_CONFIGS


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()) or "default")
def test_gpu_decode_and_encode_match_reference(bits, cfg):
    rng = np.random.default_rng(bits * 31 + len(cfg))
    x = relu_features(rng, (2, 16, 7, 9), zero_channels=(3, 11))
    config = cc.CodecConfig(bits=bits, **cfg)
    blob = cc.encode(x, config, engine="reference")
    h = _container.parse(blob)
    ref = _reference.decode(h, blob)
    y = _cuda.decode(h, blob)
    assert isinstance(y, cp.ndarray) and y.shape == ref.shape
    np.testing.assert_array_equal(bits_of(y), bits_of(ref))
    y16 = _cuda.decode(h, blob, out_dtype=np.float16)
    np.testing.assert_array_equal(bits_of(y16), bits_of(ref.astype(np.float16)))
    assert _cuda.encode(cp.asarray(x), config) == blob
    assert _cuda.encode(cp.asarray(x.astype(np.float16)), config) == cc.encode(x.astype(np.float16), config,
                                                                               engine="reference")


@pytest.mark.parametrize("shape", [(0,), (1,), (), (3, 0, 2), (1, 512, 28, 28)])
def test_gpu_sizes(shape):
    rng = np.random.default_rng(1)
    x = np.maximum(rng.normal(size=shape), 0).astype(np.float32)
    config = cc.CodecConfig(bits=4, axis=1 if len(shape) > 1 else None)
    engine = "cpu" if x.size > 10_000 else "reference"
    blob = cc.encode(x, config, engine=engine)
    assert _cuda.encode(cp.asarray(x), config) == blob
    h = _container.parse(blob)
    np.testing.assert_array_equal(bits_of(_cuda.decode(h, blob)), bits_of(cc.decode(blob, engine=engine)))


def test_gpu_decode_batch():
    rng = np.random.default_rng(2)
    blobs = [cc.encode(relu_features(rng), cc.CodecConfig(bits=b), engine="reference") for b in (1, 3, 4, 8)]
    blobs.append(cc.encode(signed_features(rng, (1, 8, 3, 3)), cc.CodecConfig(bits=2, quantizer="ecsq"),
                           engine="reference"))
    items = [(_container.parse(b), b) for b in blobs]
    ys = _cuda.decode_batch(items)
    for (h, b), y in zip(items, ys):
        np.testing.assert_array_equal(bits_of(y), bits_of(_reference.decode(h, b)))


def test_gpu_dlpack_interop():
    rng = np.random.default_rng(3)
    x = relu_features(rng)
    blob = cc.encode(x, cc.CodecConfig(bits=4), engine="reference")
    y = _cuda.decode(_container.parse(blob), blob)
    z = cp.from_dlpack(y)                                    # zero-copy view through DLPack
    assert z.data.ptr == y.data.ptr
    assert _cuda.encode(z.reshape(x.shape), cc.CodecConfig(bits=4)) == cc.encode(
        cp.asnumpy(z).reshape(x.shape), cc.CodecConfig(bits=4), engine="reference")


def _corrupt_blobs(n=80):
    rng = np.random.default_rng(4)
    blob = cc.encode(relu_features(rng), cc.CodecConfig(bits=4, streams=6), engine="reference")
    h = _container.parse(blob)
    body = bytes(blob[:-4])
    out = []
    for _ in range(n):
        bad = bytearray(body)
        for pos in rng.integers(h.payload_offset, len(body), size=3):
            bad[pos] = rng.integers(0, 256)
        out.append(bytes(bad) + crc32c(bytes(bad)).to_bytes(4, "little"))
    return out


def test_gpu_corrupt_streams_agree_with_reference():
    rejected = 0
    for bad in _corrupt_blobs():
        h = _container.parse(bad)
        try:
            ref = _reference.decode(h, bad)
        except CorruptStreamError:
            with pytest.raises(CorruptStreamError):
                _cuda.decode(h, bad)
            rejected += 1
            continue
        np.testing.assert_array_equal(bits_of(_cuda.decode(h, bad)), bits_of(ref))
    assert rejected > 20


@pytest.mark.parametrize("block", range(_transform.MIN_BLOCK, _transform.MAX_BLOCK + 1))
def test_gpu_inverse_transform_matches_reference_bits(block):
    """sw_inverse_dct on the GPU (NVRTC, __fmul_rn/__fadd_rn) == _transform.inverse bit for bit."""
    rng = np.random.default_rng(2000 + block)
    for shape in [(3, 5, 7, 9), (1, 1, 1, 1), (2, 17, 16), (1, 16, 16), (4, 33), (1, 64, 56, 56)]:
        p, bb = _transform.coded_view_shape(shape, block)
        coef = (rng.normal(size=(p, bb)) * 10.0 ** rng.uniform(-3, 3, size=(p, bb))).astype(np.float32)
        ref = _transform.inverse(coef, shape, block)
        y = _cuda.inverse_transform(cp.asarray(coef), shape, block)
        assert isinstance(y, cp.ndarray) and y.shape == shape and y.dtype == np.float32
        assert np.array_equal(cp.asnumpy(y).view(np.uint32), ref.view(np.uint32)), (shape, block)
        y16 = _cuda.inverse_transform(coef, shape, block, out_dtype=np.float16)       # NumPy input too
        assert y16.dtype == np.float16
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(bits_of(y16), bits_of(ref.astype(np.float16)))
    for shape in [(0, 5, 7), (2, 0, 9), (3, 4, 0)]:
        coef = cp.zeros(_transform.coded_view_shape(shape, block), cp.float32)
        y = _cuda.inverse_transform(coef, shape, block)
        assert y.shape == shape and y.dtype == np.float32


def test_gpu_transform_blobs_through_the_public_api():
    """Version-2 blobs: cc.decode/decode_batch on the GPU == the host engines, bit for bit; CuPy
    input encodes to the host's bytes (the forward DCT runs on the host, the rest on the GPU)."""
    from conftest import smooth_features

    rng = np.random.default_rng(77)
    x = smooth_features(rng, (2, 5, 19, 23))
    blobs = [cc.encode(x, cc.CodecConfig(transform="dct", block=b, step=s), engine="reference")
             for b, s in ((8, 0.02), (7, 0.1), (3, 0.05))] + [cc.encode(x, cc.CodecConfig(bits=4))]
    for blob in blobs[:3]:
        host = cc.decode(blob, engine="cpu")
        np.testing.assert_array_equal(bits_of(cc.decode(blob, device="cuda")), bits_of(host))
        np.testing.assert_array_equal(bits_of(cc.decode(blob, device="cuda", out_dtype=np.float16)),
                                      bits_of(host.astype(np.float16)))
    ys = cc.decode_batch(blobs, device="cuda", out_dtype=np.float16)
    for blob, y in zip(blobs, ys):
        np.testing.assert_array_equal(bits_of(y), bits_of(cc.decode(blob).astype(np.float16)))
    cfg = cc.CodecConfig(transform="dct", block=7, step=0.1)
    assert cc.encode(cp.asarray(x), cfg) == blobs[1]


MEMCHECK_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_cuda_gpu import _corrupt_blobs
    from codec_cupy import _container, _cuda
    from codec_cupy.errors import CorruptStreamError
    n = 0
    for bad in _corrupt_blobs(40):
        try:
            _cuda.decode(_container.parse(bad), bad)
        except CorruptStreamError:
            n += 1
    print("MEMCHECK-DONE", n)
""")


@pytest.mark.slow
def test_compute_sanitizer_memcheck_on_corrupt_streams(tmp_path):
    tool = shutil.which("compute-sanitizer") or "/usr/local/cuda/bin/compute-sanitizer"
    if not Path(tool).exists():
        pytest.skip("compute-sanitizer is not installed")
    script = tmp_path / "memcheck_run.py"
    script.write_text(MEMCHECK_SCRIPT.format(tests=str(ROOT / "tests")))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([tool, "--tool", "memcheck", "--error-exitcode", "99", sys.executable, str(script)],
                          capture_output=True, text=True, env=env, timeout=900)
    print(done.stdout[-3000:])
    assert done.returncode == 0 and "MEMCHECK-DONE" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ERROR SUMMARY: 0 errors" in done.stdout + done.stderr
