#!/usr/bin/env bash
# `cmake --install` gives a usable pgs: installed into a temporary prefix,
# tests/consumer/main.c builds and runs (prints OK) four ways:
#   pkg-config, shared          cc main.c $(pkg-config --cflags --libs pgs)
#   pkg-config --static         the same with libpgs.a, whose dependencies
#                               must all come from pgs.pc's private fields
#   find_package(pgs CONFIG)    pgs::pgs and pgs::pgs_static
# and the shared library exports the pgs_* API and nothing else; the pgs
# command runs from the prefix.
#
#   install.sh BUILD_DIR CC [FLAGS]   FLAGS: the library's sanitizer flags,
#                                     which its consumers must share
set -u
build=$1 cc=$2 flags=${3:-}
src=$(cd "$(dirname "$0")/consumer" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail=0
say_fail() { echo "FAIL: $*"; fail=1; }

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; echo "FAIL: cmake --install"; exit 1; }
pc=$(find "$prefix" -name pgs.pc)
[ -n "$pc" ] || { echo "FAIL: no pgs.pc installed"; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
export PKG_CONFIG_PATH=$(dirname "$pc")

# run NAME BINARY [ENV...]: the program must print exactly OK.
run() {
  local name=$1 bin=$2; shift 2
  local out
  out=$(env "$@" "$bin" 2>&1)
  [ "$out" = OK ] || say_fail "$name: printed '$out', want 'OK'"
}
# needs BINARY yes|no: whether it loads libpgs.so.0 at run time.
needs() {
  local got=no
  readelf -d "$1" | grep -q 'NEEDED.*\[libpgs\.so\.0\]' && got=yes
  [ "$got" = "$2" ] || say_fail "$(basename "$1"): needs libpgs.so.0: $got, want $2"
}

# The soname, and no internal (pgsi_*) or other stray symbol exported.
[ -L "$libdir/libpgs.so.0" ] && [ -f "$libdir/libpgs.so.0.1.0" ] ||
  say_fail "libpgs.so.0 -> libpgs.so.0.1.0 not installed"
readelf -d "$libdir/libpgs.so" | grep -q 'SONAME.*\[libpgs\.so\.0\]' || say_fail "soname is not libpgs.so.0"
stray=$(nm -D --defined-only "$libdir/libpgs.so" | awk '{print $3}' | grep -v '^pgs_')
[ -z "$stray" ] || say_fail "libpgs.so exports non-API symbols: $(echo $stray | head -c 300)"
nm -D --defined-only "$libdir/libpgs.so" | grep -q ' pgs_open$' || say_fail "libpgs.so does not export pgs_open"

# The pgs command runs from the prefix, finding libpgs.so.0 beside it.
out=$(env -u LD_LIBRARY_PATH "$prefix/bin/pgs" --version 2>&1)
[ "$out" = "pgs $(sed -n 's/^Version: //p' "$pc")" ] || say_fail "bin/pgs --version printed '$out'"
needs "$prefix/bin/pgs" yes

# pkg-config.  -Werror: the installed header compiles cleanly for users.
cflags="-std=c17 -Wall -Wextra -Wno-unused-parameter -Werror $flags"
if $cc $cflags "$src/main.c" -o "$tmp/pc_shared" $(pkg-config --cflags --libs pgs); then
  needs "$tmp/pc_shared" yes
  run pc_shared "$tmp/pc_shared" LD_LIBRARY_PATH="$libdir"
else
  say_fail "pkg-config shared build"
fi
# -l:libpgs.a picks the archive although libpgs.so sits beside it.
static_libs=$(pkg-config --static --libs pgs | sed 's/-lpgs\b/-l:libpgs.a/')
if $cc $cflags "$src/main.c" -o "$tmp/pc_static" $(pkg-config --cflags pgs) $static_libs; then
  needs "$tmp/pc_static" no
  run pc_static "$tmp/pc_static"
else
  say_fail "pkg-config --static build"
fi

# find_package(pgs CONFIG).
if cmake -S "$src" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
     -DCMAKE_C_FLAGS="$flags" >"$tmp/cmake.log" 2>&1 &&
   cmake --build "$tmp/cmake" -j2 >>"$tmp/cmake.log" 2>&1; then
  needs "$tmp/cmake/consumer_shared" yes
  needs "$tmp/cmake/consumer_static" no
  run cmake_shared "$tmp/cmake/consumer_shared"
  run cmake_static "$tmp/cmake/consumer_static"
else
  cat "$tmp/cmake.log"
  say_fail "find_package(pgs) build"
fi

[ $fail -eq 0 ] && echo "install_consumer: ok"
exit $fail
