"""Triton Python backend: run ``model.onnx`` (the tail) with onnxruntime.

Used where the server has no ``onnxruntime`` backend (the tritonserver bundled in
nvidia-pytriton ships only the Python backend). ``splitwire export --tail-backend
onnxruntime`` uses Triton's own backend instead, as in NVIDIA's NGC images.

Dynamic batching hands ``execute`` several requests: they run as one onnxruntime call
and the output is split back per request.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:
    pb_utils = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    from triton_tensors import host_array, quiet_capsule_noise  # the copy next to model.py
except ImportError:
    from backends.triton_tensors import host_array, quiet_capsule_noise


def make_session(path: str, device: str = "cpu", device_id: int = 0, threads: int = 0):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    providers = ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    return ort.InferenceSession(path, opts, providers=providers)


def run_batched(session, inputs: list[np.ndarray], in_name: str = "features") -> list[np.ndarray]:
    """One onnxruntime call for all requests; outputs split back by each input's batch."""
    sizes = [int(x.shape[0]) for x in inputs]
    x = inputs[0] if len(inputs) == 1 else np.concatenate(inputs, axis=0)
    y = session.run(None, {in_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    return np.split(y, np.cumsum(sizes)[:-1], axis=0)






class TritonPythonModel:
    def initialize(self, args):
        quiet_capsule_noise()
        config = json.loads(args["model_config"])
        self.in_name = config["input"][0]["name"]
        self.out_name = config["output"][0]["name"]
        here = os.path.dirname(os.path.abspath(__file__))
        gpu = args.get("model_instance_kind") == "GPU"
        self.session = make_session(os.path.join(here, "model.onnx"), "cuda" if gpu else "cpu",
                                    int(args.get("model_instance_device_id", 0)))

    def execute(self, requests):
        try:
            xs = [host_array(pb_utils.get_input_tensor_by_name(r, self.in_name)) for r in requests]
            ys = run_batched(self.session, xs, self.in_name)
            return [pb_utils.InferenceResponse([pb_utils.Tensor.from_dlpack(self.out_name, np.ascontiguousarray(y))])
                    for y in ys]
        except Exception as e:  # fail these requests, keep the instance
            err = pb_utils.TritonError(f"tail failed: {type(e).__name__}: {e}", pb_utils.TritonError.INTERNAL)
            return [pb_utils.InferenceResponse(error=err) for _ in requests]
