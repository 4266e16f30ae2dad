#!/usr/bin/env bash
# Installs the Debian 12 packages pgs needs.  Idempotent and quick when
# everything is present: apt-get runs only for what is missing.  Run as root
# (or with sudo) on a fresh machine.
#
#   scripts/deps.sh          what building the library and examples needs
#   scripts/deps.sh test     that, plus the test tools (clang sanitizers, spin)
set -euo pipefail

PACKAGES=(build-essential cmake pkg-config libsqlite3-dev libxxhash-dev)
if [ "${1:-build}" = test ]; then
  PACKAGES+=(clang libclang-rt-14-dev spin)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
