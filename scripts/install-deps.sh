#!/bin/sh
# Installs what sagad needs to build, test and run its demo on Debian 12 (run as root).
# Skips apt entirely when everything is already there.
set -eu
PKGS="build-essential autoconf automake libtool pkg-config
      libuv1-dev libyaml-dev libsqlite3-dev libcurl4-openssl-dev libjansson-dev
      libmicrohttpd-dev libjwt-dev libssl-dev librdkafka-dev libcmocka-dev libmimalloc-dev openssl
      sqlite3 curl jq python3 python3-confluent-kafka kcat procps nginx wrk strace
      clang libclang-rt-14-dev libfaketime"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages:$missing" >&2
	echo "install-deps: run as root (or: sudo apt-get install -y$missing)" >&2
	exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
