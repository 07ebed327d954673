"""Write the Triton model repository for one split model.

    <name>          ensemble: BLOB (UINT8 [-1], one codec blob) -> LOGITS (the tail's output)
    <name>_decoder  Python backend: codec blob -> float32 features (CuPy on KIND_GPU, Numba on KIND_CPU)
    <name>_tail     onnxruntime backend (NGC images) or a Python-backend onnxruntime runner
    <name>_head     Python backend: hands out head.onnx (and the shared prior, if the export fitted
                    one) so an edge client needs only URL + name

The ensemble's ``parameters["splitwire"]`` (JSON) tells a client everything it needs:
input shape, preprocessing, codec config, labels, where to get the head and which prior to use.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

_BACKENDS = Path(__file__).resolve().parent.parent / "backends"
_RAWFRAME = Path(__file__).resolve().parent.parent / "client" / "rawframe.py"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


PRIOR_FILE = "prior.swprior"          # a shared prior, next to the decoder's and the head bundle's model.py


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"model name {name!r} must match {_NAME.pattern} (it becomes a directory and a URL path)")


def _q(s: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dims(shape) -> str:
    return "[ " + ", ".join(str(int(d)) for d in shape) + " ]"


def _params(d: dict) -> str:
    return "\n".join(f"parameters {{ key: {_q(k)} value: {{ string_value: {_q(v)} }} }}" for k, v in d.items())


def _kind(device: str) -> str:
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    return "KIND_GPU" if device == "gpu" else "KIND_CPU"


def decoder_config(name: str, meta: dict, device: str, instances: int, max_payload: int) -> str:
    feat = [-1, *meta["feature_shape"]]
    elements = meta["max_batch"]
    for d in meta["feature_shape"]:
        elements *= int(d)
    params = {
        "feature_shape": json.dumps(meta["feature_shape"]),
        "max_batch": str(meta["max_batch"]),
        "max_elements": str(elements),                # the tensor's; a DCT blob's padded view may take more
        "max_payload_bytes": str(max_payload),
        "engine": "auto",
        "codec_axis": str(meta["codec"]["axis"]),      # the channel axis a shared prior was fitted with
        "codec_block": str(meta["codec"].get("block", 0) if meta["codec"].get("transform") else 0),  # its DCT block
        # Hand GPU tensors to the tail without a host round trip.
        "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
    }
    return f"""name: {_q(name + "_decoder")}
backend: "python"
max_batch_size: 0
input [ {{ name: "BLOB" data_type: TYPE_UINT8 dims: [ -1 ] }} ]
output [ {{ name: "FEATURES" data_type: TYPE_FP32 dims: {_dims(feat)} }} ]
# No dynamic_batching: with max_batch_size 0 (a blob carries its own batch) Triton runs one
# request per execute(); requests are batched at the tail instead.
instance_group [ {{ kind: {_kind(device)} count: {instances} }} ]
{_params(params)}
"""


def tail_config(name: str, meta: dict, backend: str, device: str, instances: int) -> str:
    feat, out = meta["feature_shape"], meta["output_shape"]
    if backend == "onnxruntime":
        head = 'backend: "onnxruntime"\ndefault_model_filename: "model.onnx"'
        extra = ""
    elif backend == "python":
        head = 'backend: "python"'
        extra = _params({"FORCE_CPU_ONLY_INPUT_TENSORS": "no"})
    else:
        raise ValueError(f"tail backend must be 'onnxruntime' or 'python', got {backend!r}")
    return f"""name: {_q(name + "_tail")}
{head}
max_batch_size: {meta["max_batch"]}
input [ {{ name: "features" data_type: TYPE_FP32 dims: {_dims(feat)} }} ]
output [ {{ name: "logits" data_type: TYPE_FP32 dims: {_dims(out)} }} ]
dynamic_batching {{ max_queue_delay_microseconds: 500 }}
instance_group [ {{ kind: {_kind(device)} count: {instances} }} ]
{extra}
"""


def head_config(name: str, meta: dict) -> str:
    prior = ',\n        { name: "PRIOR" data_type: TYPE_UINT8 dims: [ -1 ] }' if meta.get("prior") else ""
    return f"""name: {_q(name + "_head")}
backend: "python"
max_batch_size: 0
input [ {{ name: "REQUEST" data_type: TYPE_UINT8 dims: [ -1 ] }} ]
output [ {{ name: "HEAD_ONNX" data_type: TYPE_UINT8 dims: [ -1 ] }}{prior} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
{_params({"sha256": meta["head"]["sha256"]})}
"""


def ensemble_config(name: str, meta: dict) -> str:
    out = [-1, *meta["output_shape"]]
    return f"""name: {_q(name)}
platform: "ensemble"
max_batch_size: 0
input [ {{ name: "BLOB" data_type: TYPE_UINT8 dims: [ -1 ] }} ]
output [ {{ name: "LOGITS" data_type: TYPE_FP32 dims: {_dims(out)} }} ]
ensemble_scheduling {{
  step [
    {{ model_name: {_q(name + "_decoder")} model_version: -1
       input_map {{ key: "BLOB" value: "BLOB" }}
       output_map {{ key: "FEATURES" value: "features" }} }},
    {{ model_name: {_q(name + "_tail")} model_version: -1
       input_map {{ key: "features" value: "features" }}
       output_map {{ key: "logits" value: "LOGITS" }} }}
  ]
}}
{_params({"splitwire": json.dumps(meta, separators=(",", ":"))})}
"""


def write(out: Path, *, name: str, meta: dict, head_onnx: Path, tail_onnx: Path,
          tail_backend: str = "python", device: str = "cpu", max_batch: int = 16,
          instances: int = 1, prior: bytes | None = None) -> list[str]:
    """Write (or replace) the four model directories of ``name`` under ``out``; ``prior`` (a
    serialized ``codec_cupy.Prior``) goes next to the decoder, which decodes with it, and the head
    bundle, which hands it to clients with the head."""
    check_name(name)
    elements = max_batch
    for d in meta["feature_shape"]:
        elements *= int(d)
    # Room for an uncompressed float32 frame (the baseline bench/serve.py measures) + header.
    max_payload = 4 * elements + 4096
    dirs = {
        name: ensemble_config(name, meta),
        f"{name}_decoder": decoder_config(name, meta, device, instances, max_payload),
        f"{name}_tail": tail_config(name, meta, tail_backend, device, instances),
        f"{name}_head": head_config(name, meta),
    }
    out.mkdir(parents=True, exist_ok=True)
    for model, config in dirs.items():
        d = out / model
        if d.exists():
            shutil.rmtree(d)
        (d / "1").mkdir(parents=True)
        (d / "config.pbtxt").write_text(config)
    shutil.copy(_BACKENDS / "splitwire_decoder.py", out / f"{name}_decoder" / "1" / "model.py")
    shutil.copy(_RAWFRAME, out / f"{name}_decoder" / "1" / "rawframe.py")
    shutil.copy(_BACKENDS / "triton_tensors.py", out / f"{name}_decoder" / "1" / "triton_tensors.py")
    shutil.copy(tail_onnx, out / f"{name}_tail" / "1" / "model.onnx")
    if tail_backend == "python":
        shutil.copy(_BACKENDS / "onnx_tail.py", out / f"{name}_tail" / "1" / "model.py")
        shutil.copy(_BACKENDS / "triton_tensors.py", out / f"{name}_tail" / "1" / "triton_tensors.py")
    shutil.copy(head_onnx, out / f"{name}_head" / "1" / "head.onnx")
    shutil.copy(_BACKENDS / "head_bundle.py", out / f"{name}_head" / "1" / "model.py")
    if prior is not None:
        for model in (f"{name}_decoder", f"{name}_head"):
            (out / model / "1" / PRIOR_FILE).write_bytes(prior)
    (out / name / "1" / ".keep").write_text("")  # ensembles need an (empty) version directory
    (out / name / "splitwire.json").write_text(json.dumps(meta, indent=1))
    return list(dirs)
