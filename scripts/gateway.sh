#!/usr/bin/env bash
# One command: set up (first run only) and start the gateway with `qwen-gateway` (addons/gateway/service.py).
#   bash scripts/gateway.sh                    -> mitmdump -s addons/qwen.py --mode reverse:https://portal.qwen.ai
#                                                 -p 8080 --listen-host 127.0.0.1
#   bash scripts/gateway.sh mitmweb [args...]  -> the same under mitmweb
#   bash scripts/gateway.sh [args...]          -> the same plus your mitmproxy arguments; a default is left
#                                                 out when your arguments set that option (--mode, -p, --listen-host)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup.sh"
exec "$root/.venv/bin/qwen-gateway" "$@"
