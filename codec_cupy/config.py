"""``CodecConfig``: what the encoder should do. Everything a decoder needs travels in the header."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Union

from .errors import ConfigError

__all__ = ["CodecConfig", "VALID"]

# The valid values of each enumerated field; error messages quote them.
VALID = {
    "granularity": ("tensor", "channel"),
    "clip": ("none", "percentile", "mse"),
    "quantizer": ("uniform", "ecsq"),
    "transform": ("none", "dct"),
    "sparse": ("auto", "on", "off"),
    "search": ("greedy", "full"),
}
AUTO = "auto"


@dataclasses.dataclass(frozen=True, kw_only=True)
class CodecConfig:
    """Encoder settings (frozen, keyword-only, validated on construction).

    Quantization
      bits         1..8 bits per element.
      granularity  "tensor" (one scale/zero point) or "channel" (one per channel of ``axis``).
      axis         channel axis (negative counts from the end); ``None`` = no channel axis. For
                   tensors with ``ndim <= axis`` the codec uses no channel axis.
      clip         "none" (min/max), "percentile" (clip to ``percentile`` of |x|'s range on both
                   sides) or "mse" (the clipping range that minimises the quantization MSE).
      percentile   for clip="percentile": the upper percentile kept, in (50, 100].
      quantizer    "uniform" (scale + zero point) or "ecsq" (entropy-constrained scalar quantizer,
                   per tensor; its reconstruction levels travel in the header).
      ecsq_lambda  rate weight of the ECSQ design, in units of squared uniform step size.

    Transform coding (format version 2)
      transform    "none" (code the elements) or "dct": a ``block`` x ``block`` DCT of the last two
                   dimensions (the feature maps), then one uniform quantizer per frequency. Pays on
                   smooth, dense maps (EfficientNet/MobileNet linear bottlenecks) at low rates.
                   Needs quantizer="uniform", granularity="tensor", clip="none"; ``axis`` is unused.
      block        DCT block size, 2..16 (maps are padded to whole blocks by edge repetition).
      step         with transform="dct": the coefficient quantization step as a fraction of the
                   tensor's value range (max(x, 0) - min(x, 0)), in (0, 1]; the rate knob. A
                   frequency whose range needs more than 2**bits steps gets a coarser one.
      frequency_weight  with transform="dct": frequency (u, v) gets step * (1 + frequency_weight *
                   (u + v)), coarser steps for finer detail; in [0, 16] (0: one step for all). Larger
                   weights trade high fidelity for low rates (docs/CODEC.md).

    Entropy modeling ("auto" lets the planner choose from the symbol statistics)
      sparse       zero-channel mask: "auto", "on", "off". "auto" drops it where coding the zero
                   channels is smaller (checked where the mask is at least 1 % of the blob).
      pack         symbols per packed symbol (k with k * bits <= 8), or "auto".
      speed_slack  how much size (a fraction of the cheapest candidate's cost) the planner gives up
                   for speed: with pack="auto" a larger pack within it is chosen (k times fewer
                   rANS steps), with prob_bits="auto" a precision above 12 must save more than it
                   (each bit doubles the decoder's tables; above 12 their entries double too).
                   0 = the smallest candidate (ties to the larger pack).
      tables       number of frequency tables for channel groups, 1..16, or "auto".
      prob_bits    probability precision n (tables sum to 2**n), 8..15, or "auto".
      search       how the planner searches the "auto" fields: "greedy" compares the packs with one
                   table, then adds tables and walks the precision for the chosen pack; "full" takes
                   every pack through tables and precision and compares their final costs: smaller
                   blobs where a smaller pack gains more from several tables (many-channel ReLU
                   features at 1-2 bits), a slower planner. ``calibrate`` searches once for many tensors.
      streams      number of independent rANS streams, >= 1, or "auto".
      stream_overhead  for streams="auto": the fraction of the payload the per-stream framing may
                   cost (more streams = more parallel decoding, more bytes).
    """

    bits: int = 8
    granularity: Literal["tensor", "channel"] = "tensor"
    axis: int | None = 1
    clip: Literal["none", "percentile", "mse"] = "none"
    percentile: float = 99.99
    quantizer: Literal["uniform", "ecsq"] = "uniform"
    ecsq_lambda: float = 0.15
    transform: Literal["none", "dct"] = "none"
    block: int = 8
    step: float = 0.02
    frequency_weight: float = 0.0
    sparse: Literal["auto", "on", "off"] = "auto"
    pack: Union[int, Literal["auto"]] = AUTO
    tables: Union[int, Literal["auto"]] = AUTO
    prob_bits: Union[int, Literal["auto"]] = AUTO
    search: Literal["greedy", "full"] = "greedy"
    streams: Union[int, Literal["auto"]] = AUTO
    stream_overhead: float = 0.004
    speed_slack: float = 0.005

    def __post_init__(self) -> None:
        _check_int("bits", self.bits, 1, 8)
        for name, choices in VALID.items():
            value = getattr(self, name)
            if value not in choices:
                raise ConfigError(f"CodecConfig.{name}={value!r} is not valid; choose one of {choices}")
        if self.axis is not None and not _is_int(self.axis):
            raise ConfigError(f"CodecConfig.axis={self.axis!r} must be an int or None")
        if self.granularity == "channel" and self.axis is None:
            raise ConfigError("granularity='channel' needs a channel axis; set axis (e.g. axis=1 for NCHW)")
        if self.quantizer == "ecsq" and self.granularity == "channel":
            raise ConfigError("quantizer='ecsq' is per tensor; use granularity='tensor'")
        if not (isinstance(self.percentile, (int, float)) and 50.0 < float(self.percentile) <= 100.0):
            raise ConfigError(f"CodecConfig.percentile={self.percentile!r} must be in (50, 100]")
        if not (isinstance(self.ecsq_lambda, (int, float)) and 0.0 <= float(self.ecsq_lambda) < math.inf):
            raise ConfigError(f"CodecConfig.ecsq_lambda={self.ecsq_lambda!r} must be a finite number >= 0")
        if not (isinstance(self.stream_overhead, (int, float)) and 0.0 < float(self.stream_overhead) <= 1.0):
            raise ConfigError(f"CodecConfig.stream_overhead={self.stream_overhead!r} must be in (0, 1]")
        if not (isinstance(self.speed_slack, (int, float)) and 0.0 <= float(self.speed_slack) <= 1.0):
            raise ConfigError(f"CodecConfig.speed_slack={self.speed_slack!r} must be in [0, 1]")
        _check_int("block", self.block, 2, 16)
        if not (isinstance(self.step, (int, float)) and not isinstance(self.step, bool)
                and 0.0 < float(self.step) <= 1.0):
            raise ConfigError(f"CodecConfig.step={self.step!r} must be a number in (0, 1]")
        if not (isinstance(self.frequency_weight, (int, float)) and not isinstance(self.frequency_weight, bool)
                and 0.0 <= float(self.frequency_weight) <= 16.0):
            raise ConfigError(f"CodecConfig.frequency_weight={self.frequency_weight!r} must be a number in [0, 16]")
        if self.transform == "dct" and (self.quantizer != "uniform" or self.granularity != "tensor"
                                        or self.clip != "none"):
            raise ConfigError("transform='dct' quantizes each frequency with its own uniform scale; use "
                              "quantizer='uniform', granularity='tensor', clip='none' (the rate knob is step)")
        if self.pack != AUTO:
            _check_int("pack", self.pack, 1, 8)
            if self.pack * self.bits > 8:
                raise ConfigError(
                    f"CodecConfig.pack={self.pack} with bits={self.bits} packs {self.pack * self.bits} bits; "
                    f"pack * bits must be <= 8 (use pack <= {8 // self.bits} or 'auto')")
        if self.tables != AUTO:
            _check_int("tables", self.tables, 1, 16)
        if self.prob_bits != AUTO:
            _check_int("prob_bits", self.prob_bits, 8, 15)
        if self.streams != AUTO:
            _check_int("streams", self.streams, 1, 1 << 24)

    def replace(self, **changes) -> "CodecConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value, lo: int, hi: int) -> None:
    if not _is_int(value) or not lo <= value <= hi:
        raise ConfigError(f"CodecConfig.{name}={value!r} must be an int in [{lo}, {hi}]"
                          + (" or 'auto'" if name in ("pack", "tables", "prob_bits", "streams") else ""))
