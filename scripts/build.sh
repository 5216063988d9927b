#!/bin/sh
# Builds sagad and sagactl in the source tree (./sagad, ./sagactl). Extra arguments go to
# ./configure (e.g. --enable-sanitizers). Re-runs configure only when needed.
set -eu
cd "$(dirname "$0")/.."
[ -x configure ] || ./autogen.sh >/dev/null 2>&1 || ./autogen.sh
if [ ! -f Makefile ] || [ "$#" -gt 0 ]; then
	./configure --quiet "$@"
fi
make -j"$(nproc)" >/dev/null || make
