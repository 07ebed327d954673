"""Every exception splitwire's codec raises.

One tree, so callers can catch as broadly or as narrowly as they need::

    CodecError                      base of everything below
    ├── ConfigError (ValueError)    an invalid CodecConfig or argument: fix the call
    ├── InputError (ValueError)     a tensor the encoder cannot take (NaN/Inf, dtype, > 8 dims)
    ├── EngineUnavailableError      the engine asked for is not installed or has no device
    └── DecodeError (ValueError)    untrusted bytes rejected; nothing was decoded
        ├── TruncatedError          the blob ends before a field it announces
        ├── BadMagicError           not a splitwire blob at all
        ├── UnsupportedVersionError written by a newer (or unknown) format version
        ├── ChecksumError           CRC32C mismatch: the bytes were damaged in transit
        ├── HeaderError             a field is out of range (shape, bits, table sums, offsets, ...)
        │   └── LimitExceededError  valid but larger than this decoder allows (max_elements)
        ├── CorruptStreamError      an rANS stream is inconsistent with its directory
        └── PriorError              a prior file is invalid, or a blob needs a prior not given
            └── PriorMismatchError  the blob names another prior than the one given

A server maps ``DecodeError`` to a 4xx answer (the client sent bad bytes) and anything else to 5xx.
"""

from __future__ import annotations

__all__ = [
    "CodecError",
    "ConfigError",
    "InputError",
    "EngineUnavailableError",
    "DecodeError",
    "TruncatedError",
    "BadMagicError",
    "UnsupportedVersionError",
    "ChecksumError",
    "HeaderError",
    "LimitExceededError",
    "CorruptStreamError",
    "PriorError",
    "PriorMismatchError",
]


class CodecError(Exception):
    """Base class of every error raised by ``codec_cupy``."""


class ConfigError(CodecError, ValueError):
    """An invalid ``CodecConfig`` field or function argument."""


class InputError(CodecError, ValueError):
    """The tensor given to the encoder cannot be encoded as it is."""

    NON_FINITE = ("the tensor contains NaN or Inf; the codec encodes finite values only "
                  "(check the head model's output, or clamp with np.nan_to_num)")


class EngineUnavailableError(CodecError, RuntimeError):
    """The requested engine is not installed here (or has no device)."""


class DecodeError(CodecError, ValueError):
    """Untrusted bytes were rejected at the boundary; nothing was decoded."""


class TruncatedError(DecodeError):
    """The blob is shorter than the fields it announces."""


class BadMagicError(DecodeError):
    """The blob does not start with the splitwire magic bytes."""


class UnsupportedVersionError(DecodeError):
    """The blob was written with a format version this decoder does not implement."""


class ChecksumError(DecodeError):
    """The CRC32C trailer does not match the bytes: they were damaged in transit."""


class HeaderError(DecodeError):
    """A header field is out of its valid range or inconsistent with another."""


class LimitExceededError(HeaderError):
    """The blob is valid but announces more than this decoder is allowed to allocate."""


class CorruptStreamError(DecodeError):
    """An entropy-coded stream does not decode consistently with its directory."""


class PriorError(DecodeError):
    """A prior's bytes are invalid, or a blob coded with a prior was decoded without one."""


class PriorMismatchError(PriorError):
    """The blob was coded with another prior (its id differs) than the one given to decode it."""
