"""The fast table writer and order search against their plain definitions (FORMAT.md section 4)."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import codec_cupy as cc
from codec_cupy import _container
from codec_cupy._crc32c import crc32c, crc32c_reference
from codec_cupy._tablecodec import best_order, write_tables


def order_bits(row, g):
    """Bits of one serialized table at Exp-Golomb order g: the 4-bit order field plus each code's
    z zeros, marker, z low bits of u = (v >> g) + 1 and g remainder bits."""
    return 4 + sum(2 * (((int(v) >> g) + 1).bit_length() - 1) + 1 + g for v in row)


def _plain_order(row):
    best_g, best_bits = 0, order_bits(row, 0)
    for g in range(1, 16):
        bits = order_bits(row, g)
        if bits >= best_bits:
            break
        best_g, best_bits = g, bits
    return best_g, best_bits


def _plain_tables(freqs):
    bits = []
    for row in freqs:
        g = _plain_order(row)[0]
        bits += [(g >> i) & 1 for i in range(4)]
        for v in row:
            u = (int(v) >> g) + 1
            z = u.bit_length() - 1
            bits += [0] * z + [1] + [(u >> i) & 1 for i in range(z)] + [(int(v) >> i) & 1 for i in range(g)]
    return np.packbits(np.array(bits, np.uint8), bitorder="little").tobytes()


def test_write_tables_matches_plain_definition():
    rng = np.random.default_rng(3)
    for _ in range(40):
        alphabet = 1 << int(rng.integers(1, 9))
        scale = 1 << int(rng.integers(1, 20))
        freqs = rng.integers(0, scale, size=(3, alphabet)) * (rng.random((3, alphabet)) < rng.random())
        for row in freqs:
            assert best_order(row) == _plain_order(row)
        out = np.zeros(alphabet * 3 * 8 + 16, np.uint8)
        assert out[:write_tables(freqs.astype(np.int64), out)].tobytes() == _plain_tables(freqs)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 1 << 16), min_size=1, max_size=300), st.integers(0, 5))
def test_best_order_counts_lengths_like_the_definition(row, spread):
    """``present_order`` prices every order from bit-length counts; the definition prices each code.
    Rows of all sizes, many absent symbols, values from 1 to 2**16 (a carry at every bit)."""
    row = np.array(row, np.int64) >> spread
    assert best_order(row) == _plain_order(row)


def test_crc32c_continues():
    data = bytes(range(256)) * 3
    assert crc32c(data[100:], crc32c(data[:100])) == crc32c(data)
    assert crc32c_reference(data[7:], crc32c_reference(data[:7])) == crc32c_reference(data)


def test_writer_refuses_per_channel_scales_that_are_not_bf16():
    """Per-channel scales travel as bf16 (the high half of each float32); one with low bits set
    would be silently truncated, so the writer refuses it."""
    x = np.random.default_rng(0).standard_normal((1, 3, 4)).astype(np.float32)
    h = _container.parse(cc.encode(x, cc.CodecConfig(bits=4, granularity="channel")))
    assert _container.write(h, np.zeros(0, np.uint8))[:4] == b"SPWC"         # bf16 scales: accepted
    bad = dataclasses.replace(h, scale=np.array([1.1, 1.0, 2.0], np.float32))
    with pytest.raises(ValueError, match="bf16"):
        _container.write(bad, np.zeros(0, np.uint8))
