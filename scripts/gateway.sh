#!/usr/bin/env bash
# One command: set up (first run only) and start the gateway.
#   bash scripts/gateway.sh                    -> reverse proxy on 127.0.0.1:8080 for https://portal.qwen.ai
#   bash scripts/gateway.sh mitmweb [args...]  -> same under mitmweb
#   bash scripts/gateway.sh mitmdump [args...] -> your own mitmdump arguments
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup.sh"
tool=mitmdump
case "${1:-}" in mitmdump|mitmweb) tool=$1; shift ;; esac
if [ $# -eq 0 ]; then set -- --mode reverse:https://portal.qwen.ai -p 8080; fi
exec "$root/.venv/bin/$tool" -s "$root/addons/qwen.py" --listen-host 127.0.0.1 "$@"
