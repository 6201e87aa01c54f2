#!/usr/bin/env bash
# Type-checks the qwen_gateway package with mypy. The package is the folder addons/gateway, mapped by
# setuptools' package-dir, which mypy cannot follow through the editable install's import hook; so it
# checks a temporary tree of links laid out as the package is.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/qwen_gateway"
for f in "$root"/addons/gateway/*; do
  case "$(basename "$f")" in __pycache__) ;; *) ln -s "$f" "$tree/qwen_gateway/" ;; esac
done
cd "$tree"
exec "$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" -p qwen_gateway
