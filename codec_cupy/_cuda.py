"""Engine "cuda": the codec's kernels (``codec_cupy/kernels/*.cu[h]``) driven through CuPy.

Decode: the host validates the container (``_container.parse``), then this module lays out one
launch -- lookup tables, stream offsets, per-channel parameters and payloads of one tensor or of a
whole batch packed into a single buffer (one host-to-device copy) -- and one kernel decodes every
stream and writes dequantized float32/float16 straight into the output (``sw_decode_f32/f16``).
Kernel errors come back as per-tensor flags and are raised as ``CorruptStreamError``.

Transform (coding mode "transform", ``_transform``): ``inverse_transform`` runs the inverse block DCT
of the decoded (P, B*B) coefficients on the device (``sw_inverse_dct``), bit for bit the float32
operations of ``_transform.inverse``.

Encode: the GPU quantizes, histograms and rANS-encodes; the choices that decide bytes from
statistics (parameters, zero mask, pack, tables, prob_bits, streams) run on the host in the shared
``_encoder``/``_planner`` code, so the bytes equal every other engine's.

The launch planning below is plain NumPy and is shared by two back ends:
  * ``CupyBackend``: the real GPU (NVRTC via ``cupy.RawModule``, compiled once per process and
    cached by CuPy on disk);
  * ``HostEmulation``: the same kernel source compiled for the CPU with g++ (used by the tests in
    CI, where there is no GPU).
CuPy is imported lazily: importing this module never needs it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np

from . import _container, _encoder, _transform
from ._container import Header
from ._quantizer import QuantParams
from ._tablecodec import cumulative
from .errors import CorruptStreamError, EngineUnavailableError, InputError, LimitExceededError

NAME = "cuda"
KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
KERNEL_MAIN = "splitwire_codec.cu"
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false")

# ---- mirrors of kernels/sw_layout.cuh (field for field) --------------------------------------
ITEM_FIELDS = ("OUT_LO", "OUT_HI", "PAY_LO", "PAY_HI", "PAY_BYTES", "STREAM_BASE", "NUM_STREAMS",
               "P", "NP", "G", "R", "INNER", "OUTER", "C", "CODED", "BITS", "PACK", "PROB_BITS",
               "NTABLES", "MODE", "LUT_BASE", "CHAN_BASE", "LEVEL_BASE", "SMEM", "N")
IT = {name: i for i, name in enumerate(ITEM_FIELDS)}
ITEM_WORDS = 32
BLOCK_WORDS = 4
BLOCK_STREAMS, BLOCK_ZERO = 0, 1
MODE_UNIFORM, MODE_ECSQ = 0, 1
ERRORS = {1: "initial state below 2**16", 2: "runs out of words", 4: "final state is not 2**16",
          8: "words left over", 16: "stream or output index out of range", 32: "symbol with frequency 0"}

DEFAULT_THREADS = 64           # streams per decode block (one stream per thread)
ENCODE_THREADS = 128
QUANT_THREADS, QUANT_ITEMS = 256, 8
TRANSFORM_THREADS = 256        # output elements per inverse-DCT block (one per thread)
HIST_THREADS, HIST_ITEMS = 256, 8
ZERO_ROW_ELEMENTS = 8192       # elements of zero-masked rows per SW_BLOCK_ZERO block
SMEM_BUDGET = 96 * 1024        # lookup tables up to this size are staged in shared memory
MAX_ELEMENTS_32 = (1 << 31) - 1
ALIGN = 256

# Parameter types of every entry point ("p" pointer, "u32"/"u64" scalars), in order. CuPy passes a
# Python int as a 64-bit integer, so scalars are converted to these exact widths before a launch;
# tests/test_cuda_host.py checks this table against the PTX that nvcc generates.
KERNEL_SIGNATURES = {
    "sw_decode_f32": ("p",) * 14,
    "sw_decode_f16": ("p",) * 14,
    "sw_quantize_f32": ("p",) + ("u32",) * 6 + ("p",) * 6,
    "sw_quantize_f16": ("p",) + ("u32",) * 6 + ("p",) * 6,
    "sw_histogram": ("p",) * 3 + ("u32",) * 5 + ("p",) * 2,
    "sw_rans_encode": ("p",) * 3 + ("u32",) * 7 + ("p",) * 4,
    "sw_compact": ("p",) * 4 + ("u32",) * 3 + ("u64", "p"),
    "sw_inverse_dct": ("p",) * 2 + ("u32",) * 6 + ("p",),
}
_SCALAR_DTYPES = {"u32": np.uint32, "u64": np.uint64}


def _check_args(name: str, args) -> None:
    sig = KERNEL_SIGNATURES[name]
    if len(args) != len(sig):
        raise TypeError(f"{name} takes {len(sig)} arguments, got {len(args)}")
    for i, (kind, a) in enumerate(zip(sig, args)):
        is_array = hasattr(a, "__cuda_array_interface__") or isinstance(a, np.ndarray)
        if (kind == "p") != is_array:
            raise TypeError(f"{name}: argument {i} must be {'an array' if kind == 'p' else 'a ' + kind}")
        if kind != "p" and not 0 <= int(a) < (1 << (32 if kind == "u32" else 64)):
            raise OverflowError(f"{name}: argument {i} = {a} does not fit {kind}")


DECODE_INPUTS = ("items", "blocks", "payload", "stream_off", "stream_words", "lut_fb", "lut_sym",
                 "ch_table", "ch_scale", "ch_zp", "ch_list", "levels")


# ================================================================================================
# launch planning (NumPy only)
# ================================================================================================

def build_lut(freqs: np.ndarray, prob_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode lookup of every table: ``fb[t*M + slot] = f | (slot - cum) << 16``, ``sym = a``."""
    freqs = np.asarray(freqs, np.int64)
    ntables, alphabet = freqs.shape
    m = 1 << prob_bits
    cum = cumulative(freqs)
    fb = np.empty(ntables * m, np.uint32)
    sym = np.empty(ntables * m, np.uint8)
    slots = np.arange(m, dtype=np.int64)
    for t in range(ntables):
        a = np.repeat(np.arange(alphabet, dtype=np.int64), freqs[t])       # slot -> symbol
        fb[t * m:(t + 1) * m] = (freqs[t, a] | ((slots - cum[t, a]) << 16)).astype(np.uint32)
        sym[t * m:(t + 1) * m] = a.astype(np.uint8)
    return fb, sym


class _Packer:
    """Sections of one host buffer, each aligned to 256 bytes (one host-to-device copy)."""

    def __init__(self):
        self.parts: list[np.ndarray] = []
        self.sections: dict[str, tuple[int, np.dtype, int]] = {}
        self.size = 0

    def add(self, name: str, array: np.ndarray) -> None:
        a = np.ascontiguousarray(array)
        if a.size == 0:                                   # never hand a kernel a null pointer
            a = np.zeros(1, a.dtype)
        raw = a.reshape(-1).view(np.uint8)
        self.sections[name] = (self.size, a.dtype, a.size)
        pad = (-raw.size) % ALIGN
        self.parts.append(raw)
        if pad:
            self.parts.append(np.zeros(pad, np.uint8))
        self.size += raw.size + pad

    def buffer(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(ALIGN, np.uint8)


@dataclasses.dataclass
class DecodePlan:
    """Everything one decode launch needs: the packed buffer and the launch geometry."""

    buffer: np.ndarray                                # uint8, every input section
    sections: dict[str, tuple[int, np.dtype, int]]
    grid: int
    block: int
    smem: int
    out_elements: int
    out_offsets: list[int]
    shapes: list[tuple[int, ...]]
    streams: int

    @property
    def n_items(self) -> int:
        return len(self.shapes)


def _payload_view(h: Header, blob) -> np.ndarray:
    buf = np.frombuffer(blob, np.uint8)
    return buf[h.payload_offset:h.total_bytes - _container.CRC_BYTES]


def _lut(h: Header) -> tuple[np.ndarray, np.ndarray]:
    """``build_lut`` of the blob's tables; a prior's (up to 256 tables) are built once and kept with it."""
    if not h.positional:
        return build_lut(h.freqs, h.prob_bits)
    cached = h.prior.cache.get("cuda_lut")
    if cached is None:
        cached = h.prior.cache["cuda_lut"] = build_lut(h.freqs, h.prob_bits)
    return cached


def plan_decode(items, *, threads: int = DEFAULT_THREADS, smem_budget: int = SMEM_BUDGET) -> DecodePlan:
    """Lay out one launch that decodes every ``(header, blob)`` of ``items``.

    The headers come from ``_container.parse`` (validated); nothing here trusts the streams.
    """
    nitems = len(items)
    item_words = np.zeros((max(nitems, 1), ITEM_WORDS), np.uint32)
    blocks: list[tuple[int, int, int, int]] = []
    payloads, stream_off, stream_words, luts_fb, luts_sym = [], [], [], [], []
    ch_table, ch_scale, ch_zp, ch_list, levels = [], [], [], [], []
    pay_pos = stream_base = lut_base = chan_base = level_base = out_pos = 0
    smem = 0
    out_offsets, shapes = [], []
    for idx, (h, blob) in enumerate(items):
        h = _container.require_model(h)
        n = h.size
        if n > MAX_ELEMENTS_32:
            raise LimitExceededError(f"engine 'cuda' decodes tensors of fewer than 2**31 elements; "
                                     f"this one has {n}")
        channels, outer, inner, r = h.channels, h.outer, h.inner, h.row_length
        coded = h.coded_channels
        masked = np.setdiff1d(np.arange(channels), coded)
        nstreams, per, npk = h.num_streams, h.symbols_per_stream, h.num_packed
        payload = _payload_view(h, blob)
        slots = h.ntables << h.prob_bits
        fb, sym = _lut(h)
        use_smem = 5 * slots <= smem_budget
        w = item_words[idx]
        w[IT["OUT_LO"]], w[IT["OUT_HI"]] = out_pos & 0xFFFFFFFF, out_pos >> 32
        w[IT["PAY_LO"]], w[IT["PAY_HI"]] = pay_pos & 0xFFFFFFFF, pay_pos >> 32
        for name, value in (("PAY_BYTES", payload.size), ("STREAM_BASE", stream_base),
                            ("NUM_STREAMS", nstreams), ("P", per), ("NP", npk), ("G", h.groups),
                            ("R", r), ("INNER", inner), ("OUTER", outer), ("C", channels),
                            ("CODED", coded.size), ("BITS", h.bits), ("PACK", h.pack),
                            ("PROB_BITS", h.prob_bits), ("NTABLES", h.ntables),
                            ("MODE", MODE_ECSQ if h.levels is not None else MODE_UNIFORM),
                            ("LUT_BASE", lut_base), ("CHAN_BASE", chan_base), ("LEVEL_BASE", level_base),
                            ("SMEM", int(use_smem)), ("N", n)):
            w[IT[name]] = value
        # streams: one thread each
        for s0 in range(0, nstreams, threads):
            blocks.append((idx, BLOCK_STREAMS, s0, min(threads, nstreams - s0)))
        if nstreams:
            if use_smem:
                smem = max(smem, 5 * slots)
            offs = h.stream_offsets[:nstreams] - h.payload_offset
            stream_off.append(offs.astype(np.uint32))
            stream_words.append(h.nwords.astype(np.uint32))
        # zero-masked channels: rows of `inner` contiguous elements
        rows = masked.size * outer
        if rows and inner:
            per_block = max(1, ZERO_ROW_ELEMENTS // inner)
            for r0 in range(0, rows, per_block):
                blocks.append((idx, BLOCK_ZERO, r0, min(per_block, rows - r0)))
        payloads.append(payload)
        pay_pos += payload.size + ((-payload.size) % 16)
        if payload.size % 16:
            payloads.append(np.zeros((-payload.size) % 16, np.uint8))
        stream_base += nstreams
        luts_fb.append(fb)
        luts_sym.append(sym)
        lut_base += slots
        ch_table.append(h.table_map.astype(np.uint32))
        if h.levels is not None:
            ch_scale.append(np.ones(channels, np.float32))
            levels.append(h.levels.astype(np.float32))
            level_base += h.levels.size
        else:
            ch_scale.append(np.broadcast_to(h.scale, (channels,)).astype(np.float32))
        ch_zp.append(np.broadcast_to(h.zero_point, (channels,)).astype(np.int32))
        ch_list.append(np.concatenate((coded, masked)).astype(np.uint32))
        chan_base += channels
        out_offsets.append(out_pos)
        shapes.append(tuple(h.shape))
        out_pos += n + ((-n) % 64)
    p = _Packer()
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    p.add("items", item_words.ravel())
    p.add("blocks", np.array(blocks, np.uint32).reshape(-1, BLOCK_WORDS).ravel())
    p.add("payload", cat(payloads, np.uint8))
    p.add("stream_off", cat(stream_off, np.uint32))
    p.add("stream_words", cat(stream_words, np.uint32))
    p.add("lut_fb", cat(luts_fb, np.uint32))
    p.add("lut_sym", cat(luts_sym, np.uint8))
    p.add("ch_table", cat(ch_table, np.uint32))
    p.add("ch_scale", cat(ch_scale, np.float32))
    p.add("ch_zp", cat(ch_zp, np.int32))
    p.add("ch_list", cat(ch_list, np.uint32))
    p.add("levels", cat(levels, np.float32))
    return DecodePlan(buffer=p.buffer(), sections=p.sections, grid=len(blocks), block=threads,
                      smem=smem, out_elements=out_pos, out_offsets=out_offsets, shapes=shapes,
                      streams=stream_base)


# ================================================================================================
# back ends: the real GPU (CuPy) and the host emulation (ctypes); same launches
# ================================================================================================

def kernel_source() -> str:
    """``splitwire_codec.cu`` with its local ``#include "*.cuh"`` expanded (once each), so the
    source NVRTC sees -- and CuPy's on-disk cache key -- covers every header."""
    seen: set[str] = set()

    def expand(name: str) -> str:
        if name in seen:
            return ""
        seen.add(name)
        text = (KERNEL_DIR / name).read_text()
        out = []
        for line in text.splitlines():
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
            if m and (KERNEL_DIR / m.group(1)).exists() and m.group(1) != "host_emulation.h":
                out.append(expand(m.group(1)))
            elif line.strip() == "#pragma once":
                continue
            else:
                out.append(line)
        return "\n".join(out)

    return expand(KERNEL_MAIN)


class CupyBackend:
    """Launches on the current CUDA device through ``cupy.RawModule`` (compiled once)."""

    smem_budget = SMEM_BUDGET

    def __init__(self):
        import cupy
        self.xp = cupy
        self.module = cupy.RawModule(code=kernel_source(), options=NVRTC_OPTIONS)
        self._functions: dict[str, object] = {}

    def function(self, name: str):
        fn = self._functions.get(name)
        if fn is None:
            fn = self._functions[name] = self.module.get_function(name)
        return fn

    def upload(self, host: np.ndarray):
        return self.xp.asarray(host)

    def section(self, dev, sections, name):
        off, dtype, count = sections[name]
        return dev[off:off + count * dtype.itemsize].view(dtype)

    def launch(self, name, grid, block, smem, args):
        _check_args(name, args)
        fn = self.function(name)
        if smem > 48 * 1024 and fn.max_dynamic_shared_size_bytes < smem:
            fn.max_dynamic_shared_size_bytes = smem
        conv = tuple(a if kind == "p" else _SCALAR_DTYPES[kind](a)
                     for kind, a in zip(KERNEL_SIGNATURES[name], args))
        fn((grid,), (block,), conv, shared_mem=smem)

    def to_host(self, a) -> np.ndarray:
        return self.xp.asnumpy(a)

    def to_device(self, a):
        return self.xp.asarray(a)


class HostEmulation:
    """The kernels compiled for the CPU (``-DSW_HOST_EMULATION``) and run through ctypes.

    Arrays are NumPy; each launch copies every buffer into a guarded allocation of exactly its
    size (AddressSanitizer-poisoned when built with ``asan=True``) and fails on a guard write.
    """

    smem_budget = SMEM_BUDGET
    SCALAR = (1 << 64) - 1

    def __init__(self, library: str | os.PathLike):
        self.xp = np
        self.lib = ctypes.CDLL(str(library))
        for name in KERNEL_SIGNATURES:
            fn = getattr(self.lib, "sw_emu_" + name)
            fn.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_ulonglong,
                           ctypes.POINTER(ctypes.c_ulonglong), ctypes.POINTER(ctypes.c_ulonglong)]
            fn.restype = ctypes.c_int

    @staticmethod
    def build(out_dir: str | os.PathLike, *, asan: bool = False, compiler: str = "g++") -> Path:
        """Compile ``kernels/host_launch.cpp`` (which includes the kernel source) into a shared
        library under ``out_dir``; returns its path (rebuilt only when the sources change)."""
        flags = ["-std=c++20", "-O1", "-g", "-fPIC", "-shared", "-pthread", "-ffp-contract=off",
                 "-fno-fast-math", "-Wall", "-Wextra", "-Werror", "-DSW_HOST_EMULATION"]
        if asan:
            flags += ["-fsanitize=address", "-fno-omit-frame-pointer"]
        digest = hashlib.sha256(" ".join(flags).encode())
        for path in sorted(KERNEL_DIR.iterdir()):
            if path.suffix in (".cu", ".cuh", ".h", ".cpp"):
                digest.update(path.name.encode() + path.read_bytes())
        out = Path(out_dir) / f"libsw_emu_{'asan_' if asan else ''}{digest.hexdigest()[:16]}.so"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(f".{os.getpid()}.tmp")
            done = subprocess.run([compiler, *flags, str(KERNEL_DIR / "host_launch.cpp"), "-o", str(tmp)],
                                  capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"host build of the kernels failed:\n{done.stderr[-4000:]}")
            os.replace(tmp, out)
        return out

    def upload(self, host: np.ndarray):
        return host

    def section(self, dev, sections, name):
        off, dtype, count = sections[name]
        return dev[off:off + count * dtype.itemsize].view(dtype)

    def launch(self, name, grid, block, smem, args):
        _check_args(name, args)
        argv = (ctypes.c_ulonglong * len(args))()
        argb = (ctypes.c_ulonglong * len(args))()
        keep = []
        for i, a in enumerate(args):
            if isinstance(a, np.ndarray):
                if not a.flags.c_contiguous:
                    raise ValueError(f"{name}: argument {i} is not contiguous")
                keep.append(a)
                argv[i] = a.ctypes.data if a.nbytes else 0
                argb[i] = a.nbytes
            else:
                argv[i] = int(a) & self.SCALAR
                argb[i] = self.SCALAR
        rc = getattr(self.lib, "sw_emu_" + name)(grid, block, smem, argv, argb)
        if rc != 0:
            raise AssertionError(f"{name}: out-of-bounds write into a guard zone")

    def to_host(self, a) -> np.ndarray:
        return np.asarray(a)

    def to_device(self, a):
        return np.ascontiguousarray(a)


# ================================================================================================
# decode
# ================================================================================================

def decode_items(backend, items, *, out_dtype=np.float32, threads: int = DEFAULT_THREADS):
    """Decode every ``(header, blob)`` in one launch; returns backend arrays (views of one buffer)."""
    out_dtype = np.dtype(out_dtype)
    if out_dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise ValueError(f"out_dtype must be float32 or float16, got {out_dtype}")
    plan = plan_decode(items, threads=threads, smem_budget=backend.smem_budget)
    xp = backend.xp
    out = xp.empty(max(plan.out_elements, 1), out_dtype)
    err = xp.zeros(max(plan.n_items, 1), np.uint32)
    if plan.grid:
        dev = backend.upload(plan.buffer)
        args = [backend.section(dev, plan.sections, name) for name in DECODE_INPUTS]
        kernel_out = out.view(np.uint16) if out_dtype == np.float16 else out
        name = "sw_decode_f16" if out_dtype == np.float16 else "sw_decode_f32"
        backend.launch(name, plan.grid, plan.block, plan.smem, args + [kernel_out, err])
    flags = backend.to_host(err)
    for i in range(plan.n_items):
        if flags[i]:
            what = ", ".join(v for k, v in ERRORS.items() if flags[i] & k)
            where = f"tensor {i} of the batch: " if plan.n_items > 1 else ""
            raise CorruptStreamError(f"{where}an rANS stream is corrupt ({what})")
    ys = [out[o:o + math.prod(shape)].reshape(shape) for o, shape in zip(plan.out_offsets, plan.shapes)]
    # version 3: the kernel wrote each symbol's value (exact in float16 too); the blob's quantizer here
    return [_container.prior_dequantize(h, y, xp).astype(out_dtype, copy=False) if h.positional else y
            for (h, _), y in zip(items, ys)]


# ================================================================================================
# inverse block DCT (coding mode "transform")
# ================================================================================================

def inverse_transform_on(backend, coef, shape, block: int):
    """The float32 tensor of ``shape`` from its (P, B*B) block-DCT coefficients ``coef`` (a back-end
    array), on the back end: bit for bit ``_transform.inverse`` (kernels/sw_transform.cuh)."""
    shape = tuple(int(s) for s in shape)
    block = int(block)
    if not _transform.MIN_BLOCK <= block <= _transform.MAX_BLOCK:
        raise ValueError(f"block must be in {_transform.MIN_BLOCK}..{_transform.MAX_BLOCK}, got {block}")
    if len(shape) < 2 or min(shape) < 0:
        raise ValueError(f"the transform needs a shape of 2 or more dimensions, got {shape}")
    expect = _transform.coded_view_shape(shape, block)
    if tuple(coef.shape) != expect:
        raise ValueError(f"coefficients of shape {tuple(coef.shape)} for {shape} with block {block}; "
                         f"expected {expect}")
    n = math.prod(shape)
    if n > MAX_ELEMENTS_32:
        raise LimitExceededError(f"engine 'cuda' transforms tensors of fewer than 2**31 elements; this one has {n}")
    xp = backend.xp
    out = xp.empty(max(n, 1), np.float32)
    if n:
        lead, by, bx = _transform.grid(shape, block)
        c = xp.ascontiguousarray(coef.astype(np.float32, copy=False)).reshape(-1)
        basis = backend.to_device(np.ascontiguousarray(_transform.basis(block)).reshape(-1))
        backend.launch("sw_inverse_dct", -(-n // TRANSFORM_THREADS), TRANSFORM_THREADS, 0,
                       [c, basis, lead, shape[-2], shape[-1], block, by, bx, out])
    return out[:n].reshape(shape)


# ================================================================================================
# encode primitives (the engine interface of _encoder, on a back end)
# ================================================================================================

def quantize(backend, xv, p: QuantParams, bits: int):
    """(outer, C, inner) float32/float16 -> q (C, R) uint8 on the back end, nonzero and sum|q - z|
    per channel (host int64) -- the reference engine's ``quantize``."""
    xp = backend.xp
    outer, channels, inner = xv.shape
    r = outer * inner
    if outer * channels * inner > MAX_ELEMENTS_32:
        raise InputError("engine 'cuda' encodes tensors of fewer than 2**31 elements")
    q = xp.empty((channels, r), np.uint8)
    nonzero = xp.zeros(max(channels, 1), np.uint64)
    absdev = xp.zeros(max(channels, 1), np.uint64)
    ecsq = p.thresholds is not None
    scale = np.ones(channels, np.float32) if ecsq else np.broadcast_to(p.scale, (channels,)).astype(np.float32)
    zp = p.zero_symbols(channels).astype(np.int32)
    thr = p.thresholds.astype(np.float32) if ecsq else np.zeros(1, np.float32)
    chunks = -(-r // (QUANT_THREADS * QUANT_ITEMS))
    if channels and r:
        f16 = np.dtype(xv.dtype) == np.float16
        x = xp.ascontiguousarray(xv)
        x = x.view(np.uint16) if f16 else x.astype(np.float32, copy=False)
        backend.launch("sw_quantize_f16" if f16 else "sw_quantize_f32", channels * chunks, QUANT_THREADS, 0,
                       [x.reshape(-1), channels, inner, r, chunks, bits, MODE_ECSQ if ecsq else MODE_UNIFORM,
                        backend.to_device(_nonempty(scale)), backend.to_device(_nonempty(zp)),
                        backend.to_device(thr), q.reshape(-1) if q.size else xp.zeros(1, np.uint8),
                        nonzero, absdev])
    nz = backend.to_host(nonzero)[:channels].astype(np.int64)
    dev = backend.to_host(absdev)[:channels].astype(np.int64)
    return q, nz, dev


def _nonempty(a: np.ndarray) -> np.ndarray:
    return a if a.size else np.zeros(1, a.dtype)


def histograms(backend, q, coded, zsym, bits, ks):
    """For each k: (per-channel histograms (C, 2**(k*bits)) int64 on the host, packed symbols
    (Cc, G) uint8 on the back end) -- the reference engine's ``histograms``."""
    xp = backend.xp
    channels, r = q.shape
    coded_d = backend.to_device(_nonempty(np.asarray(coded, np.uint32)))
    zs_d = backend.to_device(_nonempty(np.asarray(zsym, np.int32)))
    out = []
    for k in ks:
        alphabet = 1 << (k * bits)
        groups = -(-r // k)
        hist = xp.zeros((max(channels, 1), alphabet), np.uint32)
        packed = xp.empty((len(coded), groups), np.uint8)
        if len(coded) and r:
            chunks = -(-groups // (HIST_THREADS * HIST_ITEMS))
            backend.launch("sw_histogram", len(coded) * chunks, HIST_THREADS, 0,
                           [q.reshape(-1), coded_d, zs_d, r, groups, chunks, bits, k, hist.reshape(-1),
                            packed.reshape(-1)])
        out.append((backend.to_host(hist)[:channels].astype(np.int64), packed))
    return out


def rans_encode(backend, packed, tsel, freqs, prob_bits, nstreams):
    """Encode the packed symbols (Cc, G) (coded channel j with table ``tsel[j]``) into
    ``nstreams`` streams: (stream bytes uint8, words per stream int64), both on the host."""
    xp = backend.xp
    npk = int(packed.size)
    if nstreams == 0 or npk == 0:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64)
    if npk > MAX_ELEMENTS_32:
        raise InputError("engine 'cuda' encodes fewer than 2**31 packed symbols per tensor")
    groups = int(packed.shape[1])
    per = -(-npk // nstreams)
    freqs = np.asarray(freqs, np.int64)
    alphabet = freqs.shape[1]
    cum = cumulative(freqs)
    fc = (freqs | (cum << 16)).astype(np.uint32).ravel()
    packed_d = xp.ascontiguousarray(backend.to_device(packed).astype(np.uint8, copy=False)).reshape(-1)
    scratch = xp.empty(npk, np.uint16)
    states = xp.empty(nstreams, np.uint32)
    nwords = xp.empty(nstreams, np.uint32)
    err = xp.zeros(1, np.uint32)
    backend.launch("sw_rans_encode", -(-nstreams // ENCODE_THREADS), ENCODE_THREADS, 0,
                   [packed_d, backend.to_device(np.asarray(tsel, np.uint32)), backend.to_device(fc), fc.size,
                    alphabet, groups, npk, per, nstreams, prob_bits, scratch, states, nwords, err])
    if int(backend.to_host(err)[0]):
        raise RuntimeError("sw_rans_encode: a symbol has frequency 0 in its table (planner bug)")
    nw = backend.to_host(nwords).astype(np.int64)
    sizes = _container.STATE_BYTES + 2 * nw
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.uint64)
    total = int(sizes.sum())
    out = xp.empty(total, np.uint8)
    backend.launch("sw_compact", min(nstreams, 65535), 128, 0,
                   [scratch, states, nwords, backend.to_device(offsets), npk, per, nstreams, total, out])
    return backend.to_host(out), nw


@functools.lru_cache(maxsize=1)
def _host_forward():
    from . import _cpu
    return _cpu.forward_transform if _cpu.HAVE_NUMBA else _transform.forward


class EngineOn:
    """The ``_encoder`` engine interface (minmax, quantize, histograms, rans_encode, decode) bound
    to a back end, so ``_encoder.encode(EngineOn(backend), x, cfg)`` runs the kernels."""

    NAME = NAME

    def __init__(self, backend):
        self.backend = backend

    def minmax(self, xv):
        xp = self.backend.xp
        xv = xp.asarray(xv) if xp is not np else xv
        if not bool(xp.isfinite(xv).all()):
            raise InputError(InputError.NON_FINITE)
        if xv.size == 0:
            return np.zeros(xv.shape[1]), np.zeros(xv.shape[1])
        lo = self.backend.to_host(xv.min(axis=(0, 2))).astype(np.float64)
        hi = self.backend.to_host(xv.max(axis=(0, 2))).astype(np.float64)
        return lo, hi

    def quantize(self, xv, p, bits):
        return quantize(self.backend, self.backend.to_device(xv), p, bits)

    @staticmethod
    def forward_transform(x, block):
        """The forward DCT runs on the host for every engine (``_encoder``): the compiled one where
        Numba is there (the same floats as ``_transform.forward``)."""
        return _host_forward()(x, block)

    def histograms(self, q, coded, zsym, bits, ks):
        return histograms(self.backend, q, coded, zsym, bits, ks)

    def rans_encode(self, packed, tsel, freqs, prob_bits, nstreams):
        return rans_encode(self.backend, packed, tsel, freqs, prob_bits, nstreams)

    def decode(self, h: Header, blob):
        (y,) = decode_items(self.backend, [(h, blob)])
        return self.backend.to_host(y)


# ================================================================================================
# public engine functions (what codec_cupy.api wires for device="cuda" / engine="cuda")
# ================================================================================================

@functools.lru_cache(maxsize=1)
def _backend() -> CupyBackend:
    try:
        import cupy
    except ImportError as exc:
        raise EngineUnavailableError("engine 'cuda' needs CuPy (pip install 'splitwire[gpu]')") from exc
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise EngineUnavailableError("engine 'cuda': no CUDA device is visible")
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        raise EngineUnavailableError(f"engine 'cuda': no usable CUDA device ({exc})") from exc
    return CupyBackend()


def available() -> bool:
    """True when CuPy imports and a CUDA device is visible (does not compile anything)."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - ImportError, CUDARuntimeError, driver errors
        return False


def decode(header: Header, blob, *, out_dtype=np.float32):
    """Decode one validated blob on the GPU: a CuPy array of ``header.shape`` (float32/float16)."""
    (y,) = decode_items(_backend(), [(header, blob)], out_dtype=out_dtype)
    return y


def inverse_transform(coef, shape, block: int, *, out_dtype=np.float32):
    """Inverse block DCT on the GPU: a CuPy array of ``shape`` (float32, or float16 rounded from
    the float32 result) from the (P, B*B) float32 coefficients ``coef`` (CuPy or NumPy)."""
    out_dtype = np.dtype(out_dtype)
    if out_dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise ValueError(f"out_dtype must be float32 or float16, got {out_dtype}")
    backend = _backend()
    y = inverse_transform_on(backend, backend.xp.asarray(coef), shape, block)
    return y if out_dtype == np.float32 else y.astype(out_dtype)


def decode_batch(items, *, out_dtype=np.float32):
    """Decode many validated ``(header, blob)`` pairs in one launch: a list of CuPy arrays."""
    if not items:
        return []
    return decode_items(_backend(), list(items), out_dtype=out_dtype)


def encode(x, cfg, prior=None) -> bytes:
    """Encode a device tensor (CuPy array, or anything with ``__dlpack__``; NumPy is copied up)
    on the GPU; the bytes equal every other engine's for the same input and config."""
    backend = _backend()
    cupy = backend.xp
    if not isinstance(x, cupy.ndarray):
        if hasattr(x, "__dlpack__") and not isinstance(x, np.ndarray):
            x = cupy.from_dlpack(x)
        elif hasattr(x, "dtype") and hasattr(x, "shape"):
            x = cupy.asarray(x)
        else:
            raise InputError(f"encode expects a CuPy/NumPy/DLPack float array, got {type(x).__name__}")
    _encoder.check_input(x)
    return encode_on(backend, cupy.ascontiguousarray(x), cfg, prior)


def encode_on(backend, x, cfg, prior=None) -> bytes:
    """``_encoder.encode_array`` (``encode_with_prior`` with a prior) with the tensor kept on the back
    end: the same steps and policy, the data-parallel ones run by the kernels."""
    if prior is not None:
        return _encoder.encode_with_prior(EngineOn(backend), x.astype(np.float32, copy=False), np.dtype(x.dtype),
                                          cfg, prior, to_host=backend.to_host)
    return _encoder.encode_array(EngineOn(backend), x.astype(np.float32, copy=False), np.dtype(x.dtype), cfg,
                                 to_host=backend.to_host)
