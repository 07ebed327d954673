#!/usr/bin/env bash
# Prepare an NGC tritonserver image (24.10 = Triton 2.51) to run splitwire's Python backends.
#   bash deploy/ngc_setup.sh [gpu]        (run inside the image, from the splitwire source tree)
#
# splitwire needs Python >= 3.11; the image's Python, and its Python backend stub, are 3.10. So:
# a 3.11 venv at $SPLITWIRE_VENV (uv fetches a standalone CPython), splitwire installed into it,
# and the image's stub replaced by the 3.11 stub that the nvidia-pytriton wheel ships for this
# same Triton release. The stub takes its environment from the first python3 on PATH, so start
# the server with PATH="$SPLITWIRE_VENV/bin:$PATH".
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
venv="${SPLITWIRE_VENV:-/opt/splitwire-venv}"
extra=""
[ "${1:-}" = "gpu" ] && extra="[gpu]"
pip install --no-cache-dir -q uv
uv python install 3.11
uv venv --python 3.11 "$venv"
export VIRTUAL_ENV="$venv"
uv pip install --no-cache "$src$extra"
uv pip install --no-cache --no-deps "nvidia-pytriton==0.7.0"
stub="$("$venv/bin/python" -c 'import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).parent / "tritonserver/python_backend_stubs/3.11/triton_python_backend_stub")')"
cp "$stub" /opt/tritonserver/backends/python/triton_python_backend_stub
uv pip uninstall nvidia-pytriton
