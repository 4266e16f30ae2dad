#!/usr/bin/env bash
# Installs the Debian 12 packages pgs needs.  Idempotent and quick when
# everything is present: apt-get runs only for what is missing.  Run as root
# (or with sudo) on a fresh machine.
#
#   scripts/deps.sh          what building the library and examples needs
#   scripts/deps.sh test     that, plus the test tools (clang sanitizers, spin)
#   scripts/deps.sh bench    that, plus what benchmarks compare against
#                            (Erlang/OTP's erl and erlc, for bench/peer)
set -euo pipefail

# zlib1g-dev: sqlite3.pc asks for -lz, so `pkg-config --static pgs` does too.
# libmicrohttpd-dev: the game demo serves its metrics over HTTP.
PACKAGES=(build-essential cmake pkg-config libsqlite3-dev libxxhash-dev liblmdb-dev libpq-dev
          zlib1g-dev libmicrohttpd-dev)
if [ "${1:-build}" = test ]; then
  PACKAGES+=(clang libclang-rt-14-dev spin postgresql) # tests start their own cluster
fi
if [ "${1:-build}" = bench ]; then
  PACKAGES+=(erlang-base) # erl and erlc, OTP 25 on Debian 12
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
# Debian's postgresql makes a default cluster (15/main on port 5432) and
# starts it; the tests use a private one (scripts/pgtest.sh), so while
# installing no service is started (policy-rc.d) and no default cluster is
# made (a createcluster.d drop-in, which postgresql-common reads): nothing
# is left to start at the next boot.  Both are removed afterwards.
cleanup=()
trap '[ ${#cleanup[@]} -eq 0 ] || $SUDO rm -f "${cleanup[@]}"' EXIT
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    cleanup+=(/usr/sbin/policy-rc.d)
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
  fi
  dropin=/etc/postgresql-common/createcluster.d/pgs-no-main-cluster.conf
  if [ ! -e "$dropin" ]; then
    cleanup+=("$dropin")
    $SUDO mkdir -p "$(dirname "$dropin")"
    echo "create_main_cluster = false" | $SUDO tee "$dropin" >/dev/null
  fi
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
