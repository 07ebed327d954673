#!/usr/bin/env bash
# Export EfficientNet-Lite0 (split after _blocks.8, 8-bit codec) and serve it with the
# tritonserver bundled in nvidia-pytriton, on 127.0.0.1:8000/8001/8002 by default.
#   deploy/start_local.sh [REPO_DIR] [extra `splitwire serve` args, e.g. --http-port 9000]
# Ctrl-C stops the server.
set -euo pipefail
repo="${1:-model_repository}"
shift || true
python -m splitwire export --model efficientnet_lite0 --split _blocks.8 --bits 8 --out "$repo"
exec python -m splitwire serve "$repo" "$@"
