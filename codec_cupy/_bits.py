"""Byte- and bit-level primitives of the format (FORMAT.md sections 1 and 5).

Readers raise ``TruncatedError``/``HeaderError`` themselves so every caller validates by using them.
"""

from __future__ import annotations

from .errors import HeaderError, TruncatedError

MAX_UVARINT_BYTES = 9
MAX_EXP_GOLOMB_ZEROS = 24


def put_uvarint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("uvarint cannot hold a negative value")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


class ByteReader:
    """A cursor over untrusted bytes; every read is bounds-checked."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: memoryview, pos: int = 0, end: int | None = None):
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            raise TruncatedError(f"blob truncated: {what} needs {n} bytes at offset {self.pos}, "
                                 f"only {self.end - self.pos} remain")

    def u8(self, what: str) -> int:
        self.need(1, what)
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def take(self, n: int, what: str) -> memoryview:
        self.need(n, what)
        v = self.buf[self.pos:self.pos + n]
        self.pos += n
        return v

    def uvarint(self, what: str) -> int:
        value = shift = 0
        for _ in range(MAX_UVARINT_BYTES):
            byte = self.u8(what)
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
        raise HeaderError(f"{what}: uvarint longer than {MAX_UVARINT_BYTES} bytes")


class BitWriter:
    """LSB-first bit packing; ``finish()`` pads to a byte boundary with zero bits."""

    __slots__ = ("out", "acc", "nacc")

    def __init__(self, out: bytearray):
        self.out, self.acc, self.nacc = out, 0, 0

    def bits(self, value: int, width: int) -> None:
        self.acc |= (value & ((1 << width) - 1)) << self.nacc
        self.nacc += width
        while self.nacc >= 8:
            self.out.append(self.acc & 0xFF)
            self.acc >>= 8
            self.nacc -= 8

    def exp_golomb(self, value: int, order: int) -> None:
        u = (value >> order) + 1
        z = u.bit_length() - 1
        self.bits(0, z)
        self.bits(1, 1)
        self.bits(u, z)          # the low z bits of u (its leading 1 was the marker bit)
        self.bits(value, order)

    def finish(self) -> None:
        if self.nacc:
            self.out.append(self.acc & 0xFF)
        self.acc = self.nacc = 0


class BitReader:
    """Reads a bit-packed block from a ByteReader; ``finish()`` checks the padding and realigns."""

    __slots__ = ("src", "acc", "nacc")

    def __init__(self, src: ByteReader):
        self.src, self.acc, self.nacc = src, 0, 0

    def bits(self, width: int, what: str) -> int:
        while self.nacc < width:
            self.acc |= self.src.u8(what) << self.nacc
            self.nacc += 8
        value = self.acc & ((1 << width) - 1)
        self.acc >>= width
        self.nacc -= width
        return value

    def exp_golomb(self, order: int, what: str) -> int:
        z = 0
        while self.bits(1, what) == 0:
            z += 1
            if z > MAX_EXP_GOLOMB_ZEROS:
                raise HeaderError(f"{what}: Exp-Golomb code with more than {MAX_EXP_GOLOMB_ZEROS} leading zeros")
        u = (1 << z) | self.bits(z, what)
        return ((u - 1) << order) | self.bits(order, what)

    def finish(self, what: str) -> None:
        if self.acc:
            raise HeaderError(f"{what}: nonzero padding bits at the end of a bit-packed block")
        self.acc = self.nacc = 0


def exp_golomb_length(value: int, order: int) -> int:
    """Bits that ``BitWriter.exp_golomb(value, order)`` writes."""
    return 2 * ((value >> order) + 1).bit_length() - 1 + order
