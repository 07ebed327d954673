"""Engine "cuda" without a GPU: the kernel source is compiled (nvcc, for sm_90) and its logic is run
on the CPU (the same .cu/.cuh files built with g++ -DSW_HOST_EMULATION, threads of a block as real
threads) and checked against the reference engine, byte for byte and bit for bit.

Every buffer a kernel touches is copied into an allocation of exactly its size with guard zones
(canaries here; poisoned under AddressSanitizer in ``test_asan_corrupt_streams``), so an
out-of-bounds write fails the launch.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import codec_cupy as cc
from codec_cupy import _container, _cuda, _encoder, _reference, _transform
from codec_cupy._crc32c import crc32c
from codec_cupy.errors import CorruptStreamError, DecodeError
from conftest import CUDA_CONFIGS, relu_features, signed_features

ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = ROOT / ".cache" / "sw_emu"


# ------------------------------------------------------------------------------------------------
# builds
# ------------------------------------------------------------------------------------------------

def _compiler() -> str:
    for name in ("g++", "c++", "clang++"):
        if shutil.which(name):
            return name
    pytest.skip("no C++ compiler to build the host emulation")


@pytest.fixture(scope="module")
def emu():
    return _cuda.HostEmulation(_cuda.HostEmulation.build(BUILD_DIR, compiler=_compiler()))


@pytest.fixture(scope="module")
def engine(emu):
    return _cuda.EngineOn(emu)


def _nvcc() -> str:
    path = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    if path is None:
        pytest.skip("nvcc is not installed")
    return path


@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
def test_nvcc_compiles_the_kernels(tmp_path, arch):
    """The device code (the real .cu, and the include-expanded source NVRTC gets) compiles."""
    nvcc = _nvcc()
    expanded = tmp_path / "expanded.cu"
    expanded.write_text(_cuda.kernel_source())
    for src in (_cuda.KERNEL_DIR / _cuda.KERNEL_MAIN, expanded):
        out = tmp_path / (src.stem + ".cubin")
        done = subprocess.run([nvcc, "-std=c++17", "--fmad=false", "-cubin", f"-arch={arch}", "-Werror", "all-warnings",
                               str(src), "-o", str(out)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        assert out.stat().st_size > 0
    # every entry point _cuda launches exists, unmangled
    ptx = tmp_path / "k.ptx"
    subprocess.run([nvcc, "-std=c++17", "--fmad=false", "-ptx", f"-arch={arch}", str(expanded), "-o", str(ptx)],
                   check=True, capture_output=True)
    text = ptx.read_text()
    for name, sig in _cuda.KERNEL_SIGNATURES.items():
        m = re.search(rf"\.entry {name}\((.*?)\)", text, re.S)
        assert m, f"entry point {name} missing"
        widths = re.findall(r"\.param \.(u32|u64|b32|b64|s32|s64)", m.group(1))
        expect = ["64" if kind in ("p", "u64") else "32" for kind in sig]
        assert [w[1:] for w in widths] == expect, f"{name}: PTX params {widths} != KERNEL_SIGNATURES {sig}"


def _find_nvrtc():
    import ctypes
    import glob
    candidates = [os.environ.get("SW_NVRTC_LIB", "")]
    for base in sys.path:
        candidates += sorted(glob.glob(os.path.join(base, "nvidia", "cu1*", "lib", "libnvrtc.so*")))
        candidates += sorted(glob.glob(os.path.join(base, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")))
    candidates += sorted(glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*"))
    for path in candidates:
        if path and "builtins" not in path and "alt" not in path and Path(path).exists():
            try:
                for builtins in sorted(Path(path).parent.glob("libnvrtc-builtins.so*")):
                    if ".alt." not in builtins.name:
                        ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)   # NVRTC dlopens it by name
                return ctypes.CDLL(path)
            except OSError:
                continue
    return None


def test_nvrtc_compiles_the_kernel_source():
    """What CuPy's RawModule does: NVRTC on the include-expanded source with NVRTC_OPTIONS."""
    import ctypes
    lib = _find_nvrtc()
    if lib is None:
        pytest.skip("libnvrtc not found (pip install nvidia-cuda-nvrtc, or set SW_NVRTC_LIB)")
    prog = ctypes.c_void_p()
    src = _cuda.kernel_source().encode()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src, b"splitwire_codec.cu", 0, None, None) == 0
    opts = [o.encode() for o in _cuda.NVRTC_OPTIONS] + [b"-arch=compute_90"]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value + 1)
    lib.nvrtcGetProgramLog(prog, log)
    assert rc == 0, log.value.decode(errors="replace")
    lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value + 1)
    lib.nvrtcGetPTX(prog, ptx)
    text = ptx.value.decode()
    for name in ("sw_decode_f32", "sw_decode_f16", "sw_quantize_f32", "sw_quantize_f16", "sw_histogram",
                 "sw_rans_encode", "sw_compact", "sw_inverse_dct"):
        assert f".entry {name}(" in text
    assert "fma.rn.f32" not in text                     # no contraction in the exact float paths
    lib.nvrtcDestroyProgram(ctypes.byref(prog))


def test_expanded_source_has_no_system_includes():
    """NVRTC has no system headers: the source it compiles must include none."""
    src = _cuda.kernel_source()
    includes = [line.strip() for line in src.splitlines() if line.strip().startswith("#include")]
    assert includes == ['#include "host_emulation.h"']          # only under #if SW_HOST_EMULATION


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def bits_of(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint16)


def check_decode(emu, blob, *, f16=True, prior=None):
    """Our decode of ``blob`` equals the reference's, bit for bit (float32 and float16)."""
    h = _container.with_prior(_container.parse(blob), prior)
    ref = _reference.decode(h, blob)
    (y,) = _cuda.decode_items(emu, [(h, blob)])
    assert y.shape == ref.shape and y.dtype == np.float32
    np.testing.assert_array_equal(bits_of(y), bits_of(ref))
    if f16:
        (y16,) = _cuda.decode_items(emu, [(h, blob)], out_dtype=np.float16)
        np.testing.assert_array_equal(bits_of(y16), bits_of(ref.astype(np.float16)))
    return h


def check_encode(engine, x, cfg):
    """GPU-pipeline bytes == reference bytes, and they decode identically."""
    ref = cc.encode(x, cfg, engine="reference")
    ours = _encoder.encode(engine, x, cfg)
    assert ours == ref
    return ref


def sparse_features(rng, shape, sparsity):
    x = relu_features(rng, shape, zero_channels=())
    keep = rng.random(shape) >= sparsity
    return np.where(keep, x, 0).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# decode
# ------------------------------------------------------------------------------------------------

CONFIGS = CUDA_CONFIGS


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()) or "default")
def test_decode_matches_reference(emu, bits, cfg):
    rng = np.random.default_rng(bits * 101 + len(cfg))
    x = relu_features(rng, (2, 12, 5, 7), zero_channels=(2, 9))
    check_decode(emu, cc.encode(x, cc.CodecConfig(bits=bits, **cfg), engine="reference"))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_decode_every_pack(emu, bits):
    rng = np.random.default_rng(bits)
    x = signed_features(rng, (3, 5, 7, 3))
    for k in range(1, 8 // bits + 1):
        for streams in (1, 4, 17):
            check_decode(emu, cc.encode(x, cc.CodecConfig(bits=bits, pack=k, streams=streams), engine="reference"),
                         f16=False)


@pytest.mark.parametrize("shape,axis", [
    ((0,), None), ((3, 0, 2), 1), ((0, 4, 3), 1), ((1,), None), ((), None), ((1, 1, 1, 1), 1),
    ((5,), None), ((2, 3), 1), ((7, 1), 0), ((1, 3, 1, 1), 1),
])
def test_decode_small_and_empty(emu, shape, axis):
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape).astype(np.float32)
    for bits in (1, 4, 8):
        blob = cc.encode(x, cc.CodecConfig(bits=bits, axis=axis), engine="reference")
        check_decode(emu, blob)


@pytest.mark.parametrize("pack", [1, 2, 4])
def test_stream_boundaries(emu, pack):
    """R = k*m +- 1 (padding), Np = S*P +- 1 (last stream short by one / one symbol long)."""
    rng = np.random.default_rng(pack)
    bits = 8 // pack
    for length in (pack * 9 - 1, pack * 9, pack * 9 + 1):
        x = rng.normal(size=(1, 3, length)).astype(np.float32)
        groups = -(-length // pack)
        npk = 3 * groups
        for streams in (1, 2, npk // 4, npk // 4 + 1, npk - 1, npk):
            if streams < 1:
                continue
            blob = cc.encode(x, cc.CodecConfig(bits=bits, pack=pack, streams=streams), engine="reference")
            h = check_decode(emu, blob, f16=False)
            assert h.num_packed == npk


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decode_sparsity_and_seeds(emu, sparsity, seed):
    rng = np.random.default_rng(seed)
    x = sparse_features(rng, (2, 16, 6, 6), sparsity)
    for cfg in (cc.CodecConfig(bits=4), cc.CodecConfig(bits=2, granularity="channel", sparse="on"),
                cc.CodecConfig(bits=3, quantizer="ecsq", streams=9)):
        check_decode(emu, cc.encode(x, cfg, engine="reference"))


def test_decode_shared_and_global_lookup_tables_agree(emu):
    """Tables too large for the shared-memory budget are read from global memory: same values."""
    rng = np.random.default_rng(5)
    x = relu_features(rng, (2, 32, 6, 6))
    blob = cc.encode(x, cc.CodecConfig(bits=8, tables=16, prob_bits=15, streams=40), engine="reference")
    h = _container.parse(blob)
    ref = _reference.decode(h, blob)
    assert 5 * (h.ntables << h.prob_bits) > _cuda.SMEM_BUDGET
    small = _cuda.HostEmulation.__new__(_cuda.HostEmulation)
    small.__dict__.update(emu.__dict__)
    for budget in (0, 1 << 30):
        small.smem_budget = budget
        (y,) = _cuda.decode_items(small, [(h, blob)])
        np.testing.assert_array_equal(bits_of(y), bits_of(ref))


@pytest.mark.parametrize("threads", [1, 32, 64, 256])
def test_decode_block_sizes(emu, threads):
    rng = np.random.default_rng(threads)
    x = relu_features(rng, (2, 16, 7, 9))
    blob = cc.encode(x, cc.CodecConfig(bits=4, streams=70), engine="reference")
    h = _container.parse(blob)
    (y,) = _cuda.decode_items(emu, [(h, blob)], threads=threads)
    np.testing.assert_array_equal(bits_of(y), bits_of(_reference.decode(h, blob)))


def test_decode_batch_one_launch(emu):
    """Many requests' tensors (different shapes, bits, quantizers, empties) in one launch."""
    rng = np.random.default_rng(11)
    blobs = [
        cc.encode(relu_features(rng), cc.CodecConfig(bits=4), engine="reference"),
        cc.encode(signed_features(rng, (1, 8, 3, 3)), cc.CodecConfig(bits=8, granularity="channel"), engine="reference"),
        cc.encode(np.zeros((2, 4, 3, 3), np.float32), cc.CodecConfig(bits=3), engine="reference"),
        cc.encode(np.zeros((0, 4), np.float32), cc.CodecConfig(bits=2), engine="reference"),
        cc.encode(relu_features(rng, (1, 16, 4, 4)), cc.CodecConfig(bits=3, quantizer="ecsq", streams=7), engine="reference"),
        cc.encode(rng.normal(size=(5,)).astype(np.float16), cc.CodecConfig(bits=1, axis=None), engine="reference"),
    ]
    items = [(_container.parse(b), b) for b in blobs]
    for dtype in (np.float32, np.float16):
        ys = _cuda.decode_items(emu, items, out_dtype=dtype)
        assert len(ys) == len(blobs)
        for (h, b), y in zip(items, ys):
            np.testing.assert_array_equal(bits_of(y), bits_of(_reference.decode(h, b).astype(dtype)))


def test_decode_large_layer2_tensor(emu):
    """One ResNet-50 layer2-sized tensor (1, 512, 28, 28) = 401,408 elements, planner's streams."""
    rng = np.random.default_rng(2024)
    x = sparse_features(rng, (1, 512, 28, 28), 0.6)
    blob = cc.encode(x, cc.CodecConfig(bits=4, granularity="channel"), engine="cpu")
    h = _container.parse(blob)
    assert h.size == 401_408 and h.num_streams > 1
    expect = cc.decode(blob, engine="cpu")
    (y,) = _cuda.decode_items(emu, [(h, blob)])
    np.testing.assert_array_equal(bits_of(y), bits_of(expect))


def test_golden_vectors(emu):
    golden = ROOT / "tests" / "golden"
    files = sorted(golden.glob("*.spwc"))
    if not files:
        pytest.skip("no golden vectors")
    for path in files:
        blob = path.read_bytes()
        prior_path = path.with_suffix(".swprior")
        prior = cc.Prior.load(prior_path) if prior_path.exists() else None        # version 3
        check_decode(emu, blob, prior=prior)
        out = path.with_suffix(".out.npy")
        if out.exists():
            h = _container.with_prior(_container.parse(blob), prior)
            (y,) = _cuda.decode_items(emu, [(h, blob)])
            if h.block:                                     # version 2: the kernel's inverse DCT too
                y = _cuda.inverse_transform_on(emu, y, h.tensor_shape, h.block)
            np.testing.assert_array_equal(bits_of(y.reshape(h.output_shape)), bits_of(np.load(out).astype(np.float32)))


# ------------------------------------------------------------------------------------------------
# hostile streams
# ------------------------------------------------------------------------------------------------

def reseal(body: bytes) -> bytes:
    return body + crc32c(body).to_bytes(4, "little")


def agree_with_reference(emu, blob):
    """Reference and kernels agree: both raise CorruptStreamError, or both return the same values."""
    h = _container.parse(blob)
    try:
        ref = _reference.decode(h, blob)
    except CorruptStreamError:
        ref = None
    try:
        (y,) = _cuda.decode_items(emu, [(h, blob)])
    except CorruptStreamError:
        y = None
    if ref is None:
        assert y is None, "the kernels accepted a stream the reference rejects"
    else:
        assert y is not None, "the kernels rejected a stream the reference accepts"
        np.testing.assert_array_equal(bits_of(y), bits_of(ref))
    return ref is None


def _blob_for_corruption(seed=7, streams=6):
    x = relu_features(np.random.default_rng(seed))
    return cc.encode(x, cc.CodecConfig(bits=4, streams=streams), engine="reference")


def test_corrupt_payload_bytes(emu):
    blob = _blob_for_corruption()
    h = _container.parse(blob)
    body = bytearray(blob[:-4])
    rng = np.random.default_rng(0)
    rejected = 0
    positions = list(range(h.payload_offset, len(body)))
    for pos in positions[:: max(1, len(positions) // 150)]:
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(body)
            bad[pos] ^= flip
            rejected += agree_with_reference(emu, reseal(bytes(bad)))
    for _ in range(40):                                   # random multi-byte damage
        bad = bytearray(body)
        for pos in rng.integers(h.payload_offset, len(body), size=5):
            bad[pos] = rng.integers(0, 256)
        rejected += agree_with_reference(emu, reseal(bytes(bad)))
    assert rejected > 100


def test_corrupt_directory_shifted_words(emu):
    """Move words between streams (total unchanged, so the container accepts it)."""
    blob = _blob_for_corruption(streams=6)
    h = _container.parse(blob)
    dir_start = h.payload_offset
    # rebuild the directory with W[0] + d, W[1] - d
    for d in (-2, -1, 1, 2):
        nw = h.nwords.copy()
        nw[0] += d
        nw[1] -= d
        if nw.min() < 0:
            continue
        hh = _container.parse(blob)
        hh.nwords = nw
        payload = np.frombuffer(blob, np.uint8)[dir_start:len(blob) - 4]
        try:
            bad = _container.write(hh, payload)
        except ValueError:
            continue
        try:
            _container.parse(bad)
        except DecodeError:
            continue
        assert agree_with_reference(emu, bad)


def test_state_and_word_errors_are_flagged(emu):
    """Targeted damage: initial state < 2**16, an extra word, a missing word."""
    blob = _blob_for_corruption(streams=3)
    h = _container.parse(blob)
    off = int(h.stream_offsets[1])
    body = bytearray(blob[:-4])
    body[off:off + 4] = (0x1234).to_bytes(4, "little")          # state below L
    with pytest.raises(CorruptStreamError, match="initial state"):
        _cuda.decode_items(emu, [(_container.parse(reseal(bytes(body))), reseal(bytes(body)))])


def test_kernel_bounds_checks_with_a_hostile_plan(emu):
    """Even when the host hands the kernel offsets outside the payload, nothing is read or
    written outside the buffers (guard zones) and the item is flagged."""
    blob = _blob_for_corruption(streams=6)
    h = _container.parse(blob)
    for field, value in (("stream_off", 1 << 30), ("stream_off", 3), ("stream_words", 1 << 20)):
        plan = _cuda.plan_decode([(h, blob)])
        off, dtype, count = plan.sections[field]
        view = plan.buffer[off:off + count * dtype.itemsize].view(dtype)
        view[count // 2] = value
        out = np.empty(plan.out_elements, np.float32)
        err = np.zeros(1, np.uint32)
        args = [emu.section(plan.buffer, plan.sections, n) for n in _cuda.DECODE_INPUTS]
        emu.launch("sw_decode_f32", plan.grid, plan.block, plan.smem, args + [out, err])
        assert err[0] & 16, f"{field}={value} not flagged"


# ------------------------------------------------------------------------------------------------
# encode
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()) or "default")
def test_encode_bytes_equal_reference(engine, bits, cfg):
    rng = np.random.default_rng(bits * 7 + len(cfg))
    x = relu_features(rng, (2, 12, 5, 7), zero_channels=(2, 9))
    check_encode(engine, x, cc.CodecConfig(bits=bits, **cfg))


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_encode_sparsity_seeds_float16(engine, sparsity, seed):
    rng = np.random.default_rng(100 + seed)
    x = sparse_features(rng, (2, 16, 6, 6), sparsity)
    for cfg in (cc.CodecConfig(bits=4), cc.CodecConfig(bits=2, granularity="channel"),
                cc.CodecConfig(bits=3, quantizer="ecsq"), cc.CodecConfig(bits=8, streams=33)):
        check_encode(engine, x, cfg)
        check_encode(engine, x.astype(np.float16), cfg)


@pytest.mark.parametrize("shape,axis", [((0,), None), ((3, 0, 2), 1), ((1,), None), ((), None),
                                        ((7, 1), 0), ((2, 3, 5), -1)])
def test_encode_small_and_empty(engine, shape, axis):
    x = np.random.default_rng(9).normal(size=shape).astype(np.float32)
    for bits in (1, 5, 8):
        check_encode(engine, x, cc.CodecConfig(bits=bits, axis=axis))


def test_quantize_rounding_ties_and_clamps(emu):
    """Exact halfway quotients round half to even; out-of-range values clamp -- as the reference."""
    from codec_cupy._quantizer import QuantParams
    scale = np.float32(0.5)
    ties = (np.arange(-40, 40, dtype=np.float32) + np.float32(0.5)) * scale     # x/s = k + 0.5 exactly
    extra = np.array([0.0, -0.0, 1e-30, -1e-30, 3e38, -3e38, 0.2499999, 0.25, 0.2500001], np.float32)
    x = np.concatenate((ties, extra)).reshape(1, 1, -1)
    for bits, zp in ((8, 128), (4, 7), (1, 0), (3, 5)):
        p = QuantParams(scale=np.array([scale], np.float32), zero_point=np.array([zp], np.int64))
        q, nz, dev = _cuda.quantize(emu, x, p, bits)
        with np.errstate(over="ignore"):                        # 3e38 / 0.5 overflows to inf: clamps
            rq, rnz, rdev = _reference.quantize(x, p, bits)
        np.testing.assert_array_equal(q, rq)
        np.testing.assert_array_equal(nz, rnz)
        np.testing.assert_array_equal(dev, rdev)
    thresholds = np.array([-1.0, -0.5, -0.5, 0.0, 0.25, 0.25, 2.0], np.float32)
    p = QuantParams(scale=None, zero_point=np.array([3], np.int64), levels=np.zeros(8, np.float32),
                    thresholds=thresholds)
    xe = np.concatenate((thresholds, np.nextafter(thresholds, np.float32(-np.inf)),
                         np.nextafter(thresholds, np.float32(np.inf)), [-9.0, 9.0])).astype(np.float32)
    q, _, _ = _cuda.quantize(emu, xe.reshape(1, 1, -1), p, 3)
    rq, _, _ = _reference.quantize(xe.reshape(1, 1, -1), p, 3)
    np.testing.assert_array_equal(q, rq)


def test_encode_large_layer2_tensor(engine):
    rng = np.random.default_rng(77)
    x = sparse_features(rng, (1, 512, 28, 28), 0.6)
    cfg = cc.CodecConfig(bits=4, granularity="channel")
    assert _encoder.encode(engine, x, cfg) == cc.encode(x, cfg, engine="cpu")


def test_float16_conversion_matches_numpy(emu):
    """The kernels' own float32 -> float16 rounding (decode to float16) equals NumPy's."""
    rng = np.random.default_rng(1)
    specials = np.array([0.0, -0.0, 65504, 65519.99, 65520, 1e6, -1e6, 2.0 ** -24, 2.0 ** -25,
                         2.0 ** -25 * 1.0000001, 3 * 2.0 ** -26, 2.0 ** -14, 2.0 ** -14 * (1 - 2.0 ** -11),
                         5.960464477539063e-08, 6.097555160522461e-05], np.float32)
    levels_all = np.concatenate((specials, (rng.normal(size=4000) * 10.0 ** rng.integers(-9, 6, 4000)).astype(np.float32)))
    for start in range(0, levels_all.size, 256):
        levels = np.zeros(256, np.float32)
        chunk = levels_all[start:start + 256]
        levels[:chunk.size] = chunk
        levels[0] = 0.0
        q = np.arange(256, dtype=np.uint8).reshape(1, 1, 256)
        # a blob whose ECSQ levels are the values to convert, symbols 0..255 once each
        h = _container.Header(dtype=np.dtype(np.float32), bits=8, shape=(256,), axis=None, scale=None,
                              zero_point=np.array([0]), levels=levels, zero_mask=None, pack=1, prob_bits=8,
                              table_map=np.zeros(1, np.uint8), freqs=np.ones((1, 256), np.int64),
                              nwords=np.zeros(0, np.int64))
        packed = q.reshape(1, 256).astype(np.int64)
        streams, nwords = _reference.rans_encode(packed, np.zeros(1, np.int64), np.ones((1, 256), np.int64), 8, 3)
        h.nwords = nwords
        blob = _container.write(h, streams)
        hh = _container.parse(blob)
        (y,) = _cuda.decode_items(emu, [(hh, blob)], out_dtype=np.float16)
        with np.errstate(over="ignore"):                        # > 65504 rounds to inf, as intended
            expect = levels.astype(np.float16)
        np.testing.assert_array_equal(bits_of(y), bits_of(expect))


# ------------------------------------------------------------------------------------------------
# inverse block DCT (coding mode "transform")
# ------------------------------------------------------------------------------------------------

TRANSFORM_SHAPES = [(3, 5, 7, 9), (1, 1, 1, 1), (2, 17, 16), (1, 16, 16), (4, 33), (2, 3, 31, 2)]
TRANSFORM_EMPTY = [(0, 5, 7), (2, 0, 9), (3, 4, 0), (0, 0), (1, 0, 0, 3)]


def mixed_coefficients(rng, shape, block):
    """Random (P, B*B) float32 coefficients spanning six decades (normal * 10**U(-3, 3))."""
    p, bb = _transform.coded_view_shape(shape, block)
    return (rng.normal(size=(p, bb)) * 10.0 ** rng.uniform(-3, 3, size=(p, bb))).astype(np.float32)


@pytest.mark.parametrize("block", range(_transform.MIN_BLOCK, _transform.MAX_BLOCK + 1))
def test_inverse_transform_matches_reference_bits(emu, block):
    """sw_inverse_dct == _transform.inverse bit for bit, for every B and maps that are not whole
    blocks (so the kernel's cropping and block numbering are exercised too)."""
    rng = np.random.default_rng(1000 + block)
    for shape in TRANSFORM_SHAPES:
        coef = mixed_coefficients(rng, shape, block)
        ref = _transform.inverse(coef, shape, block)
        y = _cuda.inverse_transform_on(emu, coef, shape, block)
        assert y.shape == shape and y.dtype == np.float32 and ref.dtype == np.float32
        assert np.array_equal(y.view(np.uint32), ref.view(np.uint32)), (shape, block)
    # signed zeros: sums start from the first product (-0.0 stays -0.0, 0.0 + -0.0 would not)
    for fill in (-0.0, 0.0):
        coef = np.full(_transform.coded_view_shape((2, 5, 7), block), fill, np.float32)
        coef[::2, 1::3] = -0.0 if fill == 0.0 else 0.0
        y = _cuda.inverse_transform_on(emu, coef, (2, 5, 7), block)
        np.testing.assert_array_equal(bits_of(y), bits_of(_transform.inverse(coef, (2, 5, 7), block)))
    # coefficients of a smooth tensor (what the encoder actually produces)
    x = np.cumsum(np.cumsum(rng.normal(size=(2, 3, 19, 21)), axis=-1), axis=-2).astype(np.float32)
    coef = _transform.forward(x, block)
    y = _cuda.inverse_transform_on(emu, coef, x.shape, block)
    np.testing.assert_array_equal(bits_of(y), bits_of(_transform.inverse(coef, x.shape, block)))


@pytest.mark.parametrize("shape", TRANSFORM_EMPTY)
def test_inverse_transform_empty(emu, shape):
    for block in (2, 7, 16):
        coef = np.zeros(_transform.coded_view_shape(shape, block), np.float32)
        y = _cuda.inverse_transform_on(emu, coef, shape, block)
        ref = _transform.inverse(coef, shape, block)
        assert y.shape == ref.shape == shape and y.dtype == np.float32


def test_inverse_transform_rejects_bad_arguments(emu):
    coef = np.zeros(_transform.coded_view_shape((2, 5, 7), 4), np.float32)
    for block in (1, 17):
        with pytest.raises(ValueError, match="block"):
            _cuda.inverse_transform_on(emu, coef, (2, 5, 7), block)
    with pytest.raises(ValueError, match="expected"):
        _cuda.inverse_transform_on(emu, coef, (2, 5, 7), 3)
    with pytest.raises(ValueError, match="dimensions"):
        _cuda.inverse_transform_on(emu, np.zeros((1, 16), np.float32), (5,), 4)


def test_inverse_transform_kernel_guards(emu):
    """Launched with inconsistent arguments the kernel writes nothing it should not: threads past
    the end (the guard zones catch any write), a block size outside 2..16, blocks outside (BY, BX)."""
    rng = np.random.default_rng(8)
    lead, h, w, b = 2, 9, 10, 4
    coef = rng.normal(size=_transform.coded_view_shape((lead, h, w), b)).astype(np.float32)
    basis = np.ascontiguousarray(_transform.basis(b)).reshape(-1)
    ref = _transform.inverse(coef, (lead, h, w), b).reshape(-1)
    sentinel = np.float32(-12345.5)
    # 3 blocks of 256 threads for 180 outputs: only the outputs are written
    out = np.full(lead * h * w, sentinel, np.float32)
    emu.launch("sw_inverse_dct", 3, 256, 0, [coef.reshape(-1), basis, lead, h, w, b, 3, 3, out])
    np.testing.assert_array_equal(bits_of(out), bits_of(ref))
    for bad_b in (0, 1, 17, 1 << 20):
        out = np.full(lead * h * w, sentinel, np.float32)
        emu.launch("sw_inverse_dct", 1, 256, 0, [coef.reshape(-1), basis, lead, h, w, bad_b, 3, 3, out])
        assert (out == sentinel).all()
    # BY = BX = 2 (too few): rows / columns >= 8 belong to no block and stay untouched
    small = np.ascontiguousarray(coef.reshape(lead, 3, 3, b * b)[:, :2, :2]).reshape(-1)
    out = np.full(lead * h * w, sentinel, np.float32)
    emu.launch("sw_inverse_dct", 1, 256, 0, [small, basis, lead, h, w, b, 2, 2, out])
    maps = out.reshape(lead, h, w)
    assert (maps[:, 8:, :] == sentinel).all() and (maps[:, :, 8:] == sentinel).all()
    expect = _transform.inverse(small.reshape(-1, b * b), (lead, 8, 8), b)
    np.testing.assert_array_equal(bits_of(maps[:, :8, :8]), bits_of(expect))


# ------------------------------------------------------------------------------------------------
# AddressSanitizer
# ------------------------------------------------------------------------------------------------

ASAN_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from codec_cupy import _container, _cuda
    from codec_cupy._crc32c import crc32c
    from codec_cupy.errors import CorruptStreamError
    emu = _cuda.HostEmulation(_cuda.HostEmulation.build({build!r}, asan=True))
    blobs = [open(p, "rb").read() for p in sys.argv[1:]]
    rng = np.random.default_rng(0)
    flagged = decoded = 0
    for blob in blobs:
        h = _container.parse(blob)
        _cuda.decode_items(emu, [(h, blob)])
        _cuda.decode_items(emu, [(h, blob)], out_dtype=np.float16)
        body = bytearray(blob[:-4])
        for _ in range(60):
            bad = bytearray(body)
            for pos in rng.integers(h.payload_offset, len(body), size=3):
                bad[pos] = rng.integers(0, 256)
            bad = bytes(bad) + crc32c(bytes(bad)).to_bytes(4, "little")
            try:
                _cuda.decode_items(emu, [(_container.parse(bad), bad)])
                decoded += 1
            except CorruptStreamError:
                flagged += 1
        for field, value in (("stream_off", 1 << 30), ("stream_words", 1 << 20), ("stream_off", 1)):
            plan = _cuda.plan_decode([(h, blob)])
            off, dtype, count = plan.sections[field]
            plan.buffer[off:off + count * dtype.itemsize].view(dtype)[count - 1] = value
            out = np.empty(plan.out_elements, np.float32)
            err = np.zeros(1, np.uint32)
            args = [emu.section(plan.buffer, plan.sections, n) for n in _cuda.DECODE_INPUTS]
            emu.launch("sw_decode_f32", plan.grid, plan.block, plan.smem, args + [out, err])
            assert err[0] & 16
    from codec_cupy import _transform
    for block in (2, 5, 16):
        for shape in ((3, 5, 7, 9), (2, 17, 16), (1, 1, 1)):
            coef = rng.normal(size=_transform.coded_view_shape(shape, block)).astype(np.float32)
            y = _cuda.inverse_transform_on(emu, coef, shape, block)
            assert np.array_equal(y.view(np.uint32), _transform.inverse(coef, shape, block).view(np.uint32))
    print("ASAN-OK", flagged, decoded)
""")


def test_asan_corrupt_streams(tmp_path):
    """Corrupt streams and hostile plans under AddressSanitizer: any out-of-bounds access aborts."""
    compiler = _compiler()
    libasan = subprocess.run([compiler, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not libasan or not Path(libasan).exists():
        pytest.skip("libasan is not available")
    rng = np.random.default_rng(5)
    paths = []
    for i, (x, cfg) in enumerate([
        (relu_features(rng), cc.CodecConfig(bits=4, streams=6)),
        (signed_features(rng, (1, 8, 5, 5)), cc.CodecConfig(bits=2, pack=4, streams=5, granularity="channel")),
        (relu_features(rng, (1, 16, 4, 4)), cc.CodecConfig(bits=8, tables=16, prob_bits=15, streams=3)),
    ]):
        p = tmp_path / f"b{i}.spwc"
        p.write_bytes(cc.encode(x, cfg, engine="reference"))
        paths.append(str(p))
    script = tmp_path / "asan_run.py"
    script.write_text(ASAN_SCRIPT.format(tests=str(ROOT / "tests"), build=str(BUILD_DIR)))
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               PYTHONPATH=str(ROOT), NUMBA_DISABLE_JIT="1")
    done = subprocess.run([sys.executable, str(script), *paths], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0 and "ASAN-OK" in done.stdout, (done.stdout[-2000:], done.stderr[-5000:])


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()) or "default")
def test_device_encode_pipeline_mirrors_encoder(emu, cfg):
    """``_cuda.encode_on`` (the device-resident mirror of ``_encoder.encode`` used for CuPy inputs)
    gives the reference bytes, float32 and float16 inputs."""
    rng = np.random.default_rng(len(cfg) + 40)
    x = relu_features(rng, (2, 12, 5, 7), zero_channels=(2, 9))
    for bits in (1, 4, 8):
        config = cc.CodecConfig(bits=bits, **cfg)
        for xx in (x, x.astype(np.float16)):
            assert _cuda.encode_on(emu, xx, config) == cc.encode(xx, config, engine="reference")


@pytest.mark.parametrize("bits", [1, 4])
def test_device_encode_drops_the_mask_where_the_reference_does(emu, engine, bits):
    """Many small channels, one all zero: the encoder's second try without the zero mask wins, on
    the device pipeline and the host engine alike."""
    x = np.abs(np.random.default_rng(bits).laplace(size=(1, 256, 4, 4))).astype(np.float32)
    x[:, 9] = 0
    config = cc.CodecConfig(bits=bits)
    blob = cc.encode(x, config, engine="reference")
    assert not cc.inspect(blob)["plan"]["zero_mask"]
    assert _cuda.encode_on(emu, x, config) == blob
    check_encode(engine, x, config)


def test_transform_blobs_through_the_api_cuda_path(emu, monkeypatch):
    """``api``'s device="cuda" path on version-2 blobs, with the emulated kernels standing in for the
    GPU: a mixed batch decodes (float32 and float16) to the host engines' bits, and a transform
    encode on the kernels writes the reference's bytes."""
    import types

    from codec_cupy import api
    from conftest import smooth_features

    shim = types.SimpleNamespace(
        decode_batch=lambda items, out_dtype=np.float32: _cuda.decode_items(emu, items, out_dtype=out_dtype),
        inverse_transform=lambda y, shape, block, out_dtype=np.float32:
            _cuda.inverse_transform_on(emu, y, shape, block).astype(out_dtype))
    monkeypatch.setattr(api, "_cuda", lambda: shim)
    x = smooth_features(np.random.default_rng(78), (2, 3, 13, 11))
    blobs = [cc.encode(x, cc.CodecConfig(transform="dct", block=b, step=0.05), engine="reference") for b in (4, 8)]
    blobs.append(cc.encode(x, cc.CodecConfig(bits=4), engine="reference"))
    for dtype in (np.float32, np.float16):
        for blob, y in zip(blobs, cc.decode_batch(blobs, device="cuda", out_dtype=dtype)):
            np.testing.assert_array_equal(bits_of(y), bits_of(cc.decode(blob, engine="cpu").astype(dtype)))
    np.testing.assert_array_equal(bits_of(cc.decode(blobs[0], device="cuda")), bits_of(cc.decode(blobs[0])))
    cfg = cc.CodecConfig(transform="dct", block=8, step=0.05)
    assert _cuda.encode_on(emu, x, cfg) == blobs[1]


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_prior_blobs_on_the_kernels(emu, bits, granularity):
    """Version-3 blobs (a shared prior, one table per position): the kernels decode the position
    view with up to 256 tables to the reference's bits, and the device pipeline writes the
    reference's bytes, for a batch and through the api's device="cuda" path."""
    rng = np.random.default_rng(bits + 60)
    xs = [sparse_features(rng, (1, 12, 5, 7), 0.6) for _ in range(12)]
    cfg = cc.CodecConfig(bits=bits, granularity=granularity, streams=9)
    prior = cc.fit_prior(xs[:10], cfg, tables=256 if bits == 1 else 40)
    x = np.concatenate(xs[10:])
    blob = cc.encode(x, cfg, engine="reference", prior=prior)
    h = _container.with_prior(_container.parse(blob), prior)
    ref = _reference.decode(h, blob)
    (y,) = _cuda.decode_items(emu, [(h, blob)])
    np.testing.assert_array_equal(bits_of(y), bits_of(ref))
    assert _cuda.encode_on(emu, x, cfg, prior) == blob
    assert _cuda.encode_on(emu, x.astype(np.float16), cfg, prior) == cc.encode(x.astype(np.float16), cfg,
                                                                                  engine="reference", prior=prior)


@pytest.mark.parametrize("bits", [2, 5, 8])
def test_transform_prior_blobs_on_the_kernels(emu, bits):
    """Version-3 transform blobs: the kernels decode the positions (a sample's blocks x frequencies)
    to the reference's coefficients, the kernel's inverse DCT gives the host decode's bits, and the
    device pipeline (quantize and rANS kernels) writes the reference's bytes, for a batch too."""
    rng = np.random.default_rng(bits + 70)
    xs = [relu_features(rng, (1, 5, 9, 11), ()) for _ in range(10)]
    cfg = cc.CodecConfig(transform="dct", block=4, step=0.03, bits=bits, frequency_weight=0.25, streams=6)
    prior = cc.fit_prior(xs[:8], cfg, tables=24)
    for x in (xs[8], np.concatenate(xs[8:])):
        blob = cc.encode(x, cfg, engine="reference", prior=prior)
        h = check_decode(emu, blob, prior=prior, f16=False)
        (y,) = _cuda.decode_items(emu, [(h, blob)])
        y = _cuda.inverse_transform_on(emu, y, h.tensor_shape, h.block)
        np.testing.assert_array_equal(bits_of(y), bits_of(cc.decode(blob, prior=prior)))
        assert _cuda.encode_on(emu, x, cfg, prior) == blob


def test_prior_blobs_through_the_api_cuda_path(emu, monkeypatch):
    import types

    from codec_cupy import api

    shim = types.SimpleNamespace(
        decode_batch=lambda items, out_dtype=np.float32: _cuda.decode_items(emu, items, out_dtype=out_dtype),
        inverse_transform=lambda y, shape, block, out_dtype=np.float32:
            _cuda.inverse_transform_on(emu, y, shape, block).astype(out_dtype))
    monkeypatch.setattr(api, "_cuda", lambda: shim)
    rng = np.random.default_rng(61)
    xs = [sparse_features(rng, (1, 8, 4, 4), 0.5) for _ in range(6)]
    cfg = cc.CodecConfig(bits=2)
    dct = cc.CodecConfig(transform="dct", block=2, step=0.05)
    prior, dct_prior = cc.fit_prior(xs[:5], cfg), cc.fit_prior(xs[:5], dct)
    blobs = [cc.encode(xs[5], cfg, prior=prior), cc.encode(xs[5], cfg), cc.encode(xs[5], dct, prior=dct_prior)]
    for blob, y in zip(blobs, cc.decode_batch(blobs, device="cuda", prior=[prior, dct_prior])):
        assert y.shape == xs[5].shape
        np.testing.assert_array_equal(bits_of(y), bits_of(cc.decode(blob, prior=[prior, dct_prior])))
    np.testing.assert_array_equal(bits_of(cc.decode(blobs[0], device="cuda", prior=prior)),
                                  bits_of(cc.decode(blobs[0], prior=prior)))
