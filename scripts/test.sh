#!/usr/bin/env bash
# One command: set up the test environment and run the whole suite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh --test
exec .venv/bin/pytest "$@"  # not `python -m pytest`: that puts the checkout on sys.path (a second import root)
