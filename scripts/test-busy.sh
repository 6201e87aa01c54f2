#!/usr/bin/env bash
# The whole suite beside a CPU hog on each core (Debian's stress-ng): what a busy or slower machine gives the
# tests. Starts `stress-ng --cpu <cores>` (bounded: it stops by itself after QWEN_BUSY_TIMEOUT, 2h by default),
# installs the optional test tools as .ci/run does, runs scripts/test.sh with the arguments given (they go to
# pytest), stops the hog and exits with pytest's status.
# QWEN_BUSY_CORES sets the count of hogs (the machine's cores by default).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command -v stress-ng >/dev/null \
  || { echo "test-busy: stress-ng is missing (Debian's stress-ng: bash scripts/install-test-tools.sh)" >&2; exit 2; }
cores="${QWEN_BUSY_CORES:-$(nproc)}"
stress-ng --cpu "$cores" --timeout "${QWEN_BUSY_TIMEOUT:-2h}" --quiet &
hog=$!
stop_hog() { kill "$hog" 2>/dev/null || true; wait "$hog" 2>/dev/null || true; }
trap stop_hog EXIT
echo "test-busy: stress-ng --cpu $cores (pid $hog) beside the suite"
# what .ci/run installs first: the real clients' tests run rather than SKIP
bash scripts/install-test-tools.sh || echo "test-busy: optional test tools could not all be installed (tests will say SKIPPED)"
status=0
bash scripts/test.sh "$@" || status=$?
exit $status
