#!/usr/bin/env bash
# Creates .venv with Python 3.12+ and installs the gateway (and, with --test, the test tools)
# in ONE pip run: mitmproxy 12.2 pins typing-extensions, and split installs can break anyio.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test,postgres]"  # the tests start a real PostgreSQL
base_python() {  # the first Python 3.12+ found
  local cand p
  for cand in python3.13 python3.12 python3; do
    p=$(command -v "$cand" 2>/dev/null) || continue
    if "$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then echo "$p"; return; fi
  done
  if command -v pyenv >/dev/null; then pyenv which python3.12 2>/dev/null && return; fi
  echo "setup: Python 3.12+ not found" >&2
  return 1
}
if [ "${1:-}" = "--python" ]; then  # the Python .venv has or will have (install-test-tools.sh's venvs use it too)
  [ -x .venv/bin/python ] && { readlink -f .venv/bin/python; exit; }
  base_python
  exit
fi
if [ ! -x .venv/bin/python ]; then
  py=$(base_python) || exit 1
  "$py" -m venv .venv
fi
stamp=".venv/.installed$extras"
current() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ] && [ ! setup.py -nt "$1" ]; }
# An install with the test tools includes the plain one: no second pip run (nor network) for it.
if ! current "$stamp" && ! { [ -z "$extras" ] && current ".venv/.installed[test,postgres]"; }; then
  echo "setup: installing into .venv (log: .venv/install.log)…" >&2
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".$extras"; } \
      > .venv/install.log 2>&1; then
    tail -n 30 .venv/install.log >&2
    echo "setup: pip install failed (full log: .venv/install.log)" >&2
    exit 1
  fi
  touch "$stamp"
fi
