#!/usr/bin/env bash
# The README's test command: set up, lint (ruff, pinned in the dev extra, configured in
# pyproject.toml), then run the default (fast) test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
