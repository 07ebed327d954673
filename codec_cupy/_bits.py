"""Byte-level primitives of the format (FORMAT.md section 1); bit-packed tables are in ``_tablecodec``.

Readers raise ``TruncatedError``/``HeaderError`` themselves so every caller validates by using them.
"""

from __future__ import annotations

from .errors import HeaderError, TruncatedError

MAX_UVARINT_BYTES = 9


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
