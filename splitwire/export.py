"""Split a model, export head/tail ONNX, verify them, then write a Triton repository.

Python API::

    from splitwire.export import export_split
    result = export_split(model, "_blocks.8", "model_repository/", name="effnet",
                          input_shape=(3, 224, 224), bits=8)

Nothing is written to ``out`` until onnxruntime's ``tail(head(x))`` matches the torch
model's ``model(x)`` on a random batch (batch 2, so the dynamic batch dimension is
exercised too).
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import repository
from .projection import WEIGHTINGS, channel_fisher, fit_projection
from .split import SplitPoint, split


class VerificationError(RuntimeError):
    pass


@dataclass
class ExportResult:
    name: str
    point: SplitPoint
    repository: Path
    head_onnx: Path
    max_abs_error: float
    models: list[str] = field(default_factory=list)
    codec: dict = field(default_factory=dict)          # the codec settings published to clients
    prior: dict | None = None                          # the shared prior published, if one was fitted
    projection: dict | None = None                     # the channel projection folded into head and tail


def _onnx_export(module: torch.nn.Module, example: torch.Tensor, path: Path,
                 in_name: str, out_name: str, opset: int) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation chatter
        torch.onnx.export(
            module, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=[in_name], output_names=[out_name],
            dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}})


def _ort(path: Path):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def export_onnx(model: torch.nn.Module, layer: str, workdir: Path, input_shape: tuple[int, ...],
                *, opset: int = 17, rtol: float = 1e-3, atol: float = 1e-4, seed: int = 0, projection=None
                ) -> tuple[Path, Path, SplitPoint, float, tuple[int, ...]]:
    """Write head.onnx / tail.onnx into ``workdir`` and check them against ``model``.

    ``projection`` (``splitwire.projection.Projection``): the head ends with it, emitting the K
    components channels first (N, K, ...) also for channels-last models, and the tail starts with its
    reconstruction; the ONNX pair is then checked against the same torch modules (the projection is
    lossy: ``model(x)`` is no longer the reference).
    Returns (head, tail, split point, max |error|, output shape without batch).
    """
    model = model.eval()
    gen = torch.Generator().manual_seed(seed)
    one = torch.randn((1, *input_shape), generator=gen)
    head, tail, point = split(model, layer, one)
    reference = model
    if projection is not None:                       # channels first: (N, K, ...) whatever the model's layout
        head = projection.head_module(head, channels_first=True).eval()
        tail = projection.tail_module(tail, channels_first=True).eval()
        reference = torch.nn.Sequential(head, tail).eval()
    with torch.no_grad():
        feats = head(one)
    head_path, tail_path = workdir / "head.onnx", workdir / "tail.onnx"
    _onnx_export(head, one, head_path, "input", "features", opset)
    _onnx_export(tail, feats, tail_path, "features", "logits", opset)

    x = torch.randn((2, *input_shape), generator=gen)
    with torch.no_grad():
        want = reference(x).numpy()
    f = _ort(head_path).run(None, {"input": x.numpy()})[0]
    got = _ort(tail_path).run(None, {"features": f})[0]
    what = "tail(head(x))" if projection is None else "the projected tail(head(x))"
    if got.shape != want.shape:
        raise VerificationError(f"{what} has shape {got.shape}, the model gives {want.shape}")
    err = float(np.max(np.abs(got - want)))
    bound = atol + rtol * float(np.max(np.abs(want)))
    if not err <= bound:
        raise VerificationError(
            f"{what} differs from torch by {err:.3g} (allowed {bound:.3g}) when cut at "
            f"{layer!r}; the ONNX export of this model is not faithful, try another split point")
    if want.ndim >= 2 and not np.array_equal(got.argmax(1), want.argmax(1)):
        raise VerificationError(f"{what} changes the top-1 class when cut at {layer!r}")
    return head_path, tail_path, point, err, tuple(want.shape[1:])


def fit_split_projection(model: torch.nn.Module, layer: str, inputs, components: int, channel_axis: int = 1,
                         weighting: str = "pca"):
    """``splitwire.projection.fit_projection`` on the features (at ``layer``) of ``inputs`` (each
    (1, *input_shape)), and its two-fold held-out top-1 agreement with the unsplit model: fitted on
    every other input, the projected model's top-1 on the others (None for fewer than two inputs).
    ``weighting="fisher"``: the PCA of the channels whitened by the tail's Fisher information on the
    same inputs (``projection.channel_fisher``; no labels needed). Returns (projection, summary dict)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"projection weighting {weighting!r} is not one of {', '.join(WEIGHTINGS)}")

    model = model.eval()
    x = torch.from_numpy(np.concatenate([np.asarray(i, np.float32) for i in inputs]))
    head, tail, _ = split(model, layer, x[:1])
    with torch.no_grad():
        feats = head(x).numpy()
        top1 = model(x).argmax(1).numpy()
    def fit(f):
        fisher = channel_fisher(tail, f, channel_axis % f.ndim) if weighting == "fisher" else None
        return fit_projection(f, components, axis=channel_axis, fisher=fisher)

    fitted = fit(feats)
    agree = None
    if len(x) >= 2:
        same = 0
        for fold in (0, 1):
            p = fit(feats[1 - fold::2])
            y = torch.from_numpy(p.reconstruct(p.project(feats[fold::2])))
            with torch.no_grad():
                same += int((tail(y).argmax(1).numpy() == top1[fold::2]).sum())
        agree = round(100.0 * same / len(x), 2)
    return fitted, {**fitted.describe(), "inputs": len(x), "held_out_agreement": agree}


def _calibrated_fields(cc, head_path: Path, inputs, input_shape, cfg) -> dict:
    """``pack``, ``tables``, ``prob_bits`` from ``cc.calibrate`` on the head's features of ``inputs``
    (one tensor per input, as a client sends them)."""
    fixed = cc.calibrate(_head_features(head_path, inputs, input_shape), cfg)
    return {"pack": fixed.pack, "tables": fixed.tables, "prob_bits": fixed.prob_bits}


def _head_features(head_path: Path, inputs, input_shape) -> list[np.ndarray]:
    """The exported head's output for each input (one tensor per input, as a client sends them)."""
    session = _ort(head_path)
    return [session.run(None, {"input": np.asarray(x, np.float32).reshape(1, *input_shape)})[0] for x in inputs]


def _fitted_prior(cc, head_path: Path, inputs, input_shape, cfg, tables: int):
    """``cc.fit_prior`` on the head's features of ``inputs``, and what it saves on inputs it was not
    fitted on (``held_out``)."""
    feats = _head_features(head_path, inputs, input_shape)
    return cc.fit_prior(feats, cfg, tables=tables), held_out(cc, feats, cfg, tables)


def held_out(cc, feats, cfg, tables: int) -> dict | None:
    """Two-fold estimate of a prior's gain: fitted on every other tensor, the bytes of the others'
    blobs with it and without; None for fewer than two tensors. A prior pays where its counts carry
    over between tensors (post-ReLU maps with enough samples); with few samples for many positions
    it can cost more than the blobs' own tables."""
    if len(feats) < 2:
        return None
    folds = (feats[0::2], feats[1::2])
    with_prior = without = 0
    for fit, test in ((folds[0], folds[1]), (folds[1], folds[0])):
        p = cc.fit_prior(fit, cfg, tables=tables)
        with_prior += sum(len(cc.encode(f, cfg, prior=p)) for f in test)
        without += sum(len(cc.encode(f, cfg)) for f in test)
    return {"bytes_with_prior": with_prior, "bytes_without": without, "ratio": round(with_prior / without, 4)}


def export_split(model: torch.nn.Module, layer: str, out: str | Path, *, name: str,
                 input_shape: tuple[int, int, int], bits: int = 8, granularity: str = "tensor",
                 clip: str = "none", quantizer: str = "uniform", transform: str = "none", block: int = 8,
                 step: float = 0.02, frequency_weight: float = 0.0, search: str = "greedy",
                 preprocess: dict | None = None, labels: list[str] | None = None,
                 tail_backend: str = "python", device: str = "cpu", max_batch: int = 16,
                 instances: int = 1, opset: int = 17, channel_axis: int = 1,
                 calibration: list[np.ndarray] | None = None, prior: list[np.ndarray] | None = None,
                 prior_tables: int = 32, projection: list[np.ndarray] | None = None,
                 components: int | None = None, projection_weighting: str = "pca") -> ExportResult:
    """Cut ``model`` after module ``layer`` and write a Triton repository into ``out``.

    ``tail_backend``: ``"onnxruntime"`` (Triton's backend, as in NGC images) or
    ``"python"`` (onnxruntime inside a Python-backend model; works with the bundled server).
    ``device``: ``"cpu"`` or ``"gpu"`` (``KIND_GPU`` instances, CuPy decode, CUDA tail).
    ``channel_axis``: where the features keep their channels (``ModelSpec.channel_axis``; 1 for
    NCHW); channels-last features (Swin's NHWC) get the codec's ``axis=-1``.
    ``calibration``: model inputs (each (1, *input_shape), preprocessed like the client's): their
    features, from the exported head, fix the codec's entropy model once (``codec_cupy.calibrate``);
    the published settings then carry ``pack``, ``tables`` and ``prob_bits`` and clients skip the
    planner's search on every tensor.
    ``prior``: model inputs likewise; a shared prior (``codec_cupy.fit_prior``, at most
    ``prior_tables`` tables) is fitted on their features and written next to the decoder and the
    head bundle: clients fetch it and send blobs that carry no entropy model (format version 3),
    the decoder reads them with it (and still reads self-contained blobs). Its two-fold held-out
    gain is published with it (``held_out``); clients use it by default only where that says it pays.
    ``projection`` with ``components`` (K): model inputs whose features fit a channel projection
    (``splitwire.projection``: the first K principal components of the C channels); the head ONNX
    ends with it and the tail ONNX starts with the reconstruction, so the features that travel
    (and that ``calibration`` and ``prior`` see) have K channels, first ((N, K, H, W) also after a
    channels-last split such as Swin's: ``transform='dct'`` then applies). Its held-out top-1 agreement with
    the unsplit model is published with it (``fit_split_projection``). ``projection_weighting="fisher"``
    weights the channels by the tail's Fisher information first, so the K components and the codec's
    error follow what the tail's output depends on rather than the features' variance.
    """
    repository.check_name(name)
    import codec_cupy as cc
    codec_cfg = cc.CodecConfig(bits=bits, granularity=granularity, clip=clip, quantizer=quantizer,
                               transform=transform, block=block, step=step,
                               frequency_weight=frequency_weight, search=search)   # ConfigError now, not on a client
    if calibration is not None and not len(calibration):
        raise cc.ConfigError("calibration needs at least one input")
    if prior is not None and not len(prior):
        raise cc.ConfigError("a prior needs at least one input to fit on")
    if prior is not None and transform != "none" and bits < 2:
        raise cc.ConfigError("a prior with transform='dct' needs bits >= 2 (its zero point is the middle symbol)")
    if (projection is None) != (components is None):
        raise cc.ConfigError("a channel projection needs both components (K) and inputs to fit it on")
    if projection is not None and not len(projection):
        raise cc.ConfigError("a channel projection needs at least one input to fit on")
    if components is not None and (isinstance(components, bool) or not isinstance(components, int) or components < 1):
        raise cc.ConfigError(f"components must be an integer >= 1 (the principal components kept), got {components!r}")
    if projection_weighting not in WEIGHTINGS:
        raise cc.ConfigError(f"projection_weighting {projection_weighting!r} is not one of {', '.join(WEIGHTINGS)}")
    fitted_projection = projected = None
    if projection is not None:
        fitted_projection, projected = fit_split_projection(model, layer, projection, components, channel_axis,
                                                            projection_weighting)
    with tempfile.TemporaryDirectory(prefix="splitwire-export-") as tmp:
        head_path, tail_path, point, err, out_shape = export_onnx(
            model, layer, Path(tmp), tuple(input_shape), opset=opset, projection=fitted_projection)
        feature_shape = list(point.shape[1:])
        axis = channel_axis
        if fitted_projection is not None:              # the projected head emits channels first
            feature_shape.pop(channel_axis % len(point.shape) - 1)
            feature_shape.insert(0, fitted_projection.components)
            axis = 1
        head_bytes = head_path.read_bytes()
        if axis != 1 and axis == len(point.shape) - 1:
            axis = -1  # channels last: the codec's axis counted from the end
            if transform != "none":
                # The DCT codes the last two dimensions as the maps; here they are (W, C).
                raise cc.ConfigError(
                    f"transform={transform!r} needs channels-first features (N, C, H, W); the split "
                    f"{layer!r} gives channels-last {tuple(point.shape)}: export it with transform='none'")
        meta = {
            "format": 1,
            "model": name,
            "split": layer,
            "input": {"name": "input", "shape": list(input_shape), "dtype": "float32"},
            "preprocess": preprocess or {},
            "feature_shape": feature_shape,
            "output_shape": list(out_shape),
            "codec": {"bits": bits, "granularity": granularity, "axis": axis, "clip": clip,
                      "quantizer": quantizer, **({"transform": transform, "block": block, "step": step,
                                                  "frequency_weight": frequency_weight}
                                                 if transform != "none" else {}),
                      **({"search": search} if search != "greedy" else {})},
            "max_batch": max_batch,
            **({"calibration": {"inputs": len(calibration)}} if calibration is not None else {}),
            **({"projection": projected} if projected is not None else {}),
            "head": {"model": f"{name}_head", "sha256": hashlib.sha256(head_bytes).hexdigest(),
                     "bytes": len(head_bytes)},
            "labels": labels,
        }
        if calibration is not None:
            meta["codec"].update(_calibrated_fields(cc, head_path, calibration, tuple(input_shape),
                                                    codec_cfg.replace(axis=axis)))
        fitted = None
        if prior is not None:
            fitted, gain = _fitted_prior(cc, head_path, prior, tuple(input_shape), codec_cfg.replace(axis=axis),
                                         prior_tables)
            data = fitted.to_bytes()
            meta["prior"] = {"id": f"{fitted.id:#010x}", "sha256": hashlib.sha256(data).hexdigest(),
                             "bytes": len(data), "bits": fitted.bits, "tables": fitted.ntables,
                             **({"transform": transform, "block": block} if transform != "none" else {}),
                             "inputs": len(prior), "held_out": gain}
        models = repository.write(
            Path(out), name=name, meta=meta, head_onnx=head_path, tail_onnx=tail_path,
            tail_backend=tail_backend, device=device, max_batch=max_batch, instances=instances,
            prior=None if fitted is None else fitted.to_bytes())
    return ExportResult(name=name, point=point, repository=Path(out),
                        head_onnx=Path(out) / f"{name}_head" / "1" / "head.onnx",
                        max_abs_error=err, models=models, codec=meta["codec"], prior=meta.get("prior"),
                        projection=projected)
