#!/usr/bin/env bash
# Run the whole test suite (installs first if needed). Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export NUMBA_NUM_THREADS=1
exec python -m pytest -q "$@"
