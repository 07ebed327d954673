"""Deployment files: manifests parse and agree with each other; the docker command is complete."""

import subprocess
from pathlib import Path

import pytest

from splitwire.serve import docker_command

yaml = pytest.importorskip("yaml")
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _load(name):
    return yaml.safe_load((DEPLOY / "k8s" / name).read_text())


def test_k8s_manifests_are_consistent():
    dep, svc, hpa = _load("deployment.yaml"), _load("service.yaml"), _load("hpa.yaml")
    kust = _load("kustomization.yaml")
    for f in kust["resources"]:
        assert (DEPLOY / "k8s" / f).is_file()
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert {p["containerPort"] for p in c["ports"]} == {8000, 8001, 8002}
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    claim = dep["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == _load("pvc.yaml")["metadata"]["name"]


def test_docker_command_uses_the_matching_ngc_release(tmp_path):
    cmd = docker_command(tmp_path, http_port=9000, grpc_port=9001, metrics_port=9002)
    assert "nvcr.io/nvidia/tritonserver:24.10-py3" in cmd and "--gpus=all" in cmd
    assert "-p 9000:8000" in cmd and "-p 9001:8001" in cmd and "-p 9002:8002" in cmd
    assert f"{tmp_path.resolve()}:/models" in cmd and "--model-repository=/models" in cmd
    assert "--gpus" not in docker_command(tmp_path, gpus=False)


def test_start_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(DEPLOY / "start_local.sh")], check=True)


def test_ngc_setup_swaps_in_a_stub_the_wheel_really_ships():
    """The NGC image's Python is 3.10; ngc_setup.sh brings a 3.11 venv and the wheel's 3.11 stub."""
    script = DEPLOY / "ngc_setup.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "python_backend_stubs/3.11/triton_python_backend_stub" in text
    assert "ngc_setup.sh gpu" in (DEPLOY / "Dockerfile").read_text()
    assert "ngc_setup.sh gpu" in docker_command(DEPLOY)
    from splitwire import triton_env
    try:
        bundled = triton_env.find_bundled()
    except triton_env.TritonNotFound:
        pytest.skip("nvidia-pytriton not installed")
    assert bundled.stub("3.11").is_file()
