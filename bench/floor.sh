#!/usr/bin/env bash
# bench/floor.sh -- what the participant calls cost on this machine without sagad: the CPU floor
# under any orchestrator that makes them with Debian 12's libcurl.
#
#   bench/floor.sh [--calls N] [--concs "1 64"]
#
# Starts the bench's nginx participant (bench/nginx.conf.in, one worker), then for each
# concurrency runs bench/floor/curl_floor (built here with cc and libcurl) three ways: POST calls
# shaped like sagad's (its options, its six header lines, a small JSON body), the same with no
# custom header lines, and wrk's own requests for comparison. For each: calls/s, the client's CPU
# per call (getrusage, user + system) and the nginx worker's CPU per call (/proc/PID/stat).
# Then the arithmetic the performance targets need: how many microseconds of CPU per saga the
# two cores allow at 12,000 sagas/s, and how much of it three calls alone take.
# Needs nginx, wrk, a C compiler and libcurl4-openssl-dev (apt-get install -y nginx wrk gcc
# libcurl4-openssl-dev). Port: BENCH_FLOOR_PORT (18290). Not timed in CI; numbers go to
# docs/performance.md with the date and the load average.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CALLS=200000
CONCS="1 64"
PORT=${BENCH_FLOOR_PORT:-18290}
while [ $# -gt 0 ]; do
	case $1 in
	--calls) CALLS=$2; shift ;;
	--concs) CONCS=$2; shift ;;
	-h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "floor.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
export PATH="$PATH:/usr/sbin"
for c in nginx wrk cc; do
	command -v "$c" >/dev/null || { echo "floor.sh: needs $c (apt-get install -y nginx wrk gcc libcurl4-openssl-dev)" >&2; exit 1; }
done
RUN=$(mktemp -d /tmp/sagad-floor.XXXXXX)
mkdir -p "$RUN/nginx-tmp"
NGINX_PID=""
cleanup() { [ -n "$NGINX_PID" ] && { kill -QUIT "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null; }; rm -rf "$RUN"; }
trap cleanup EXIT
cc -O2 -o "$RUN/curl_floor" "$HERE/floor/curl_floor.c" -lcurl || { echo "floor.sh: build failed" >&2; exit 1; }
sed -e "s#@RUN@#$RUN#g" -e "s#@HAPPY_PORT@#$PORT#g" -e "s#@FAIL_PORT@#$((PORT + 1))#g" \
	-e "s#@ACCESS_LOG@#access_log off;#" "$HERE/nginx.conf.in" >"$RUN/nginx.conf"
nginx -p "$RUN" -c "$RUN/nginx.conf" -e "$RUN/nginx-error.log" >"$RUN/nginx.out" 2>&1 &
NGINX_PID=$!
URL=http://127.0.0.1:$PORT/payments
for ((i = 0; i < 100; i++)); do
	curl -s -o /dev/null -X POST "$URL" 2>/dev/null && break
	sleep 0.1
done
worker=$(pgrep -P "$NGINX_PID" | head -1)
[ -n "$worker" ] || { echo "floor.sh: nginx did not start (see $RUN/nginx-error.log)" >&2; exit 1; }
ticks() { awk '{ print $14 + $15 }' "/proc/$worker/stat"; }
HZ=$(getconf CLK_TCK)
echo "bench/floor.sh $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
for c in $CONCS; do
	for mode in sagad bare; do
		t0=$(ticks)
		out=$("$RUN/curl_floor" "$URL" "$c" "$CALLS" "$mode") || status=1
		t1=$(ticks)
		echo "$out; nginx $(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$CALLS" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }') us per call"
	done
	t0=$(ticks)
	w=$(wrk -t1 -c"$c" -d5s "$URL" 2>&1)
	t1=$(ticks)
	n=$(awk '/requests in/ { print $1 }' <<<"$w")
	echo "wrk, $c connections: $(awk '/Requests\/sec/ { print $2 }' <<<"$w") req/s; nginx $(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }') us per request"
done
cat <<'EOF'
Budget at 12,000 sagas/s on 2 cores: 2 s / 12,000 = 167 us of CPU per saga for everything
(sagad, the participants, the driver). A happy saga is 3 calls: 3 x (client us per call above,
sagad's headers) of libcurl alone, plus 3 x nginx's, plus the driver's request to sagad.
EOF
exit $status
