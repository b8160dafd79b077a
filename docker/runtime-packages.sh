#!/bin/sh
# Prints, one a line, the Debian packages that own the shared libraries the given executables link
# (as ldd resolves them). Used by the Dockerfiles' builder stages, so the runtime stage installs the
# runtime libraries and nothing else; meant for any apt-based base (used here on Debian 12).
# Libraries no package owns (a CUDA toolkit copied into the image by hand) are named on stderr and
# left out: the runtime base image must provide them (the Dockerfiles check with ldd).
set -eu
[ $# -gt 0 ] || { echo "usage: $0 EXECUTABLE..." >&2; exit 2; }
owner() {
  # dpkg knows a file by the path its package ships; with merged /usr that may be /lib or /usr/lib.
  for p in "$1" "$(readlink -f "$1")"; do
    for q in "$p" "/usr${p#/usr}" "${p#/usr}"; do
      o=$(dpkg-query -S "$q" 2>/dev/null | head -n 1 | cut -d: -f1) || true
      if [ -n "$o" ]; then echo "$o"; return 0; fi
    done
  done
  return 1
}
libs=$(ldd "$@" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | sort -u)
for lib in $libs; do
  if ! owner "$lib"; then echo "runtime-packages: no package owns $lib (the runtime base must provide it)" >&2; fi
done | sort -u
if ldd "$@" | grep -q 'not found'; then
  ldd "$@" | grep 'not found' >&2
  echo "runtime-packages: unresolved libraries above" >&2
  exit 1
fi
