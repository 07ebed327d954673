"""Start and stop a real tritonserver on a model repository.

``TritonServer`` is used by ``splitwire serve``, ``splitwire demo``, the tests and the
benchmark: it starts the server bundled in nvidia-pytriton (or any ``tritonserver``
binary), waits until every model is ready, and always stops it (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import triton_env


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class TritonServer:
    """A tritonserver child process. Use as a context manager, or start()/stop()."""

    def __init__(self, repository: str | Path, *, http_port: int = 8000, grpc_port: int = 8001,
                 metrics_port: int = 8002, address: str = "127.0.0.1", tritonserver: str | None = None,
                 backend_dir: str | None = None, extra_backends: str | None = None,
                 log: str | Path | None = None, verbose: int = 0, exit_timeout: int = 5,
                 extra_args: list[str] | None = None):
        self.repository = Path(repository).resolve()
        if not self.repository.is_dir():
            raise ServerError(f"{repository} is not a directory; run `splitwire export` first")
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.address = address
        self.exit_timeout = exit_timeout
        self.verbose = verbose
        self.extra_args = list(extra_args or [])
        if tritonserver:
            self.binary = Path(tritonserver)
            self.env = dict(os.environ)
            self.backend_dir = Path(backend_dir) if backend_dir else None
        else:
            bundled = triton_env.find_bundled()
            self.binary = bundled.binary
            self.env = triton_env.server_env(bundled)
            self.backend_dir = Path(backend_dir) if backend_dir else triton_env.backend_dir(
                bundled, Path(extra_backends) if extra_backends else None)
        self._own_log = log is None  # a temp log we remove after a clean stop
        if log:
            self.log_path = Path(log)
        else:
            fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{self.address}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.address}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        cmd = [str(self.binary), f"--model-repository={self.repository}",
               f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
               f"--metrics-port={self.metrics_port}", f"--http-address={self.address}",
               f"--grpc-address={self.address}", f"--exit-timeout-secs={self.exit_timeout}",
               "--strict-readiness=true", f"--log-verbose={self.verbose}"]
        if self.backend_dir:
            cmd.append(f"--backend-directory={self.backend_dir}")
        return cmd + self.extra_args

    def preflight(self) -> None:
        """Fail early, naming the fix, for what would otherwise be a model load error in the log."""
        configs = list(self.repository.glob("*/config.pbtxt"))
        if not configs:
            raise ServerError(f"{self.repository} holds no model (no */config.pbtxt); run `splitwire export` first")
        if self.backend_dir is None:
            return
        for cfg in configs:
            text = cfg.read_text(errors="replace")
            if 'backend: "onnxruntime"' in text and not (self.backend_dir / "onnxruntime").is_dir():
                raise ServerError(
                    f"{cfg.parent.name} uses Triton's onnxruntime backend, which this tritonserver "
                    f"({self.backend_dir}) does not have. Re-export with --tail-backend python, pass "
                    "--extra-backends DIR holding an onnxruntime/ backend, or run the NGC image "
                    "(`splitwire serve --print-command`)")

    def start(self, timeout: float = 180.0) -> "TritonServer":
        self.preflight()
        for port in (self.http_port, self.grpc_port, self.metrics_port):
            if _port_in_use(port):
                raise ServerError(f"port {port} is already in use on {self.address}; pass other "
                                  "--http-port/--grpc-port/--metrics-port (0 picks free ones)")
        self._log = open(self.log_path, "wb")
        # Own process group: Ctrl-C in a terminal reaches us, and we stop the server ourselves.
        self.proc = subprocess.Popen(self.command(), env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.proc.returncode} before it was "
                                  f"ready; its log:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.25)
        raise ServerError(f"tritonserver was not ready after {timeout:.0f} s; its log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, timeout: float | None = None) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            timeout = timeout if timeout is not None else self.exit_timeout + 10
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the server and its backend stubs
                self.proc.wait(10)
        self._log.close()
        if self._own_log and self.proc.returncode == 0:
            self.log_path.unlink(missing_ok=True)
        return self.proc.returncode

    def __enter__(self) -> "TritonServer":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def resolve_ports(http: int, grpc: int, metrics: int) -> tuple[int, int, int]:
    """0 means "any free port"."""
    return tuple(p or free_port() for p in (http, grpc, metrics))


def docker_command(repository: str | Path, *, http_port: int = 8000, grpc_port: int = 8001,
                   metrics_port: int = 8002, gpus: bool = True, image: str = triton_env.NGC_IMAGE) -> str:
    """The equivalent ``docker run`` on NVIDIA's NGC image (same server release, 2.51).

    The NGC image has Triton's onnxruntime backend; its Python backend needs codec_cupy
    (and cupy for KIND_GPU) in a Python 3.11 environment, set up at start-up from the mounted
    source tree by ``deploy/ngc_setup.sh`` (the image's own Python is 3.10).
    """
    repo = Path(repository).resolve()
    src = Path(__file__).resolve().parent.parent
    parts = ["docker", "run", "--rm", "--shm-size=1g"]
    if gpus:
        parts += ["--gpus=all"]
    parts += ["-p", f"{http_port}:8000", "-p", f"{grpc_port}:8001", "-p", f"{metrics_port}:8002",
              "-v", f"{repo}:/models", "-v", f"{src}:/opt/splitwire", image, "bash", "-c",
              "bash /opt/splitwire/deploy/ngc_setup.sh" + (" gpu" if gpus else "") +
              " && PATH=/opt/splitwire-venv/bin:$PATH tritonserver --model-repository=/models"]
    return shlex.join(parts)


def serve_forever(server: TritonServer, out=sys.stdout) -> int:
    """Run until Ctrl-C/SIGTERM or until the server dies; return an exit code."""
    stop = {"sig": None}

    def handler(signum, _frame):
        stop["sig"] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        print(f"tritonserver ready: HTTP {server.url}  gRPC {server.grpc_url}  "
              f"metrics {server.metrics_url}", file=out, flush=True)
        print(f"log: {server.log_path}   (Ctrl-C stops it)", file=out, flush=True)
        while stop["sig"] is None and server.proc.poll() is None:
            time.sleep(0.2)
        if server.proc.poll() is not None and stop["sig"] is None:
            print(f"tritonserver exited with code {server.proc.returncode}:\n{server.log_tail()}",
                  file=sys.stderr)
            return 1
        print("stopping tritonserver ...", file=out, flush=True)
        return 0
    finally:
        server.stop()
        for s, h in old.items():
            signal.signal(s, h)
