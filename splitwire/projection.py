"""A shared channel projection at the split point: PCA (the Karhunen-Loeve transform) of the channels.

The features a head emits are strongly correlated across channels: on the Fashion-MNIST ResNet-50's
``layer1`` (64 channels) 16 principal components hold 78 % of the variance. A projection fitted
once, on calibration features, turns each position's C channel values into its first K principal
components (``y = (x - mean) @ basis``); the tail gets back ``x = y @ basis.T + mean`` (clamped at 0
where every calibration feature was >= 0, as after a ReLU). The codec then codes K channels instead
of C, and its DCT and shared prior work on decorrelated maps.

Like a shared prior, the projection is held by both ends and never crosses the network: ``export``
folds it into the models themselves (the head ONNX ends with the projection, the tail ONNX starts
with the reconstruction), so the client, the bitstream and the decoder are unchanged; the features
that travel simply have K channels. ``splitwire eval``'s ``pca`` key fits it on the other half of the
samples, never on the sample it codes.

    from splitwire.projection import fit_projection
    p = fit_projection(features, components=16)           # features: (N, C, H, W), channel axis 1
    y = p.project(x)                                         # (N, 16, H, W)
    x_hat = p.reconstruct(y)                                 # (N, C, H, W)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["Projection", "fit_projection", "components_for"]


@dataclass(frozen=True)
class Projection:
    """``basis``: (C, K) orthonormal columns, by decreasing variance; ``mean``: (C,); both float32.
    ``nonnegative``: the reconstruction is clamped at 0 (every fitted feature was >= 0).
    ``energy``: the fraction of the fitted features' variance the K components hold."""

    mean: np.ndarray
    basis: np.ndarray
    nonnegative: bool
    energy: float
    axis: int = 1

    @property
    def channels(self) -> int:
        return int(self.basis.shape[0])

    @property
    def components(self) -> int:
        return int(self.basis.shape[1])

    def project(self, x: np.ndarray) -> np.ndarray:
        """(..., C at ``axis``, ...) -> (..., K, ...), float32."""
        x = np.moveaxis(np.asarray(x, np.float32), self.axis, -1)
        if x.shape[-1] != self.channels:
            raise ValueError(f"the projection was fitted on {self.channels} channels, this tensor has {x.shape[-1]}")
        return np.ascontiguousarray(np.moveaxis((x - self.mean) @ self.basis, -1, self.axis))

    def reconstruct(self, y: np.ndarray) -> np.ndarray:
        """(..., K at ``axis``, ...) -> (..., C, ...), float32."""
        y = np.moveaxis(np.asarray(y, np.float32), self.axis, -1)
        x = y @ self.basis.T + self.mean
        if self.nonnegative:
            np.maximum(x, 0, out=x)
        return np.ascontiguousarray(np.moveaxis(x, -1, self.axis))

    def head_module(self, head, channels_first: bool = False):
        """``head`` followed by the projection, as a torch module (ONNX-exportable). The components
        take the channels' place, or with ``channels_first`` dimension 1 ((N, H, W, C) -> (N, K, H, W):
        the layout the codec's DCT needs)."""
        return _torch_modules()[0](head, self, channels_first)

    def tail_module(self, tail, channels_first: bool = False):
        """The reconstruction (from ``head_module``'s layout) followed by ``tail``, as a torch module."""
        return _torch_modules()[1](tail, self, channels_first)

    def describe(self) -> dict:
        return {"method": "pca", "channels": self.channels, "components": self.components,
                "energy": round(float(self.energy), 4), "nonnegative": self.nonnegative}


def components_for(channels: int, keep: float | int) -> int:
    """K for ``keep``: an int is K itself (at most C), a float in (0, 1] a fraction of C, rounded up."""
    if isinstance(keep, bool) or not isinstance(keep, (int, float)):
        raise ValueError(f"components: expected an integer or a fraction in (0, 1], got {keep!r}")
    if isinstance(keep, float):
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"components: a fraction of the channels must be in (0, 1], got {keep}")
        return max(1, int(np.ceil(channels * keep - 1e-9)))
    if not 1 <= keep:
        raise ValueError(f"components: expected at least 1, got {keep}")
    return min(int(keep), channels)


def fit_projection(features, components: float | int, axis: int = 1) -> Projection:
    """The PCA of ``features``' channels: ``features`` is one array (N, ...) or a list of them, each
    position (every index but ``axis``) one observation of the C channel values. ``components``: K,
    or a fraction of C (``components_for``). Deterministic: each component's sign makes its largest
    coefficient positive."""
    arrays = features if isinstance(features, (list, tuple)) else [features]
    channels, count, nonnegative = None, 0, True
    total = cross = None
    for a in arrays:
        x = np.moveaxis(np.asarray(a, np.float32), axis, -1)
        x = x.reshape(-1, x.shape[-1]).astype(np.float64)
        if channels is None:
            channels = x.shape[1]
            total, cross = np.zeros(channels), np.zeros((channels, channels))
        elif x.shape[1] != channels:
            raise ValueError(f"features disagree on the channel count: {channels} and {x.shape[1]}")
        total += x.sum(0)
        cross += x.T @ x
        count += x.shape[0]
        nonnegative = nonnegative and (x.size == 0 or float(x.min()) >= 0)
    if not count:
        raise ValueError("fit_projection needs at least one feature value")
    k = components_for(channels, components)
    mean = total / count
    cov = cross / count - np.outer(mean, mean)
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order]
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(channels)])
    vectors = vectors * np.where(signs == 0, 1, signs)
    energy = float(values[:k].sum() / values.sum()) if values.sum() > 0 else 1.0
    return Projection(mean.astype(np.float32), np.ascontiguousarray(vectors[:, :k], np.float32), nonnegative,
                      energy, axis)


@functools.lru_cache(maxsize=None)
def _torch_modules():
    """The two torch modules, defined on first use: evaluating with a projection needs NumPy only."""
    import torch

    class Project(torch.nn.Module):
        def __init__(self, head, p: Projection, channels_first: bool):
            super().__init__()
            self.head, self.axis, self.first = head, p.axis, channels_first
            self.register_buffer("mean", torch.from_numpy(p.mean.copy()))
            self.register_buffer("basis", torch.from_numpy(p.basis.copy()))

        def forward(self, x):
            f = self.head(x)
            to_last, back = _permutations(f.dim(), self.axis)
            y = (f.permute(to_last) - self.mean) @ self.basis          # components last
            return y.permute(_last_to_first(y.dim()) if self.first else back)

    class Reconstruct(torch.nn.Module):
        def __init__(self, tail, p: Projection, channels_first: bool):
            super().__init__()
            self.tail, self.axis, self.first, self.nonnegative = tail, p.axis, channels_first, p.nonnegative
            self.register_buffer("mean", torch.from_numpy(p.mean.copy()))
            self.register_buffer("basis_t", torch.from_numpy(np.ascontiguousarray(p.basis.T)))

        def forward(self, y):
            to_last, back = _permutations(y.dim(), self.axis)
            y = y.permute(_first_to_last(y.dim()) if self.first else to_last)   # components last
            x = y @ self.basis_t + self.mean
            if self.nonnegative:
                x = torch.clamp(x, min=0.0)
            return self.tail(x.permute(back))

    return Project, Reconstruct


def _permutations(ndim: int, axis: int) -> tuple[list[int], list[int]]:
    """(channel axis to the end, and back) as explicit non-negative permutations: the ONNX exporter
    writes ``movedim``'s negative axes into Transpose's ``perm``, which onnxruntime rejects."""
    axis %= ndim
    to_last = [d for d in range(ndim) if d != axis] + [axis]
    back = [to_last.index(d) for d in range(ndim)]
    return to_last, back


def _last_to_first(ndim: int) -> list[int]:
    """(N, ..., K) -> (N, K, ...)."""
    return [0, ndim - 1, *range(1, ndim - 1)]


def _first_to_last(ndim: int) -> list[int]:
    """(N, K, ...) -> (N, ..., K)."""
    return [0, *range(2, ndim), 1]
