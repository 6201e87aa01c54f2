#!/usr/bin/env bash
# One command: set up the test environment and run the whole suite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
