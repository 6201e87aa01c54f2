#!/usr/bin/env bash
# Lint (ruff) and type-check (mypy) the project; run by .ci/run after the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check addons scripts tests
bash scripts/typecheck.sh
