"""Untrusted bytes: every malformed blob raises a typed DecodeError, never crashes, hangs or over-allocates."""

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import codec_cupy as cc
from codec_cupy import _container
from codec_cupy._bits import put_uvarint
from codec_cupy._tablecodec import write_tables
from codec_cupy._crc32c import crc32c, crc32c_reference
from codec_cupy.errors import (BadMagicError, ChecksumError, CorruptStreamError, DecodeError, HeaderError,
                               LimitExceededError, TruncatedError, UnsupportedVersionError)
from conftest import relu_features

ENGINES = ["reference", "cpu"]


def reseal(body: bytes) -> bytes:
    """Recompute the CRC so that validation reaches the fields behind it."""
    return body + crc32c(body).to_bytes(4, "little")


@pytest.fixture(scope="module")
def blob():
    x = relu_features(np.random.default_rng(7))
    return cc.encode(x, cc.CodecConfig(bits=4, streams=3))


def test_crc32c_matches_reference_and_known_vector():
    assert crc32c_reference(b"123456789") == 0xE3069283          # the standard CRC-32C check value
    data = bytes(range(256)) * 3
    assert crc32c(data) == crc32c_reference(data)


@pytest.mark.parametrize("engine", ENGINES)
def test_every_truncation_is_rejected(blob, engine):
    for n in range(len(blob)):
        with pytest.raises(DecodeError):
            cc.decode(blob[:n], engine=engine)


def test_error_types(blob):
    with pytest.raises(BadMagicError):
        cc.decode(b"XXXX" + blob[4:])
    with pytest.raises(UnsupportedVersionError):
        cc.decode(reseal(blob[:4] + bytes([9]) + blob[5:-4]))
    with pytest.raises(ChecksumError):
        cc.decode(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(ChecksumError):
        cc.decode(blob[:20] + bytes([blob[20] ^ 0x40]) + blob[21:])
    with pytest.raises(TruncatedError):
        cc.decode(blob[:5])
    with pytest.raises(TruncatedError):
        cc.decode(b"")


def _header(flags=0, dtype=0, bits=4, shape=(2, 3), axis=1):
    out = bytearray(b"SPWC") + bytes((1, flags, dtype, bits, len(shape), axis))
    for d in shape:
        put_uvarint(out, d)
    return out


@pytest.mark.parametrize("mutate, error", [
    (lambda b: b.__setitem__(5, 0x80), HeaderError),          # reserved flag bit
    (lambda b: b.__setitem__(6, 7), HeaderError),             # unknown dtype
    (lambda b: b.__setitem__(7, 0), HeaderError),             # bits = 0
    (lambda b: b.__setitem__(7, 9), HeaderError),             # bits = 9
    (lambda b: b.__setitem__(8, 9), HeaderError),             # ndim = 9
    (lambda b: b.__setitem__(9, 5), HeaderError),             # axis out of range
])
def test_header_fields_out_of_range(blob, mutate, error):
    body = bytearray(blob[:-4])
    mutate(body)
    with pytest.raises(error):
        cc.decode(reseal(bytes(body)))


def test_decompression_bomb_is_refused_before_allocating():
    body = _header(shape=(1 << 20, 1 << 20, 1 << 20), axis=1)
    body += struct.pack("<fB", 1.0, 0) + bytes((1, 12, 1))
    with pytest.raises(LimitExceededError):
        cc.decode(reseal(bytes(body)))
    small = cc.encode(np.ones((64, 64), np.float32), cc.CodecConfig(bits=2))
    with pytest.raises(LimitExceededError):
        cc.decode(small, max_elements=1000)
    assert cc.decode(small, max_elements=4096).shape == (64, 64)


def test_bad_scale_and_zero_point():
    for scale in (0.0, -1.0, float("nan"), float("inf")):
        body = _header(bits=4) + struct.pack("<fB", scale, 0)
        with pytest.raises(HeaderError):
            cc.decode(reseal(bytes(body) + bytes(16)))
    body = _header(bits=4) + struct.pack("<fB", 1.0, 16)           # zero point > 15
    with pytest.raises(HeaderError):
        cc.decode(reseal(bytes(body) + bytes(16)))


def _blob_with_model(pack=1, prob_bits=8, ntables=1, tables=b"", directory=b"", payload=b"", bits=4):
    body = _header(bits=bits, shape=(1, 1, 4)) + struct.pack("<fB", 1.0, 0) + bytes((pack, prob_bits, ntables))
    return reseal(bytes(body) + tables + directory + payload)


def _tables(freqs):
    """One serialized table, frequencies taken as given (they need not be valid)."""
    freqs = np.array([freqs], np.int64)
    out = np.zeros(len(freqs[0]) * 8 + 16, np.uint8)       # 64 bits per entry: room for 2**30
    return out[:write_tables(freqs, out)].tobytes()


def test_model_fields_out_of_range():
    with pytest.raises(HeaderError):
        cc.decode(_blob_with_model(pack=3))                    # 3 * 4 bits > 8
    with pytest.raises(HeaderError):
        cc.decode(_blob_with_model(pack=0))
    with pytest.raises(HeaderError):
        cc.decode(_blob_with_model(prob_bits=16))
    with pytest.raises(HeaderError):
        cc.decode(_blob_with_model(ntables=0))
    with pytest.raises(HeaderError):
        cc.decode(_blob_with_model(ntables=17))


def test_table_that_does_not_sum_to_precision():
    freqs = [100] + [0] * 15                                    # 100 != 256
    with pytest.raises(HeaderError, match="sum"):
        cc.decode(_blob_with_model(tables=_tables(freqs), directory=b"\x01\x00", payload=b"\x00\x00\x01\x00"))
    with pytest.raises(HeaderError):
        cc.decode(_blob_with_model(tables=_tables([1 << 30] + [0] * 15)))


def test_stream_directory_inconsistent():
    good = _tables([256] + [0] * 15)
    state = (1 << 16).to_bytes(4, "little")
    # 4 symbols, 1 stream, 0 words: the valid all-zero-symbol stream decodes
    ok = _blob_with_model(tables=good, directory=b"\x01\x00", payload=state)
    assert cc.decode(ok).shape == (1, 1, 4)
    with pytest.raises(HeaderError):                            # 5 streams for 4 symbols
        cc.decode(_blob_with_model(tables=good, directory=b"\x05" + b"\x00" * 5, payload=state * 5))
    with pytest.raises(HeaderError):                            # 3 streams: ceil(4/3)=2 leaves stream 2 empty
        cc.decode(_blob_with_model(tables=good, directory=b"\x03\x00\x00\x00", payload=state * 3))
    with pytest.raises(CorruptStreamError):                     # more words than symbols
        cc.decode(_blob_with_model(tables=good, directory=b"\x01\x05", payload=state + bytes(10)))
    with pytest.raises(DecodeError):                            # payload longer than announced
        cc.decode(_blob_with_model(tables=good, directory=b"\x01\x00", payload=state + b"\x00\x00"))
    with pytest.raises(TruncatedError):                         # payload shorter than announced
        cc.decode(_blob_with_model(tables=good, directory=b"\x01\x02", payload=state + b"\x00\x00"))
    with pytest.raises(HeaderError):                            # uvarint too long
        cc.decode(_blob_with_model(tables=good, directory=b"\xff" * 12, payload=state))


@pytest.mark.parametrize("engine", ENGINES)
def test_corrupt_stream_states(engine):
    good = _tables([128, 128] + [0] * 14)
    for state in (0, 5, (1 << 16) - 1, (1 << 16) + 1, 0xFFFFFFFF):
        blob = _blob_with_model(tables=good, directory=b"\x01\x00", payload=state.to_bytes(4, "little"))
        with pytest.raises(CorruptStreamError):
            cc.decode(blob, engine=engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_flipped_payload_bits_with_valid_crc(blob, engine):
    """A hostile sender can fix the CRC; the stream checks still catch (or harmlessly decode) it."""
    h = _container.parse(blob)
    rng = np.random.default_rng(0)
    for _ in range(40):
        body = bytearray(blob[:-4])
        pos = int(rng.integers(h.payload_offset, len(body)))
        body[pos] ^= 1 << int(rng.integers(8))
        try:
            y = cc.decode(reseal(bytes(body)), engine=engine)
            assert y.shape == h.shape
        except CorruptStreamError:
            pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutations_raise_typed_errors(blob, data):
    """Random edits (with and without a resealed CRC) either decode to the right shape or raise DecodeError."""
    body = bytearray(blob[:-4])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(0, len(body) - 1)))
        if op == "flip" and body:
            body[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and body:
            body[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            body[pos:pos] = bytes(data.draw(st.binary(min_size=1, max_size=8)))
        elif op == "delete" and body:
            del body[pos:pos + data.draw(st.integers(1, 8))]
    candidate = reseal(bytes(body)) if data.draw(st.booleans()) else bytes(body) + blob[-4:]
    engine = data.draw(st.sampled_from(ENGINES))
    try:
        y = cc.decode(candidate, engine=engine, max_elements=1 << 20)
        assert isinstance(y, np.ndarray) and y.dtype == np.float32
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_fuzz_random_bytes(raw):
    for candidate in (raw, b"SPWC\x01" + raw, reseal(b"SPWC\x01" + raw)):
        try:
            cc.decode(candidate, max_elements=1 << 16)
        except DecodeError:
            pass


def test_wrong_python_types():
    with pytest.raises(cc.ConfigError):
        cc.decode("not bytes")
    with pytest.raises(cc.ConfigError):
        cc.decode(np.zeros(4, np.float32))
