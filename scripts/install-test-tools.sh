#!/usr/bin/env bash
# Installs the optional real clients the end-to-end tests drive: Debian's chromium + chromium-driver
# (mitmweb browser test) and the Codex CLI from npm (into .tools/, not globally).
# Tests that need a missing tool report SKIPPED with the reason; they never pass silently.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || { echo "install-test-tools: chromium install failed"; status=1; }
  else
    echo "install-test-tools: chromium missing and apt-get unavailable (not root?)"; status=1
  fi
fi
if command -v npm >/dev/null; then
  if [ ! -x .tools/node_modules/.bin/codex ]; then
    mkdir -p .tools
    npm install --prefix .tools --no-audit --no-fund --loglevel=error @openai/codex@0.169.0 >/dev/null \
      || { echo "install-test-tools: codex install failed"; status=1; }
  fi
else
  echo "install-test-tools: npm missing: Codex CLI tests will be skipped"; status=1
fi
exit $status
