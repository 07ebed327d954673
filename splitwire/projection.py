"""A shared channel projection at the split point: PCA (the Karhunen-Loeve transform) of the channels.

The features a head emits are strongly correlated across channels: on the Fashion-MNIST ResNet-50's
``layer1`` (64 channels) 16 principal components hold 78 % of the variance. A projection fitted
once, on calibration features, turns each position's C channel values into its first K principal
components (``y = (x - mean) @ basis``); the tail gets back ``x = y @ basis.T + mean`` (clamped at 0
where every calibration feature was >= 0, as after a ReLU). The codec then codes K channels instead
of C, and its DCT and shared prior work on decorrelated maps.

PCA keeps the directions that hold the most *variance*, and the codec's uniform step spends its error
evenly over them; the tail, though, is far more sensitive to some directions than to others. With the
tail's **Fisher information** of the channels (``channel_fisher``: the mean outer product of the
gradient of the tail's loss at its own top-1 class, no labels needed), ``fit_projection(...,
fisher=F)`` fits the PCA of the Fisher-whitened channels ``z = (x - mean) @ M``, ``M = F^(1/2)``
(plus a small ridge): a uniform step on ``z`` then spends its error where the tail does not look,
and the kept components are the ones the tail's output depends on. The reconstruction is
``x = y @ inverse + mean``: with ``basis = M @ V`` (no longer orthonormal), ``inverse = V.T @ M^-1``,
the left inverse that maps the kept components back through the whitening.
On all 10,000 Fashion-MNIST test images this lowers the cheapest rate within a point of the
unsplit top-1 at 8 of the 11 splits where the default sweep picked it (VGG16 ``features.23``: 1.136
-> 0.773 bits per element; docs/RESULTS_FMNIST_10K_FISHER.md).

Like a shared prior, the projection is held by both ends and never crosses the network: ``export``
folds it into the models themselves (the head ONNX ends with the projection, the tail ONNX starts
with the reconstruction), so the client, the bitstream and the decoder are unchanged; the features
that travel simply have K channels. ``splitwire eval``'s ``pca`` key fits it on the other half of the
samples, never on the sample it codes.

    from splitwire.projection import channel_fisher, fit_projection
    p = fit_projection(features, components=16)           # features: (N, C, H, W), channel axis 1
    p = fit_projection(features, 16, fisher=channel_fisher(tail, features))   # weighted by the tail
    y = p.project(x)                                         # (N, 16, H, W)
    x_hat = p.reconstruct(y)                                 # (N, C, H, W)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Projection", "fit_projection", "components_for", "channel_fisher", "FISHER_RIDGE", "WEIGHTINGS"]

# How a projection may weight the channels: by variance alone, or by the tail's Fisher information.
WEIGHTINGS = ("pca", "fisher")

# Added to the Fisher matrix, as a fraction of its mean eigenvalue: channels the tail ignored on the
# fitting samples keep a small weight (and M an inverse). 0.01 and 0.1 gave the same curves on the
# Fashion-MNIST VGG16 and DenseNet-121 splits.
FISHER_RIDGE = 0.01


@dataclass(frozen=True)
class Projection:
    """``basis``: (C, K) columns, by decreasing variance (orthonormal for ``method="pca"``);
    ``inverse``: (K, C), the reconstruction, a left inverse of ``basis`` (``basis.T`` for PCA,
    ``V.T @ M^-1`` for ``method="fisher"``); ``mean``: (C,); all float32. ``nonnegative``: the
    reconstruction is clamped at 0 (every fitted feature was >= 0). ``energy``: the fraction of the
    fitted features' variance (for ``fisher``: of their Fisher-weighted variance) the K components hold."""

    mean: np.ndarray
    basis: np.ndarray
    nonnegative: bool
    energy: float
    axis: int = 1
    inverse: np.ndarray | None = None
    method: str = "pca"

    def __post_init__(self):
        if self.inverse is None:
            object.__setattr__(self, "inverse", np.ascontiguousarray(self.basis.T))

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
        x = y @ self.inverse + self.mean
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
        return {"method": self.method, "channels": self.channels, "components": self.components,
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


def fit_projection(features, components: float | int, axis: int = 1, fisher: np.ndarray | None = None,
                   ridge: float = FISHER_RIDGE) -> Projection:
    """The PCA of ``features``' channels: ``features`` is one array (N, ...) or a list of them, each
    position (every index but ``axis``) one observation of the C channel values. ``components``: K,
    or a fraction of C (``components_for``). Deterministic: each component's sign makes its largest
    coefficient positive.

    ``fisher`` (C, C), e.g. ``channel_fisher``'s: the PCA of the whitened channels ``(x - mean) @ M``,
    ``M = (fisher + ridge * mean eigenvalue)^(1/2)`` scaled so that the whitened features keep the
    features' total variance (the codec's steps are relative to the value range either way);
    ``basis = M @ V``, ``inverse = V.T @ M^-1`` for the K leading eigenvectors ``V``."""
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
    whiten = unwhiten = None
    if fisher is not None:
        whiten, unwhiten = _fisher_whitening(fisher, channels, ridge, cov)
        cov = whiten @ cov @ whiten
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order]
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(channels)])
    vectors = vectors * np.where(signs == 0, 1, signs)
    energy = float(values[:k].sum() / values.sum()) if values.sum() > 0 else 1.0
    kept = vectors[:, :k]
    if whiten is None:
        return Projection(mean.astype(np.float32), np.ascontiguousarray(kept, np.float32), nonnegative,
                          energy, axis)
    return Projection(mean.astype(np.float32), np.ascontiguousarray(whiten @ kept, np.float32), nonnegative,
                      energy, axis, np.ascontiguousarray(kept.T @ unwhiten, np.float32), "fisher")


def _fisher_whitening(fisher, channels: int, ridge: float, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, M^-1), symmetric: M = (fisher + ridge * its mean eigenvalue * I)^(1/2), scaled so that
    trace(M cov M) = trace(cov)."""
    f = np.asarray(fisher, np.float64)
    if f.shape != (channels, channels) or not np.all(np.isfinite(f)):
        raise ValueError(f"fisher: expected a finite ({channels}, {channels}) matrix, got shape {f.shape}")
    if not ridge > 0:
        raise ValueError(f"ridge must be > 0 (it keeps the whitening invertible), got {ridge}")
    values, vectors = np.linalg.eigh((f + f.T) / 2)
    values = np.clip(values, 0, None)
    values = values + ridge * max(float(values.mean()), np.finfo(np.float64).tiny)
    root = np.sqrt(values)
    whiten = (vectors * root) @ vectors.T
    spread = float(np.trace(whiten @ cov @ whiten))
    scale = math.sqrt(float(np.trace(cov)) / spread) if spread > 0 and np.trace(cov) > 0 else 1.0
    return whiten * scale, (vectors / (root * scale)) @ vectors.T


def channel_fisher(tail, features, axis: int = 1, batch: int = 256) -> np.ndarray:
    """The tail's Fisher information of the channels (C, C), float64: the mean over samples and
    positions of ``g g^T``, ``g`` the C-vector of the gradient of the cross-entropy of ``tail``'s
    output at its own top-1 class with respect to ``features`` (N, ..., C at ``axis``, ...). Needs no
    labels: any unlabelled calibration images do. ``tail``: a torch module from features to logits."""
    import torch

    feats = np.asarray(features, np.float32)
    channels = feats.shape[axis]
    total, count = np.zeros((channels, channels)), 0
    for lo in range(0, len(feats), batch):
        x = torch.from_numpy(np.ascontiguousarray(feats[lo:lo + batch])).requires_grad_(True)
        with torch.enable_grad():
            logits = tail(x)
            loss = torch.nn.functional.cross_entropy(logits, logits.detach().argmax(1), reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
        g = np.moveaxis(grad.numpy(), axis, -1).reshape(-1, channels).astype(np.float64)
        total += g.T @ g
        count += g.shape[0]
    if not count:
        raise ValueError("channel_fisher needs at least one sample")
    return total / count


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
            self.register_buffer("inverse", torch.from_numpy(np.ascontiguousarray(p.inverse)))

        def forward(self, y):
            to_last, back = _permutations(y.dim(), self.axis)
            y = y.permute(_first_to_last(y.dim()) if self.first else to_last)   # components last
            x = y @ self.inverse + self.mean
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
