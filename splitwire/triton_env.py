"""Locate the tritonserver bundled in the ``nvidia-pytriton`` wheel and wire it up.

The wheel ships ``tritonserver`` 2.51, the Python backend and one backend stub per
Python minor version, plus its shared libraries in ``nvidia_pytriton.libs/``. Like
pytriton itself, we assemble a private backend directory whose
``python/triton_python_backend_stub`` is the stub built for *this* interpreter, and we
put this interpreter's ``bin/`` first on ``PATH``: the stub takes its Python
environment (numpy, onnxruntime, codec_cupy) from the first ``python3`` on ``PATH``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The server release in nvidia-pytriton 0.7.0 and the NGC image that carries the same one.
TRITON_VERSION = "2.51.0"
NGC_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"


class TritonNotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class BundledTriton:
    binary: Path          # .../pytriton/tritonserver/bin/tritonserver
    dist: Path            # .../pytriton/tritonserver
    libs: Path            # .../nvidia_pytriton.libs

    @property
    def python_backend(self) -> Path:
        return self.dist / "backends" / "python"

    def stub(self, version: str | None = None) -> Path:
        version = version or f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.dist / "python_backend_stubs" / version / "triton_python_backend_stub"

    def has_backend(self, name: str) -> bool:
        return (self.dist / "backends" / name).is_dir()


def find_bundled() -> BundledTriton:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotFound(
            "no bundled tritonserver: install it with "
            "`pip install nvidia-pytriton==0.7.0 --no-deps` (or pass --tritonserver PATH)")
    root = Path(list(spec.submodule_search_locations)[0])
    dist = root / "tritonserver"
    binary = dist / "bin" / "tritonserver"
    libs = root.parent / "nvidia_pytriton.libs"
    if not binary.is_file():
        raise TritonNotFound(f"{binary} is missing: reinstall nvidia-pytriton==0.7.0 --no-deps")
    return BundledTriton(binary=binary, dist=dist, libs=libs)


def backend_dir(triton: BundledTriton, extra_backends: Path | None = None,
                cache: Path | None = None) -> Path:
    """A backend directory whose Python backend uses the stub for this interpreter.

    Symlinks keep it cheap; the stub itself is copied because the Python backend
    resolves sibling files relative to it. ``extra_backends`` (e.g. a directory holding
    an ``onnxruntime/`` backend taken from an NGC image) is linked in beside it.
    """
    stub = triton.stub()
    if not stub.is_file():
        raise TritonNotFound(
            f"the bundled Python backend has no stub for Python "
            f"{sys.version_info.major}.{sys.version_info.minor} ({stub})")
    cache = cache or Path(os.environ.get("SPLITWIRE_CACHE", Path(tempfile.gettempdir()) / f"splitwire-{os.getuid()}"))
    out = cache / f"triton-{TRITON_VERSION}-py{sys.version_info.major}{sys.version_info.minor}" / "backends"
    py = out / "python"
    py.mkdir(parents=True, exist_ok=True)
    for f in triton.python_backend.iterdir():
        if f.name.startswith("__"):
            continue
        _link(f, py / f.name)
    dst_stub = py / "triton_python_backend_stub"
    if not dst_stub.exists() or dst_stub.stat().st_size != stub.stat().st_size:
        tmp = dst_stub.with_suffix(".tmp")
        shutil.copy2(stub, tmp)
        os.replace(tmp, dst_stub)
    if extra_backends is not None:
        for b in Path(extra_backends).iterdir():
            if b.is_dir() and b.name != "python":
                _link(b, out / b.name)
    return out


def _link(src: Path, dst: Path) -> None:
    if dst.is_symlink() and os.readlink(dst) == str(src):
        return
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    dst.symlink_to(src)


def server_env(triton: BundledTriton, base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(triton.libs), env.get("LD_LIBRARY_PATH", "")) if p)
    # The stub runs the first python3 on PATH: make it this interpreter's environment.
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    # The stub imports codec_cupy/backends; a source checkout may not be installed.
    repo_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, env.get("PYTHONPATH", "")) if p)
    return env
