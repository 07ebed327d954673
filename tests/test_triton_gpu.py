"""KIND_GPU instances: CuPy decode handed to the tail through DLPack. Skipped without a GPU."""

import importlib.util
import os

import numpy as np
import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.triton]


def _has_gpu() -> bool:
    if importlib.util.find_spec("cupy") is None or importlib.util.find_spec("pytriton") is None:
        return False
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


if not _has_gpu():
    pytest.skip("needs a CUDA device, cupy and nvidia-pytriton", allow_module_level=True)

torch = pytest.importorskip("torch")


def test_gpu_decoder_matches_cpu_decoder(tmp_path):
    from client import SplitClient
    from splitwire import models
    from splitwire.export import export_split
    from splitwire.serve import TritonServer, resolve_ports

    spec = models.load("tiny_resnet")
    results = {}
    for device in ("cpu", "gpu"):
        repo = tmp_path / device
        export_split(spec.module, "layer2", repo, name="tiny", input_shape=spec.input_shape, device=device)
        http, grpc, metrics = resolve_ports(0, 0, 0)
        os.environ["SPLITWIRE_CACHE"] = str(tmp_path / "cache")
        with TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics) as server:
            c = SplitClient(server.url, "tiny")
            x = np.random.default_rng(0).normal(size=(4, *spec.input_shape)).astype(np.float32)
            results[device] = c.infer(x)
            c.close()
    np.testing.assert_allclose(results["gpu"], results["cpu"], rtol=1e-4, atol=1e-4)
