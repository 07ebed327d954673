"""``calibrate``: choose the entropy model's structure once, on sample tensors, instead of per encode.

The planner prices its candidates on every ``encode``: on a 47 K-element tensor that search is
over a third of the encode time, and it is greedy (table count at 12 bits first, then the
precision), so it can miss the best (tables, precision) pair. A stream of tensors from one split
point (a camera's frames, a batch of images) has similar statistics from tensor to tensor:
``calibrate`` encodes the samples with every combination of the fields left "auto" among
``pack``, ``tables`` and ``prob_bits``, keeps the one with the fewest bytes over all samples, and
returns the config with those fields fixed. Encoding with it skips the search (the quantizer
parameters, the zero-channel mask and the number of streams are still chosen per tensor) and
writes ordinary blobs: any decoder reads them.

Choice rule (the planner's, applied to measured totals): the fewest bytes; a larger pack within
``speed_slack`` of that (k times fewer rANS steps); a precision above 12 bits only if it saves more
than ``speed_slack`` (each bit doubles the decoder's tables); ties to fewer tables, then fewer bits.
"""

from __future__ import annotations

import itertools

import numpy as np

from . import _container, _encoder
from .api import encode
from .config import AUTO, CodecConfig
from .errors import ConfigError

TABLE_COUNTS = (1, 2, 4, 8, 16)              # the planner's candidates (``_encoder._settings``)
PROB_BITS = tuple(range(_container.MIN_PROB_BITS, _encoder.PROB_BITS_LAST + 1))
CHEAP_BITS = _encoder.PROB_BITS_FIRST        # above this a precision must save more than speed_slack


def candidates(config: CodecConfig) -> list[tuple[int, int, int]]:
    """The (pack, tables, prob_bits) combinations ``calibrate`` tries: every value of each field left
    "auto", the configured value of the others."""
    packs = _encoder.pack_candidates(config)
    tables = TABLE_COUNTS if config.tables == AUTO else (config.tables,)
    bits = PROB_BITS if config.prob_bits == AUTO else (config.prob_bits,)
    return list(itertools.product(packs, tables, bits))


def choose(totals: dict[tuple[int, int, int], int], speed_slack: float) -> tuple[int, int, int]:
    """The (pack, tables, prob_bits) that the choice rule (module docstring) takes from the measured
    total bytes of each combination."""
    def best_of(items):
        cheap = [(n, t, b) for (k, t, b), n in items if b <= CHEAP_BITS]
        fine = [(n, t, b) for (k, t, b), n in items if b > CHEAP_BITS]
        best = min(cheap) if cheap else min(fine)
        if cheap and fine:
            top = min(fine)
            if top[0] + int(best[0] * speed_slack) < best[0]:
                best = top
        return best

    per_pack = {}
    for k in sorted({k for k, _, _ in totals}):
        per_pack[k] = best_of([(c, n) for c, n in totals.items() if c[0] == k])
    least = min(v[0] for v in per_pack.values())
    k = max(k for k, v in per_pack.items() if v[0] <= least + int(least * speed_slack))
    _, t, b = per_pack[k]
    return k, t, b


def calibrate(samples, config: CodecConfig | None = None, *, engine: str = "auto") -> CodecConfig:
    """``config`` with ``pack``, ``tables`` and ``prob_bits`` fixed to what codes ``samples`` best.

    ``samples``: one tensor or a sequence of tensors, each as it will be encoded (same rank and
    layout as later inputs; e.g. the features of a few representative images). Each sample is
    encoded once per combination: up to 4 x 5 x 7 = 140 encodes per sample with all three fields
    "auto" (fewer with larger ``bits`` or fields already fixed). Fields not "auto" are kept.
    """
    config = CodecConfig() if config is None else config
    if not isinstance(config, CodecConfig):
        raise ConfigError(f"config must be a CodecConfig, got {type(config).__name__}")
    if isinstance(samples, np.ndarray) or hasattr(samples, "__cuda_array_interface__"):
        samples = [samples]
    samples = list(samples)
    if not samples:
        raise ConfigError("calibrate needs at least one sample tensor")
    combos = candidates(config)
    if len(combos) == 1:
        k, t, b = combos[0]
        return config.replace(pack=k, tables=t, prob_bits=b)
    totals = {}
    for k, t, b in combos:
        trial = config.replace(pack=k, tables=t, prob_bits=b)
        totals[(k, t, b)] = sum(len(encode(x, trial, engine=engine)) for x in samples)
    k, t, b = choose(totals, float(config.speed_slack))
    return config.replace(pack=k, tables=t, prob_bits=b)
