"""CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF.

``crc32c_reference`` is the readable definition; ``crc32c`` uses the hardware-accelerated ``crc32c``
package when it is installed (tests check both agree).
"""

from __future__ import annotations

_POLY = 0x82F63B78


def _make_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_POLY if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _make_table()


def crc32c_reference(data, value: int = 0) -> int:
    """CRC of ``data``; ``value``, the CRC of what came before, continues it."""
    crc = value ^ 0xFFFFFFFF
    for byte in bytes(data):
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF


try:  # pragma: no cover - depends on the environment
    from crc32c import crc32c as _fast_crc32c

    def crc32c(data, value: int = 0) -> int:
        return _fast_crc32c(data, value)
except ImportError:  # pragma: no cover
    crc32c = crc32c_reference
