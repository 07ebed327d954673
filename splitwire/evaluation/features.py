"""Cut a model once per split point, run the head once over the inputs, cache the features; run the
tail (batched) on decoded features."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class SplitModel:
    name: str
    split: str
    tail: object                 # torch.fx.GraphModule
    features: np.ndarray         # float32 [N, ...], the head's output on every input
    channel_axis: int
    kind: str                    # module class at the cut

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (1,) + tuple(self.features.shape[1:])

    @property
    def elements(self) -> int:
        return int(np.prod(self.features.shape[1:]))


def _batched(fn, x: np.ndarray, batch: int) -> np.ndarray:
    import torch

    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            outs.append(fn(torch.from_numpy(np.ascontiguousarray(x[i:i + batch]))).float().numpy())
    return np.concatenate(outs)


def reference_logits(module, x: np.ndarray, batch: int) -> np.ndarray:
    """The unsplit model's logits."""
    return _batched(module, x, batch)


def _key(model: str, split: str, names: list[str], x: np.ndarray) -> str:
    h = hashlib.sha256(json.dumps([model, split, names, list(x.shape)]).encode())
    h.update(np.ascontiguousarray(x[:: max(1, len(x) // 16)]).tobytes())
    return h.hexdigest()[:16]


def split_model(spec, model: str, split: str, x: np.ndarray, names: list[str], batch: int,
                cache_dir: Path | None = None) -> SplitModel:
    """Cut ``spec.module`` after ``split`` and compute (or load) the head's features on ``x``."""
    import torch

    from ..split import split as cut

    example = torch.from_numpy(np.ascontiguousarray(x[:1]))
    head, tail, point = cut(spec.module, split, example)
    axis = int(getattr(spec, "channel_axis", 1) or 1)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{model}__{split}__{_key(model, split, names, x)}.npy"
        if path.is_file():
            feats = np.load(path)
            if feats.shape[0] == len(x):
                return SplitModel(model, split, tail, feats, axis, point.kind)
    feats = _batched(head, x, batch).astype(np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, feats)
        tmp.replace(path)
    return SplitModel(model, split, tail, feats, axis, point.kind)


def tail_logits(sm: SplitModel, feats: np.ndarray, batch: int) -> np.ndarray:
    return _batched(sm.tail, feats, batch)
