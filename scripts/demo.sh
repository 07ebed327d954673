#!/usr/bin/env bash
# The main job: export EfficientNet-Lite0 split at a middle block, start the bundled tritonserver,
# classify the 20 bundled ImageNet images through head -> codec -> Triton -> tail, stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec python -m splitwire demo "$@"
