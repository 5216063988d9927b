#!/usr/bin/env bash
# bench/cpu-ab.sh -- sagad's CPU per saga for two or more builds, interleaved: for each round
# and each binary, a fresh sagad with its database on /dev/shm (so the loop never waits for an
# fsync and the CPU it uses is the code's cost), a warm-up of 1,000 happy sagas, then N happy
# sagas at 64 clients (wrk, bench/wrk/saga.lua); prints sagad's user+system CPU per saga (from
# /proc) and the sagas per second of each run, then the means and how many rounds each binary
# had the lowest CPU. On a shared machine single runs vary by 10 % and more: compare means over
# many rounds (docs/performance.md, "What each optimisation bought").
#
#   bench/cpu-ab.sh [--sagas N] [--rounds R] SAGAD [SAGAD...]
#
# Needs nginx and wrk (apt-get install -y nginx wrk). Ports: BENCH_HAPPY_PORT (18480),
# BENCH_FAIL_PORT (18481), BENCH_SAGAD_PORT (17930).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
N=20000
ROUNDS=8
HP=${BENCH_HAPPY_PORT:-18480}
FP=${BENCH_FAIL_PORT:-18481}
SP=${BENCH_SAGAD_PORT:-17930}

usage() { sed -n '3,/^set -uo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case $1 in
	--sagas) N=$2; shift ;;
	--rounds) ROUNDS=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	-*) echo "cpu-ab.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
[ $# -ge 1 ] || { usage >&2; exit 2; }
export PATH="$PATH:/usr/sbin:/sbin"
for c in nginx wrk curl; do
	command -v "$c" >/dev/null || { echo "cpu-ab.sh: needs $c (apt-get install -y nginx wrk curl)" >&2; exit 1; }
done
TCK=$(getconf CLK_TCK)
RUN=$(mktemp -d /tmp/sagad-cpu-ab.XXXXXX)
mkdir -p "$RUN/nginx-tmp"
NGINX_PID="" SAGAD_PID="" DB=""
cleanup() {
	[ -n "$SAGAD_PID" ] && kill "$SAGAD_PID" 2>/dev/null && wait "$SAGAD_PID" 2>/dev/null
	[ -n "$NGINX_PID" ] && kill -QUIT "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
	rm -rf "$RUN" ${DB:+"$DB"}
}
trap cleanup EXIT
trap 'echo interrupted; exit 130' INT TERM HUP

sed -e "s#@RUN@#$RUN#g" -e "s#@HAPPY_PORT@#$HP#g" -e "s#@FAIL_PORT@#$FP#g" \
	-e "s#@ACCESS_LOG@#access_log off;#" "$HERE/nginx.conf.in" >"$RUN/nginx.conf"
nginx -p "$RUN" -c "$RUN/nginx.conf" -e "$RUN/nginx-error.log" >"$RUN/nginx.out" 2>&1 &
NGINX_PID=$!
URL=http://127.0.0.1:$SP/v1/flows/apply/sagas
metric() { curl -s --max-time 5 "http://127.0.0.1:$SP/metrics" | awk -v n="sagad_$1" '$1 == n { print $2 }'; }
drive() {   # COUNT: COUNT sagas at 64 clients, until all have ended
	local want=$(( $(metric sagas_started_total) + $1 )) pid
	SAGA_EXPECT=completed SAGA_LIMIT=$1 wrk -t1 -c64 -d3600s --timeout 60s \
		-s "$HERE/wrk/saga.lua" "$URL" >"$RUN/wrk.txt" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null && [ "$(metric sagas_started_total)" -lt "$want" ]; do sleep 0.2; done
	while kill -0 "$pid" 2>/dev/null && [ "$(metric sagas_active)" != 0 ]; do sleep 0.2; done
	kill -INT "$pid" 2>/dev/null
	wait "$pid"
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

for ((r = 1; r <= ROUNDS; r++)); do
	for bin in "$@"; do
		DB=$(mktemp -d /dev/shm/sagad-cpu-ab.XXXXXX)
		PARTICIPANTS=http://127.0.0.1:$HP "$bin" --flows "$HERE/flows" --db "$DB/p.db" \
			--listen "127.0.0.1:$SP" --log-level warn >"$RUN/sagad.log" 2>&1 </dev/null &
		SAGAD_PID=$!
		for ((i = 0; i < 100; i++)); do
			[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$SP/readyz")" = 200 ] && break
			sleep 0.1
		done
		drive 1000
		c0=$(cpu_ticks "$SAGAD_PID") t0=$(date +%s.%N) s0=$(metric sagas_completed_total)
		drive "$N"
		c1=$(cpu_ticks "$SAGAD_PID") t1=$(date +%s.%N) s1=$(metric sagas_completed_total)
		kill "$SAGAD_PID"; wait "$SAGAD_PID" 2>/dev/null; SAGAD_PID=""
		rm -rf "$DB"; DB=""
		awk -v n=$((s1 - s0)) -v c=$((c1 - c0)) -v tk="$TCK" -v t0="$t0" -v t1="$t1" -v r="$r" \
			-v b="$bin" -v la="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
			printf "round %d %s sagas %d cpu_ms/saga %.4f sagas/s %.0f loadavg %s\n",
				r, b, n, c * 1000 / tk / n, n / (t1 - t0), la }'
	done
done | tee "$RUN/rounds.txt"
awk '{ cpu[$3] += $7; rate[$3] += $9; n[$3]++; v[$2, $3] = $7; if (!($2 in seen)) { seen[$2] = 1; rounds++ } }
	END {
		for (b in cpu) printf "mean %s cpu_ms/saga %.4f sagas/s %.0f\n", b, cpu[b] / n[b], rate[b] / n[b]
		for (b in cpu) {
			won = 0
			for (r = 1; r <= rounds; r++) {
				low = 1
				for (o in cpu) if (o != b && v[r, o] < v[r, b]) low = 0
				won += low
			}
			printf "lowest CPU in %d of %d rounds: %s\n", won, rounds, b
		}
	}' "$RUN/rounds.txt"
