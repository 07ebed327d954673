"""Triton Python backend: hands out ``head.onnx`` (UINT8 bytes) to edge clients, and the shared
prior (``prior.swprior``, output ``PRIOR``) where the export fitted one.

An edge client then needs only the server URL and the model name: it fetches the head (and the
prior) once, checks them against the SHA-256 the ensemble publishes, and caches them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:
    pb_utils = None


def load_head(path: str, sha256: str | None) -> np.ndarray:
    data = open(path, "rb").read()
    digest = hashlib.sha256(data).hexdigest()
    if sha256 and digest != sha256:
        raise RuntimeError(f"{path} has SHA-256 {digest}, the config says {sha256}: re-run splitwire export")
    return np.frombuffer(data, dtype=np.uint8)


class TritonPythonModel:
    def initialize(self, args):
        def quiet(u, hook=sys.unraisablehook):  # NumPy 2 capsule noise, see splitwire_decoder.py
            if not (isinstance(u.exc_value, ValueError) and "PyCapsule_GetPointer" in str(u.exc_value)):
                hook(u)
        sys.unraisablehook = quiet
        config = json.loads(args["model_config"])
        sha = config.get("parameters", {}).get("sha256", {}).get("string_value")
        here = os.path.dirname(os.path.abspath(__file__))
        self.head = load_head(os.path.join(here, "head.onnx"), sha)
        prior = os.path.join(here, "prior.swprior")
        self.prior = np.fromfile(prior, np.uint8) if os.path.exists(prior) else None

    def execute(self, requests):
        def outputs():
            out = [pb_utils.Tensor.from_dlpack("HEAD_ONNX", self.head.copy())]
            if self.prior is not None:
                out.append(pb_utils.Tensor.from_dlpack("PRIOR", self.prior.copy()))
            return out
        return [pb_utils.InferenceResponse(outputs()) for _ in requests]
