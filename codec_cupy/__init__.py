"""splitwire's feature codec: quantization + sparse modeling + interleaved rANS, three engines, one format.

    import codec_cupy as cc
    blob = cc.encode(x, cc.CodecConfig(bits=4))
    y = cc.decode(blob)
    cc.inspect(blob)["plan"]
    cfg = cc.calibrate(samples, cc.CodecConfig(bits=4))   # fix the planner's choice once for a stream
    prior = cc.fit_prior(samples, cfg)                     # a per-position model both ends hold
    y = cc.decode(cc.encode(x, cfg, prior=prior), prior=prior)

The bitstream is specified in docs/FORMAT.md; ``engine="reference"`` is its executable form.
"""

from . import errors
from ._calibrate import calibrate
from ._prior import Prior, fit_prior
from .api import available_engines, decode, decode_batch, encode, inspect
from .config import VALID, CodecConfig
from .errors import (BadMagicError, ChecksumError, CodecError, ConfigError, CorruptStreamError, DecodeError,
                     EngineUnavailableError, HeaderError, InputError, LimitExceededError, PriorError,
                     PriorMismatchError, TruncatedError, UnsupportedVersionError)

__version__ = "0.1.0"
FORMAT_VERSION = 3                   # the newest version read and written; blobs without a transform or a prior stay version 1

__all__ = [
    "CodecConfig", "VALID", "encode", "decode", "decode_batch", "inspect", "calibrate", "fit_prior", "Prior", "available_engines", "errors", "FORMAT_VERSION",
    "CodecError", "ConfigError", "InputError", "EngineUnavailableError", "DecodeError", "TruncatedError",
    "BadMagicError", "UnsupportedVersionError", "ChecksumError", "HeaderError", "LimitExceededError",
    "CorruptStreamError", "PriorError", "PriorMismatchError",
]
