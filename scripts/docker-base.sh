#!/usr/bin/env bash
# A Debian trixie base image (Python 3.13) for the Dockerfile where no image registry is reachable: made with
# debootstrap from this machine's Debian mirror and `docker import`ed. Cached: when the image exists already
# nothing is done, so CI builds it once per machine. Needs root (debootstrap) and a running Docker daemon.
#
#   sudo bash scripts/docker-base.sh [IMAGE]      (default qwen-gateway-base:trixie)
#
# The mirror: $DEBIAN_MIRROR, else the first Debian archive in /etc/apt/sources.list*, else deb.debian.org.
set -euo pipefail
image=${1:-qwen-gateway-base:trixie}
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "docker-base: $image exists already"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "docker-base: debootstrap needs root (sudo bash scripts/docker-base.sh)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "docker-base: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then  # one-line (`deb URL suite …`) and deb822 (`URIs: URL`) sources; not the security archive
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | sed -nE 's#^(deb[[:space:]]+(\[[^]]*\][[:space:]]+)?|URIs:[[:space:]]*)(https?://[^[:space:]]+/debian)/?([[:space:]].*)?$#\3#p' \
    | head -n 1) || true  # a glob with no file: cat says so, the others are still read
fi
mirror=${mirror:-http://deb.debian.org/debian}
root=$(mktemp -d /var/tmp/qwen-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
start=$SECONDS
echo "docker-base: debootstrap trixie from $mirror…"
# minbase: apt and the essentials; python3-venv brings ensurepip (the Dockerfile makes a venv); the CA store
# for the gateway's own HTTPS calls; passwd for the image's user
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd trixie "$root" "$mirror" \
  > "$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
  --message "debootstrap trixie from $mirror (scripts/docker-base.sh)" - "$image" >/dev/null
echo "docker-base: $image built in $((SECONDS - start)) s"
