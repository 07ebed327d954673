"""Block DCT of the last two dimensions (FORMAT.md section 8, format version 2).

Smooth, dense feature maps (EfficientNet's linear bottlenecks) put most of a B x B block's energy
in a few low frequencies; coding DCT coefficients instead of elements then costs far fewer bits
at the same accuracy. The coefficients form the *coded view* ``(P, B*B)``: one row per block, one
column ("channel") per frequency ``u*B + v``, so the rest of the codec (per-channel quantizer,
channel-group tables, zero-channel mask, streams) runs on it unchanged.

Exactness: the basis is ``T[k, i] = K[k, i] * 2**-15`` with integer ``K`` (``basis_int``), so every
engine holds the same float32 basis. The inverse (``inverse``) is specified operation by operation
(float32 products and sums in a fixed order, no fused multiply-add); every engine computes it
exactly so, and decoded tensors agree bit for bit. The forward transform is encoder policy (float64,
shared by all engines), any forward transform gives a valid stream.
"""

from __future__ import annotations

import functools
import math

import numpy as np

MIN_BLOCK, MAX_BLOCK = 2, 16
BASIS_SHIFT = 15


@functools.lru_cache(maxsize=None)
def basis_int(block: int) -> np.ndarray:
    """K (B, B) int64: round(2**15 * a_k * cos(pi * (2i + 1) * k / 2B)), a_0 = sqrt(1/B), a_k = sqrt(2/B)."""
    k = np.arange(block, dtype=np.float64)[:, None]
    i = np.arange(block, dtype=np.float64)[None, :]
    a = np.where(k == 0, math.sqrt(1.0 / block), math.sqrt(2.0 / block))
    out = np.rint(a * np.cos(np.pi * (2 * i + 1) * k / (2 * block)) * (1 << BASIS_SHIFT)).astype(np.int64)
    out.setflags(write=False)
    return out


def basis(block: int, dtype=np.float32) -> np.ndarray:
    """T (B, B): row k is frequency k, exact in float32 and float64."""
    return (basis_int(block).astype(np.float64) / (1 << BASIS_SHIFT)).astype(dtype)


def grid(shape: tuple[int, ...], block: int) -> tuple[int, int, int]:
    """(leading, block rows, block columns) of a tensor of ``shape`` (ndim >= 2)."""
    lead = math.prod(shape[:-2])
    return lead, -(-shape[-2] // block), -(-shape[-1] // block)


def coded_view_shape(shape: tuple[int, ...], block: int) -> tuple[int, int]:
    """(P, B*B): blocks, frequencies."""
    lead, by, bx = grid(shape, block)
    return lead * by * bx, block * block


def forward(x: np.ndarray, block: int) -> np.ndarray:
    """Encoder: the (P, B*B) float32 coefficients of ``x`` (float32, ndim >= 2).

    The maps are padded to whole blocks by repeating their last row / column (no edge to code). Per
    block X, with T = ``basis``, in float64:
        t[u, j] = sum over i = 0..B-1 of T[u, i] * X[i, j]
        c[u, v] = sum over j = 0..B-1 of t[u, j] * T[v, j]
    each product and sum rounded (no fused multiply-add), the sums accumulated in increasing i (j)
    starting from the first product, then c rounded once to float32. Any forward transform gives a
    valid stream; this order is fixed so that every engine (``_cpu.forward_transform``) writes the
    same bytes on every machine (a BLAS matrix product would not promise that)."""
    lead, by, bx = grid(x.shape, block)
    h, w = x.shape[-2:]
    maps = np.asarray(x, np.float64).reshape(lead, h, w)
    padded = np.pad(maps, ((0, 0), (0, by * block - h), (0, bx * block - w)), mode="edge") if lead and h and w \
        else np.zeros((lead, by * block, bx * block))
    blocks = padded.reshape(lead, by, block, bx, block).transpose(0, 1, 3, 2, 4).reshape(-1, block, block)
    t = basis(block, np.float64)
    rows = t[None, :, 0, None] * blocks[:, None, 0, :]                # (P, u, j)
    for i in range(1, block):
        rows = rows + t[None, :, i, None] * blocks[:, None, i, :]
    coef = rows[:, :, 0, None] * t[None, None, :, 0]                   # (P, u, v)
    for j in range(1, block):
        coef = coef + rows[:, :, j, None] * t[None, None, :, j]
    with np.errstate(over="ignore"):                     # the encoder rejects non-finite coefficients
        return np.ascontiguousarray(coef.reshape(lead * by * bx, block * block), dtype=np.float32)


def inverse(coef: np.ndarray, shape: tuple[int, ...], block: int) -> np.ndarray:
    """Decoder (FORMAT.md section 8): the float32 tensor of ``shape`` from its (P, B*B) coefficients.

    Per block, with c[u, v] = coef[p, u*B + v] and T = ``basis``:
        t[u, j] = sum over v = 0..B-1 of c[u, v] * T[v, j]
        y[i, j] = sum over u = 0..B-1 of T[u, i] * t[u, j]
    in float32, each product and each sum rounded (no fused multiply-add), the sums accumulated in
    increasing v (u) starting from the first product; then y is cropped to the tensor's maps."""
    lead, by, bx = grid(shape, block)
    h, w = shape[-2:]
    t = basis(block)
    c = np.asarray(coef, np.float32).reshape(lead * by * bx, block, block)
    with np.errstate(over="ignore", invalid="ignore"):   # inf coefficients (huge valid scales) as specified
        rows = c[:, :, 0, None] * t[0]                   # (P, u, j)
        for v in range(1, block):
            rows = rows + c[:, :, v, None] * t[v]
        y = t[0][None, :, None] * rows[:, 0, None, :]    # (P, i, j)
        for u in range(1, block):
            y = y + t[u][None, :, None] * rows[:, u, None, :]
    maps = y.reshape(lead, by, bx, block, block).transpose(0, 1, 3, 2, 4).reshape(lead, by * block, bx * block)
    return np.ascontiguousarray(maps[:, :h, :w]).reshape(shape)
