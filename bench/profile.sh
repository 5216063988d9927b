#!/usr/bin/env bash
# bench/profile.sh -- where sagad's CPU goes per saga, counted, not timed: sagad runs under
# valgrind's callgrind while a fixed number of apply sagas run against nginx participants, and
# the instructions executed per saga (Ir) are reported, in total and by function. Instruction
# counts do not depend on what else runs on the machine, so two builds can be compared on a
# busy box (docs/performance.md, "What each optimisation bought"). Also counts the SQLite
# statements per saga (sqlite3_step calls per prepared statement) from the same profile.
#
#   bench/profile.sh [--mode happy|fail] [--sagas N] [--clients C] [--minimal] [--sagad PATH]
#                    [--no-build] [--out DIR] [--top N]
#
# Needs valgrind, nginx, wrk (apt-get install -y valgrind nginx wrk). Ports: BENCH_HAPPY_PORT
# (18280), BENCH_FAIL_PORT (18281), BENCH_SAGAD_PORT (17730). Output in --out (default
# bench/results/profile-<UTC time>/): callgrind.out (callgrind_annotate it, or kcachegrind),
# summary.txt. Only the measured sagas are in the profile: sagad starts with instrumentation off,
# a warm-up of 200 sagas runs, then it is switched on (callgrind_control -i on) for the N sagas.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOP="$(cd "$HERE/.." && pwd)"
MODE=happy
N=2000
C=4
PREFER=""
BUILD=1
SAGAD_BIN=""
OUT=""
TOPN=40
HAPPY_PORT=${BENCH_HAPPY_PORT:-18280}
FAIL_PORT=${BENCH_FAIL_PORT:-18281}
SAGAD_PORT=${BENCH_SAGAD_PORT:-17730}

usage() { sed -n '3,/^set -uo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case $1 in
	--mode) MODE=$2; shift ;;
	--sagas) N=$2; shift ;;
	--clients) C=$2; shift ;;
	--minimal) PREFER="return=minimal" ;;
	--sagad) SAGAD_BIN=$2; shift ;;
	--no-build) BUILD=0 ;;
	--out) OUT=$2; shift ;;
	--top) TOPN=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "profile.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
export PATH="$PATH:/usr/sbin:/sbin"
for c in valgrind callgrind_control callgrind_annotate nginx wrk curl; do
	command -v "$c" >/dev/null || { echo "profile.sh: needs $c (apt-get install -y valgrind nginx wrk curl)" >&2; exit 1; }
done
if [ "$BUILD" = 1 ] && [ -z "$SAGAD_BIN" ]; then
	"$TOP/scripts/build.sh" >/dev/null || { echo "profile.sh: build failed" >&2; exit 1; }
fi
SAGAD_BIN=${SAGAD_BIN:-$TOP/sagad}
: "${OUT:=$HERE/results/profile-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT/run/nginx-tmp" || exit 1
OUT="$(cd "$OUT" && pwd)"
RUN="$OUT/run"

NGINX_PID="" SAGAD_PID=""
stop_pid() {
	local pid=$1 sig=${2:-TERM} i
	[ -n "$pid" ] || return 0
	kill -"$sig" "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 600; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}
cleanup() { stop_pid "$SAGAD_PID"; stop_pid "$NGINX_PID" QUIT; rm -rf "$RUN"; }
trap cleanup EXIT
trap 'echo interrupted; exit 130' INT TERM HUP

sed -e "s#@RUN@#$RUN#g" -e "s#@HAPPY_PORT@#$HAPPY_PORT#g" -e "s#@FAIL_PORT@#$FAIL_PORT#g" \
	-e "s#@ACCESS_LOG@#access_log off;#" "$HERE/nginx.conf.in" >"$RUN/nginx.conf"
nginx -p "$RUN" -c "$RUN/nginx.conf" -e "$RUN/nginx-error.log" >"$RUN/nginx.out" 2>&1 &
NGINX_PID=$!
parts=http://127.0.0.1:$HAPPY_PORT expect=completed
[ "$MODE" = fail ] && { parts=http://127.0.0.1:$FAIL_PORT; expect=compensated; }
PARTICIPANTS=$parts valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out" \
	"$SAGAD_BIN" --flows "$HERE/flows" --db "$RUN/p.db" --listen "127.0.0.1:$SAGAD_PORT" \
	--log-level warn >"$OUT/sagad.log" 2>&1 </dev/null &
SAGAD_PID=$!
for ((i = 0; i < 600; i++)); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$SAGAD_PORT/readyz")" = 200 ] && break
	sleep 0.2
done
URL=http://127.0.0.1:$SAGAD_PORT/v1/flows/apply/sagas
started() { curl -s --max-time 5 "http://127.0.0.1:$SAGAD_PORT/metrics" | awk '$1 == "sagad_sagas_started_total" { print $2 }'; }
drive() {   # COUNT LABEL: COUNT sagas, C at a time (wrk stops its thread at COUNT answers,
	# bench/wrk/saga.lua's SAGA_LIMIT, and is then told to report with SIGINT)
	local want=$(( $(started) + $1 )) pid
	SAGA_EXPECT=$expect SAGA_PREFER=$PREFER SAGA_LIMIT=$1 wrk -t1 -c"$C" -d3600s --timeout 60s \
		-s "$HERE/wrk/saga.lua" "$URL" >"$OUT/wrk-$2.txt" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null && [ "$(started)" -lt "$want" ]; do sleep 0.5; done
	while kill -0 "$pid" 2>/dev/null && [ "$(curl -s --max-time 5 "http://127.0.0.1:$SAGAD_PORT/metrics" | awk '$1 == "sagad_sagas_active" { print $2 }')" != 0 ]; do sleep 0.5; done
	kill -INT "$pid" 2>/dev/null
	wait "$pid"
}
drive 200 warmup
callgrind_control -i on "$SAGAD_PID" >/dev/null
m0=$(curl -s "http://127.0.0.1:$SAGAD_PORT/metrics")
drive "$N" measured
m1=$(curl -s "http://127.0.0.1:$SAGAD_PORT/metrics")
callgrind_control -i off "$SAGAD_PID" >/dev/null
stop_pid "$SAGAD_PID"; SAGAD_PID=""
metric() { awk -v n="sagad_$1" '$1 == n { print $2 }'; }
fin=$(( $(metric sagas_completed_total <<<"$m1") + $(metric sagas_compensated_total <<<"$m1") \
	- $(metric sagas_completed_total <<<"$m0") - $(metric sagas_compensated_total <<<"$m0") ))
[ -s "$OUT/callgrind.out" ] || { echo "profile.sh: no callgrind output (see $OUT/sagad.log)"; exit 1; }
callgrind_annotate --auto=no --inclusive=no "$OUT/callgrind.out" >"$OUT/self.txt" 2>/dev/null
callgrind_annotate --auto=no --inclusive=yes "$OUT/callgrind.out" >"$OUT/inclusive.txt" 2>/dev/null
total=$(awk '/PROGRAM TOTALS/ { gsub(/,/, "", $1); print $1; exit }' "$OUT/self.txt")
{
	echo "sagad $("$SAGAD_BIN" --version | head -1), tree $(git -C "$TOP" describe --always --dirty 2>/dev/null); mode $MODE, $fin sagas measured at $C clients${PREFER:+, Prefer: $PREFER}"
	awk -v t="$total" -v n="$fin" 'BEGIN { printf "instructions per saga: %.0f (total %s)\n", t / n, t }'
	echo
	echo "SQLite statements per saga (sagad_store_statements_total, measured sagas only):"
	{ sed 's/^/0 /' <<<"$m0"; sed 's/^/1 /' <<<"$m1"; } | awk -v n="$fin" '
		$2 ~ /^sagad_store_statements_total[{]/ { k = $2; sub(/.*statement="/, "", k); sub(/".*/, "", k)
			if ($1 == 0) a[k] = $3; else b[k] = $3 }
		END { for (k in b) if (b[k] - a[k] > 0) { t += b[k] - a[k]; printf "%8.2f  %s\n", (b[k] - a[k]) / n, k }
			printf "%8.2f  (all)\n", t / n }' | sort -k1,1nr
	echo
	echo "top $TOPN functions by own instructions per saga (share of total):"
	awk -v n="$fin" -v t="$total" -v top="$TOPN" '
		/^-+$/ { sep++; next }
		sep >= 3 && NF >= 2 && $1 ~ /^[0-9,]+$/ { v = $1; gsub(/,/, "", v); $1 = ""; sub(/^ +/, "");
			if (k++ < top) printf "%10.0f  %5.1f%%  %s\n", v / n, 100 * v / t, $0 }' "$OUT/self.txt"
	echo
	echo "top $TOPN functions by inclusive instructions per saga:"
	awk -v n="$fin" -v t="$total" -v top="$TOPN" '
		/^-+$/ { sep++; next }
		sep >= 3 && NF >= 2 && $1 ~ /^[0-9,]+$/ { v = $1; gsub(/,/, "", v); $1 = ""; sub(/^ +/, "");
			if (k++ < top) printf "%10.0f  %5.1f%%  %s\n", v / n, 100 * v / t, $0 }' "$OUT/inclusive.txt"
} >"$OUT/summary.txt"
cat "$OUT/summary.txt"
