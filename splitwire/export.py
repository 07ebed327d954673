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
                *, opset: int = 17, rtol: float = 1e-3, atol: float = 1e-4, seed: int = 0
                ) -> tuple[Path, Path, SplitPoint, float, tuple[int, ...]]:
    """Write head.onnx / tail.onnx into ``workdir`` and check them against ``model``.

    Returns (head, tail, split point, max |error|, output shape without batch).
    """
    model = model.eval()
    gen = torch.Generator().manual_seed(seed)
    one = torch.randn((1, *input_shape), generator=gen)
    head, tail, point = split(model, layer, one)
    with torch.no_grad():
        feats = head(one)
    head_path, tail_path = workdir / "head.onnx", workdir / "tail.onnx"
    _onnx_export(head, one, head_path, "input", "features", opset)
    _onnx_export(tail, feats, tail_path, "features", "logits", opset)

    x = torch.randn((2, *input_shape), generator=gen)
    with torch.no_grad():
        want = model(x).numpy()
    f = _ort(head_path).run(None, {"input": x.numpy()})[0]
    got = _ort(tail_path).run(None, {"features": f})[0]
    if got.shape != want.shape:
        raise VerificationError(f"tail(head(x)) has shape {got.shape}, the model gives {want.shape}")
    err = float(np.max(np.abs(got - want)))
    bound = atol + rtol * float(np.max(np.abs(want)))
    if not err <= bound:
        raise VerificationError(
            f"tail(head(x)) differs from model(x) by {err:.3g} (allowed {bound:.3g}) when cut at "
            f"{layer!r}; the ONNX export of this model is not faithful, try another split point")
    if want.ndim >= 2 and not np.array_equal(got.argmax(1), want.argmax(1)):
        raise VerificationError(f"tail(head(x)) changes the top-1 class when cut at {layer!r}")
    return head_path, tail_path, point, err, tuple(want.shape[1:])


def _calibrated_fields(cc, head_path: Path, inputs, input_shape, cfg) -> dict:
    """``pack``, ``tables``, ``prob_bits`` from ``cc.calibrate`` on the head's features of ``inputs``
    (one tensor per input, as a client sends them)."""
    session = _ort(head_path)
    feats = [session.run(None, {"input": np.asarray(x, np.float32).reshape(1, *input_shape)})[0] for x in inputs]
    fixed = cc.calibrate(feats, cfg)
    return {"pack": fixed.pack, "tables": fixed.tables, "prob_bits": fixed.prob_bits}


def export_split(model: torch.nn.Module, layer: str, out: str | Path, *, name: str,
                 input_shape: tuple[int, int, int], bits: int = 8, granularity: str = "tensor",
                 clip: str = "none", quantizer: str = "uniform", transform: str = "none", block: int = 8,
                 step: float = 0.02, frequency_weight: float = 0.0, search: str = "greedy",
                 preprocess: dict | None = None, labels: list[str] | None = None,
                 tail_backend: str = "python", device: str = "cpu", max_batch: int = 16,
                 instances: int = 1, opset: int = 17, channel_axis: int = 1,
                 calibration: list[np.ndarray] | None = None) -> ExportResult:
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
    """
    repository.check_name(name)
    import codec_cupy as cc
    codec_cfg = cc.CodecConfig(bits=bits, granularity=granularity, clip=clip, quantizer=quantizer,
                               transform=transform, block=block, step=step,
                               frequency_weight=frequency_weight, search=search)   # ConfigError now, not on a client
    if calibration is not None and not len(calibration):
        raise cc.ConfigError("calibration needs at least one input")
    with tempfile.TemporaryDirectory(prefix="splitwire-export-") as tmp:
        head_path, tail_path, point, err, out_shape = export_onnx(
            model, layer, Path(tmp), tuple(input_shape), opset=opset)
        head_bytes = head_path.read_bytes()
        axis = channel_axis
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
            "feature_shape": list(point.shape[1:]),
            "output_shape": list(out_shape),
            "codec": {"bits": bits, "granularity": granularity, "axis": axis, "clip": clip,
                      "quantizer": quantizer, **({"transform": transform, "block": block, "step": step,
                                                  "frequency_weight": frequency_weight}
                                                 if transform != "none" else {}),
                      **({"search": search} if search != "greedy" else {})},
            "max_batch": max_batch,
            **({"calibration": {"inputs": len(calibration)}} if calibration is not None else {}),
            "head": {"model": f"{name}_head", "sha256": hashlib.sha256(head_bytes).hexdigest(),
                     "bytes": len(head_bytes)},
            "labels": labels,
        }
        if calibration is not None:
            meta["codec"].update(_calibrated_fields(cc, head_path, calibration, tuple(input_shape),
                                                    codec_cfg.replace(axis=axis)))
        models = repository.write(
            Path(out), name=name, meta=meta, head_onnx=head_path, tail_onnx=tail_path,
            tail_backend=tail_backend, device=device, max_batch=max_batch, instances=instances)
    return ExportResult(name=name, point=point, repository=Path(out),
                        head_onnx=Path(out) / f"{name}_head" / "1" / "head.onnx",
                        max_abs_error=err, models=models, codec=meta["codec"])
