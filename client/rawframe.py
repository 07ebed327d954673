"""Uncompressed feature frames ("SPWR"): the baseline sent through the same ensemble.

A codec blob starts with ``SPWC``; a raw frame with ``SPWR``. The decoder accepts both so
that bench/serve.py can compare float32, float16 and splitwire on one deployment.

    magic "SPWR" | version u8 = 1 | dtype u8 (0 float32, 1 float16) | ndim u8 (<= 8) |
    reserved u8 = 0 | ndim x u32 shape | prod(shape) elements, little-endian, C order

Pure NumPy; the server copies this file next to the decoder's model.py.
"""

from __future__ import annotations

import struct

import numpy as np

MAGIC = b"SPWR"
_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<f2")}
_CODES = {np.dtype("float32"): 0, np.dtype("float16"): 1}


class RawFrameError(ValueError):
    pass


def encode(x: np.ndarray) -> bytes:
    x = np.asarray(x)
    if x.dtype not in _CODES:
        raise RawFrameError(f"raw frames carry float32 or float16, not {x.dtype}")
    if x.ndim > 8:
        raise RawFrameError(f"raw frames carry at most 8 dims, got {x.ndim}")
    head = MAGIC + bytes([1, _CODES[x.dtype], x.ndim, 0]) + struct.pack(f"<{x.ndim}I", *x.shape)
    return head + np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("<")).tobytes()


def decode(buf, max_elements: int) -> np.ndarray:
    """float32 array; raises RawFrameError naming what is wrong."""
    b = memoryview(buf).cast("B")
    if len(b) < 8 or bytes(b[:4]) != MAGIC:
        raise RawFrameError("not a raw frame (magic is not SPWR)")
    version, code, ndim, reserved = b[4], b[5], b[6], b[7]
    if version != 1 or reserved != 0:
        raise RawFrameError(f"raw frame version {version} is not supported (expected 1)")
    if code not in _DTYPES:
        raise RawFrameError(f"raw frame dtype code {code} is not 0 (float32) or 1 (float16)")
    if ndim > 8:
        raise RawFrameError(f"raw frame announces {ndim} dims; at most 8 are allowed")
    if len(b) < 8 + 4 * ndim:
        raise RawFrameError("raw frame truncated inside its shape")
    shape = struct.unpack_from(f"<{ndim}I", b, 8)
    n = 1
    for d in shape:
        n *= d
    if n > max_elements:
        raise RawFrameError(f"raw frame announces {n} elements; this server accepts at most {max_elements}")
    dt = _DTYPES[code]
    body = len(b) - 8 - 4 * ndim
    if body != n * dt.itemsize:
        raise RawFrameError(f"raw frame holds {body} data bytes; its shape {list(shape)} needs {n * dt.itemsize}")
    return np.frombuffer(b, dtype=dt, count=n, offset=8 + 4 * ndim).reshape(shape).astype(np.float32)
