#!/usr/bin/env bash
# The README's main command: set up, then run the whole pipeline on the offline mnist5k dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
EDGESHIP_SYSTEM_PACKAGES=${EDGESHIP_SYSTEM_PACKAGES:-0} bash scripts/setup.sh
exec .venv/bin/edgeship pipeline --model lenet5 --dataset mnist5k --epochs 5 --qat 1 --out runs/demo "$@"
