#!/usr/bin/env bash
# shellcheck disable=SC2046  # $(nginx_workers) is a list of pids, split on purpose
# bench/run.sh -- the sagad benchmark: one command, start to stop.
#
#   bench/run.sh [--quick] [--modes "happy fail kafka"] [--concs "1 16 64"] [--duration S] [--out DIR]
#                [--warmup S] [--fsync-seconds S] [--ceiling-seconds S] [--no-build] [--no-install]
#                [--sagad PATH] [--sagad-args "ARGS"] [--minimal] [--keep]
#                [--prefill N] [--prefill-age-days D] [--sync-delay-us N]
#
# What it does (docs/performance.md explains every number):
#   1. installs nginx, wrk and strace with apt when missing (as root, like scripts/install-deps.sh)
#      and builds sagad with scripts/build.sh (--no-build: use the sagad already built);
#   2. starts nginx as the participants (bench/nginx.conf.in; loopback only; happy server on
#      $BENCH_HAPPY_PORT, default 18180; failure server, /deliveries -> 500, on $BENCH_FAIL_PORT,
#      default 18181) with a buffered counting access log (each run checks its own slice of it);
#   3. measures the participants' own ceiling with wrk (POST /classes, bench/wrk/post.lua) at each
#      concurrency, before and after the sagad runs: the baseline of this run;
#   4. for each mode and concurrency: a fresh sagad (fresh database, shipped durability settings,
#      i.e. SQLite WAL + synchronous=FULL), a warm-up, a timed wrk run (bench/wrk/saga.lua), a
#      separate short run under strace to count fsync/fdatasync, then stops sagad and checks that
#      every saga ended as expected (SQLite) and the participants saw exactly the calls they
#      should (counting access log, awk);
#   4b. mode "kafka" (not run by default: --modes "happy fail kafka"): the same saga with its ship
#      step as a Kafka request/reply (bench/flows-kafka/apply.yaml) through sagad-kafka-mock
#      (built with sagad; librdkafka's mock cluster) and bench/kafka_echo.py (Debian's
#      python3-confluent-kafka), which answers every command at once and counts them; the check
#      adds: the participant got exactly one command per saga and answered each;
#   5. prints a markdown table (also $OUT/summary.md); raw numbers in $OUT/results.jsonl.
# Exit status: 0 when every run completed and every check passed, 1 otherwise.
#
# --minimal: the driver sends "Prefer: return=minimal" (the saga without its history, answered
# from memory; docs/api.md). Default: the full saga object, as a plain client gets it.
# --prefill N: every run starts on a database that already holds N finished sagas (copies of a
# real happy saga's rows, created one per millisecond up to D days ago, default 0, with ULIDs of
# those times; marked by shard 1): the throughput with a big store. With D past the retention (--sagad-args "--retention 7d", the
# default), sagad purges them during the run: the purge under load (its loop stall shows in the
# loop-turn columns). Built once per bench in $OUT/run (about 2.5 GB per million sagas).
# --sync-delay-us N: a slower disk: sagad runs with the fault shim (tests/fault/faultvfs.so,
# built when missing) adding N microseconds to every fsync (a cloud volume's or a consumer
# SSD's fsync takes 0.5-10 ms; this VM's about 0.05 ms). Compare --sagad-args "--sync-inline"
# with the default to see what the WAL sync thread buys on such a disk.
# --quick: concurrencies "1 16" (unless --concs), 3 s runs, 1 s warm-up: about a minute.
# Environment: BENCH_HAPPY_PORT, BENCH_FAIL_PORT, BENCH_SAGAD_PORT (default 17710) pick the ports.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOP="$(cd "$HERE/.." && pwd)"

MODES="happy fail"
CONCS=""
DURATION=""
WARMUP=""
FSYNC_SECONDS=""
CEIL_SECONDS=""
OUT=""
QUICK=0
BUILD=1
INSTALL=1
KEEP=0
PREFER=""
PREFILL=0
PREFILL_AGE_DAYS=0
SAGAD_BIN=""
SAGAD_ARGS=""
SYNC_DELAY_US=0
HAPPY_PORT=${BENCH_HAPPY_PORT:-18180}
FAIL_PORT=${BENCH_FAIL_PORT:-18181}
SAGAD_PORT=${BENCH_SAGAD_PORT:-17710}

usage() { sed -n '3,/^set -uo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1 ;;
	--modes) MODES=$2; shift ;;
	--concs) CONCS=$2; shift ;;
	--duration) DURATION=$2; shift ;;
	--warmup) WARMUP=$2; shift ;;
	--fsync-seconds) FSYNC_SECONDS=$2; shift ;;
	--ceiling-seconds) CEIL_SECONDS=$2; shift ;;
	--out) OUT=$2; shift ;;
	--no-build) BUILD=0 ;;
	--no-install) INSTALL=0 ;;
	--sagad) SAGAD_BIN=$2; shift ;;
	--sagad-args) SAGAD_ARGS=$2; shift ;;
	--keep) KEEP=1 ;;
	--minimal) PREFER="return=minimal" ;;
	--prefill) PREFILL=$2; shift ;;
	--prefill-age-days) PREFILL_AGE_DAYS=$2; shift ;;
	--sync-delay-us) SYNC_DELAY_US=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
if [ "$QUICK" = 1 ]; then
	: "${CONCS:=1 16}" "${DURATION:=3}" "${WARMUP:=1}" "${FSYNC_SECONDS:=1}" "${CEIL_SECONDS:=2}"
else
	: "${CONCS:=1 16 64}" "${DURATION:=30}" "${WARMUP:=3}" "${FSYNC_SECONDS:=3}" "${CEIL_SECONDS:=5}"
fi
for m in $MODES; do
	case $m in happy | fail | kafka) ;; *) echo "run.sh: mode '$m' is not happy, fail or kafka" >&2; exit 2 ;; esac
done
for v in $CONCS $DURATION $WARMUP $FSYNC_SECONDS $CEIL_SECONDS; do
	case $v in '' | *[!0-9]*) echo "run.sh: '$v' is not a whole number" >&2; exit 2 ;; esac
done
[ "$DURATION" -ge 1 ] || { echo "run.sh: --duration must be at least 1" >&2; exit 2; }
: "${OUT:=$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT" || exit 1
OUT="$(cd "$OUT" && pwd)"
RUN="$OUT/run"
rm -rf "$RUN"
mkdir -p "$RUN/nginx-tmp" "$OUT/checks" || exit 1
: >"$OUT/results.jsonl"
: >"$OUT/ceiling.jsonl"
exec > >(tee "$OUT/run.log") 2>&1

log() { echo "== $*"; }
FAILS=0
fail() { echo "CHECK FAILED: $*"; echo "$*" >>"$OUT/checks/failures.txt"; FAILS=$((FAILS + 1)); }

# ---------------------------------------------------------------------------------------------
# Processes this script started (stopped by recorded PID only)
NGINX_PID=""
SAGAD_PID=""
STRACE_PID=""
KMOCK_PID=""
ECHO_PID=""
stop_pid() {   # PID [SIGNAL] [timeout_s]: signal, wait, then SIGKILL
	local pid=$1 sig=${2:-TERM} t=${3:-15} i
	[ -n "$pid" ] || return 0
	kill -"$sig" "$pid" 2>/dev/null || return 0
	for ((i = 0; i < t * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}
cleanup() {
	[ -n "$STRACE_PID" ] && stop_pid "$STRACE_PID" INT 5
	[ -n "$SAGAD_PID" ] && stop_pid "$SAGAD_PID" TERM 15
	[ -n "$ECHO_PID" ] && stop_pid "$ECHO_PID" TERM 15
	[ -n "$KMOCK_PID" ] && stop_pid "$KMOCK_PID" TERM 10
	[ -n "$NGINX_PID" ] && stop_pid "$NGINX_PID" QUIT 10
	STRACE_PID="" SAGAD_PID="" NGINX_PID="" ECHO_PID="" KMOCK_PID=""
	if [ "$KEEP" != 1 ]; then
		rm -rf "$RUN"
	fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM HUP

# ---------------------------------------------------------------------------------------------
# 1. Tools and build
need_cmds() {
	local c missing=""
	for c in nginx wrk strace curl sqlite3 awk; do
		command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || missing="$missing $c"
	done
	echo "$missing"
}
export PATH="$PATH:/usr/sbin:/sbin"
missing=$(need_cmds)
if [ -n "$missing" ] && [ "$INSTALL" = 1 ]; then
	pkgs=""
	for c in $missing; do
		case $c in awk) pkgs="$pkgs gawk" ;; *) pkgs="$pkgs $c" ;; esac   # Debian package = command
	done
	if [ "$(id -u)" != 0 ]; then
		echo "run.sh: missing$missing; run as root or: sudo apt-get install -y$pkgs" >&2
		exit 1
	fi
	log "installing$pkgs"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $pkgs >/dev/null || {
		echo "run.sh: apt-get install$pkgs failed" >&2; exit 1; }
	missing=$(need_cmds)
fi
[ -z "$missing" ] || { echo "run.sh: missing commands:$missing (apt-get install -y nginx wrk strace curl sqlite3)" >&2; exit 1; }

if [ "$BUILD" = 1 ] && [ -z "$SAGAD_BIN" ]; then
	log "building sagad (scripts/build.sh)"
	"$TOP/scripts/build.sh" || { echo "run.sh: build failed" >&2; exit 1; }
fi
SAGAD_BIN=${SAGAD_BIN:-${SAGAD:-$TOP/sagad}}
[ -x "$SAGAD_BIN" ] || { echo "run.sh: $SAGAD_BIN is not built (drop --no-build, or pass --sagad)" >&2; exit 1; }
if [ "$SYNC_DELAY_US" -gt 0 ] && [ ! -f "$TOP/tests/fault/faultvfs.so" ]; then
	make -C "$TOP" tests/fault/faultvfs.so >/dev/null || { echo "run.sh: cannot build tests/fault/faultvfs.so" >&2; exit 1; }
fi
"$SAGAD_BIN" --flows "$HERE/flows" --check >/dev/null || { echo "run.sh: bench/flows does not load" >&2; exit 1; }
case " $MODES " in *" kafka "*)
	KMOCK_BIN=${SAGAD_KAFKA_MOCK:-$(dirname "$SAGAD_BIN")/sagad-kafka-mock}
	[ -x "$KMOCK_BIN" ] || { echo "run.sh: mode kafka needs $KMOCK_BIN (built with sagad; or set SAGAD_KAFKA_MOCK)" >&2; exit 1; }
	/usr/bin/python3 -c 'import confluent_kafka' 2>/dev/null || { echo "run.sh: mode kafka needs python3-confluent-kafka (scripts/install-deps.sh)" >&2; exit 1; }
	"$SAGAD_BIN" --flows "$HERE/flows-kafka" --kafka-brokers 127.0.0.1:1 --check >/dev/null || { echo "run.sh: bench/flows-kafka does not load" >&2; exit 1; }
	;;
esac

port_free() { ! ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; }
for p in "$HAPPY_PORT" "$FAIL_PORT" "$SAGAD_PORT"; do
	port_free "$p" || { echo "run.sh: port $p is in use (set BENCH_HAPPY_PORT / BENCH_FAIL_PORT / BENCH_SAGAD_PORT)" >&2; exit 1; }
done
SAGA_URL="http://127.0.0.1:$SAGAD_PORT/v1/flows/apply/sagas"
SAGAD_BASE="http://127.0.0.1:$SAGAD_PORT"

# ---------------------------------------------------------------------------------------------
# Environment record
CLK_TCK=$(getconf CLK_TCK)
{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "host: nproc=$(nproc) kernel=$(uname -r) cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
	echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MiB total, " $7 " MiB available"}')"
	echo "db filesystem: $(df -T "$RUN" | awk 'NR == 2 {print $2 " on " $1}')"
	echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "sagad: $("$SAGAD_BIN" --version 2>&1 | head -1), tree $(git -C "$TOP" describe --always --dirty 2>/dev/null || echo no-git), binary $SAGAD_BIN sha256 $(sha256sum "$SAGAD_BIN" | cut -c1-12)"
	echo "sagad settings: shipped defaults (SQLite WAL, synchronous=FULL)${SAGAD_ARGS:+ + $SAGAD_ARGS}, --log-level warn"
	[ "$SYNC_DELAY_US" -gt 0 ] && echo "slow disk: every fsync $SYNC_DELAY_US us longer (tests/fault/faultvfs.so)"
	echo "nginx: $(nginx -v 2>&1 | sed 's/.*version: //'), worker_processes 1; wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}') -t1"
	echo "driver: wrk -t1 -cC --timeout 30s, bench/wrk/saga.lua, answer: $([ -n "$PREFER" ] && echo "Prefer: $PREFER" || echo "full saga object")"
	echo "settings: modes='$MODES' concs='$CONCS' duration=${DURATION}s warmup=${WARMUP}s fsync-run=${FSYNC_SECONDS}s ceiling=${CEIL_SECONDS}s prefill=${PREFILL} finished sagas, ${PREFILL_AGE_DAYS} days old"
} >"$OUT/env.txt"
cat "$OUT/env.txt"

# ---------------------------------------------------------------------------------------------
# Helpers
cpu_ticks() {   # PID...: utime+stime (clock ticks) summed over the processes (all threads)
	local p t=0 v
	for p in "$@"; do
		v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
		t=$((t + ${v:-0}))
	done
	echo "$t"
}
machine_ticks() { awk '/^cpu / {b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat; }
nginx_workers() { ps -o pid= --ppid "$NGINX_PID" 2>/dev/null | tr -d ' '; }
metrics() { curl -s --max-time 5 "$SAGAD_BASE/metrics"; }
metric() {   # NAME < metrics text
	awk -v n="sagad_$1" '$1 == n { print $2; f = 1 } END { if (!f) print 0 }'
}
bucket() {   # LE < metrics text: the loop-turn histogram's cumulative count at le="LE"
	awk -v n="sagad_loop_turn_seconds_bucket{le=\"$1\"}" '$1 == n { print $2; f = 1 } END { if (!f) print 0 }'
}
wait_drained() {   # until sagas_active == 0 (every saga started has ended), max 60 s
	local i
	for ((i = 0; i < 600; i++)); do
		[ "$(metrics | metric sagas_active)" = 0 ] && return 0
		sleep 0.1
	done
	return 1
}
rel() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { if (b + 0 > 0) printf f, a / b; else printf "null" }'; }

log_size() {   # size of the counting log once nginx has flushed its buffer (flush=200ms)
	local i s1=-1 s2 same=0
	for ((i = 0; i < 100; i++)); do
		s2=$(stat -c %s "$RUN/access.log" 2>/dev/null || echo 0)
		if [ "$s2" = "$s1" ]; then
			same=$((same + 1))
			[ "$same" -ge 3 ] && break
		else
			same=0
		fi
		s1=$s2
		sleep 0.2
	done
	echo "$s2"
}

# run_wrk LABEL SCRIPT CONC SECONDS URL [env...]: wrk -t1 under bash's time (the driver's own CPU).
# Sets W_REQ W_P50 W_P99 W_MAX W_DUR W_OK W_UNEXP W_FIRST W_ERRS W_CPU_PCT W_REAL
run_wrk() {
	local label=$1 script=$2 c=$3 s=$4 url=$5 f="$OUT/checks/wrk-$1.txt" tf="$RUN/time.$1" line
	shift 5
	{ TIMEFORMAT='%3R %3U %3S'; time env "$@" wrk -t1 -c"$c" -d"${s}s" --timeout 30s --latency \
		-s "$script" "$url" >"$f" 2>&1; } 2>"$tf"
	read -r W_REAL W_U W_S <"$tf"
	W_CPU_PCT=$(awk -v r="$W_REAL" -v u="$W_U" -v s="$W_S" 'BEGIN { printf "%.0f", (r > 0) ? 100 * (u + s) / r : 0 }')
	line=$(grep '^saga-latency-us:' "$f")
	W_P50=$(sed -n 's/.*p50=\([0-9]*\).*/\1/p' <<<"$line")
	W_P99=$(sed -n 's/.*p99=\([0-9]*\).*/\1/p' <<<"$line")
	W_MAX=$(sed -n 's/.*max=\([0-9]*\).*/\1/p' <<<"$line")
	W_REQ=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")
	W_DUR=$(sed -n 's/.*duration_us=\([0-9]*\).*/\1/p' <<<"$line")
	line=$(grep '^saga-check:' "$f")
	W_OK=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$line")
	W_UNEXP=$(sed -n 's/.*unexpected=\([0-9]*\).*/\1/p' <<<"$line")
	W_FIRST=$(sed -n 's/.*first=\(.*\)/\1/p' <<<"$line")
	line=$(grep '^saga-errors:' "$f")
	W_ERRS=$(awk '{ s = 0; for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] != "status") s += kv[2] } print s }' <<<"$line")
	: "${W_REQ:=0}" "${W_P50:=0}" "${W_P99:=0}" "${W_MAX:=0}" "${W_DUR:=1}" "${W_OK:=0}" "${W_UNEXP:=0}" "${W_ERRS:=0}"
	[ -n "$line" ] || { W_ERRS=1; echo "wrk $label produced no summary:"; tail -5 "$f"; }
}

# ---------------------------------------------------------------------------------------------
# 2. nginx participants
log "starting nginx participants (127.0.0.1:$HAPPY_PORT happy, 127.0.0.1:$FAIL_PORT fail)"
sed -e "s#@RUN@#$RUN#g" -e "s#@HAPPY_PORT@#$HAPPY_PORT#g" -e "s#@FAIL_PORT@#$FAIL_PORT#g" \
	-e "s#@ACCESS_LOG@#access_log $RUN/access.log counting buffer=64k flush=200ms;#" \
	"$HERE/nginx.conf.in" >"$RUN/nginx.conf"
nginx -p "$RUN" -c "$RUN/nginx.conf" -e "$RUN/nginx-error.log" >"$RUN/nginx.out" 2>&1 &
NGINX_PID=$!
for ((i = 0; i < 100; i++)); do
	! port_free "$HAPPY_PORT" && ! port_free "$FAIL_PORT" && break
	kill -0 "$NGINX_PID" 2>/dev/null || break
	sleep 0.1
done
if port_free "$HAPPY_PORT" || port_free "$FAIL_PORT"; then
	echo "run.sh: nginx did not start:"; cat "$RUN/nginx.out" "$RUN/nginx-error.log" 2>/dev/null; exit 1
fi

# 3. the participants' ceiling (baseline of this run)
declare -A CEIL_RPS=() CEIL_P50=()
ceiling() {   # PHASE
	local c ng0 ng1 rps
	for c in $CONCS; do
		ng0=$(cpu_ticks $(nginx_workers))
		run_wrk "ceiling-$1-c$c" "$HERE/wrk/post.lua" "$c" "$CEIL_SECONDS" "http://127.0.0.1:$HAPPY_PORT/classes"
		ng1=$(cpu_ticks $(nginx_workers))
		rps=$(awk -v n="$W_REQ" -v d="$W_DUR" 'BEGIN { printf "%.0f", n / (d / 1e6) }')
		printf '   ceiling %-6s c=%-3s %8s req/s  p50 %6.3f ms  p99 %6.3f ms  wrk CPU %s%%  nginx CPU %s%%\n' \
			"$1" "$c" "$rps" "$(rel "$W_P50" 1000 %.3f)" "$(rel "$W_P99" 1000 %.3f)" "$W_CPU_PCT" \
			"$(awk -v t=$((ng1 - ng0)) -v h="$CLK_TCK" -v r="$W_REAL" 'BEGIN { printf "%.0f", 100 * t / h / r }')"
		printf '{"phase":"%s","concurrency":%s,"requests":%s,"duration_s":%s,"req_per_s":%s,"p50_ms":%s,"p99_ms":%s,"wrk_cpu_pct":%s,"nginx_cpu_ms":%s,"errors":%s}\n' \
			"$1" "$c" "$W_REQ" "$(rel "$W_DUR" 1e6 %.3f)" "$rps" "$(rel "$W_P50" 1000 %.3f)" "$(rel "$W_P99" 1000 %.3f)" \
			"$W_CPU_PCT" $(((ng1 - ng0) * 1000 / CLK_TCK)) "$W_ERRS" >>"$OUT/ceiling.jsonl"
		[ "$W_ERRS" = 0 ] && [ "$W_REQ" -gt 0 ] || fail "ceiling $1 c=$c: $W_REQ requests, $W_ERRS socket errors"
		if [ -n "${CEIL_RPS[$c]:-}" ]; then   # mean of the before and after measurements
			CEIL_RPS[$c]=$(awk -v a="${CEIL_RPS[$c]}" -v b="$rps" 'BEGIN { printf "%.0f", (a + b) / 2 }')
			CEIL_P50[$c]=$(awk -v a="${CEIL_P50[$c]}" -v b="$W_P50" 'BEGIN { printf "%.0f", (a + b) / 2 }')
		else
			CEIL_RPS[$c]=$rps CEIL_P50[$c]=$W_P50
		fi
	done
}
log "participants' ceiling, before (wrk -t1, POST /classes, ${CEIL_SECONDS}s each)"
ceiling before

# ---------------------------------------------------------------------------------------------
# 4. sagad runs
# Kafka mode: the mock cluster (once for the whole bench) and the echo participant (per run).
KAFKA_ARGS=(-X fetch.wait.max.ms=10 -X session.timeout.ms=6000 -X heartbeat.interval.ms=500)
KBOOT=""
start_kafka_mock() {
	local i
	[ -n "$KBOOT" ] && return 0
	rm -f "$RUN/kafka.bootstrap"
	"$KMOCK_BIN" --topic bench-delivery-commands:4 --topic bench-delivery-events:4 \
		--bootstrap-file "$RUN/kafka.bootstrap" >"$OUT/checks/kafka-mock.log" 2>&1 </dev/null &
	KMOCK_PID=$!
	for ((i = 0; i < 100; i++)); do
		[ -s "$RUN/kafka.bootstrap" ] && { read -r KBOOT <"$RUN/kafka.bootstrap"; return 0; }
		kill -0 "$KMOCK_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "sagad-kafka-mock did not start:"; tail -5 "$OUT/checks/kafka-mock.log"
	return 1
}
start_echo() {   # LABEL: bench/kafka_echo.py, ready when its consumer has its partitions
	local i
	rm -f "$RUN/echo-$1.count"
	/usr/bin/python3 "$HERE/kafka_echo.py" --bootstrap "$KBOOT" --count-file "$RUN/echo-$1.count" \
		"${KAFKA_ARGS[@]}" >"$OUT/checks/echo-$1.log" 2>&1 </dev/null &
	ECHO_PID=$!
	for ((i = 0; i < 100; i++)); do
		grep -q '^ready' "$OUT/checks/echo-$1.log" 2>/dev/null && return 0
		kill -0 "$ECHO_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "kafka_echo.py did not start:"; tail -5 "$OUT/checks/echo-$1.log"
	return 1
}
start_sagad() {   # MODE DB
	local parts=http://127.0.0.1:$HAPPY_PORT i flows=$HERE/flows kargs=() envs=()
	[ "$SYNC_DELAY_US" -gt 0 ] && envs=(LD_PRELOAD="$TOP/tests/fault/faultvfs.so" FAULTVFS_SYNC_DELAY_US="$SYNC_DELAY_US")
	[ "$1" = fail ] && parts=http://127.0.0.1:$FAIL_PORT
	[ "$1" = kafka ] && { flows=$HERE/flows-kafka; kargs=(--kafka-brokers "$KBOOT" "${KAFKA_ARGS[@]}"); }
	# shellcheck disable=SC2086
	env "${envs[@]}" PARTICIPANTS=$parts "$SAGAD_BIN" --flows "$flows" "${kargs[@]}" --db "$2" --listen "127.0.0.1:$SAGAD_PORT" \
		--log-level warn $SAGAD_ARGS >>"$OUT/checks/sagad.log" 2>&1 </dev/null &
	SAGAD_PID=$!
	for ((i = 0; i < 150; i++)); do
		kill -0 "$SAGAD_PID" 2>/dev/null || break
		[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$SAGAD_BASE/readyz")" = 200 ] && return 0
		sleep 0.1
	done
	echo "sagad did not become ready:"; tail -20 "$OUT/checks/sagad.log"
	return 1
}

# check_log FILE MODE N CONC: the counting log has exactly the calls of N sagas (awk).
check_log() {
	local file=$1 mode=$2 n=$3 c=$4 port=$HAPPY_PORT seq
	if [ "$mode" = happy ]; then
		seq="/classes 200,/payments 200,/deliveries 200"
	elif [ "$mode" = kafka ]; then
		seq="/classes 200,/payments 200"   # ship goes over Kafka (checked with kafka_echo's count)
	else
		port=$FAIL_PORT
		seq="/classes 200,/payments 200,/deliveries 500,/payments/cancel 200,/classes/cancel 200"
	fi
	# strict order (the exact per-saga sequence, compensations in reverse order) only at C=1
	awk -v port="$port" -v n="$n" -v seq="$seq" -v strict="$([ "$c" = 1 ] && echo 1 || echo 0)" '
		BEGIN { k = split(seq, s, ","); for (i = 1; i <= k; i++) want[port " POST " s[i]] = n }
		{
			key = $1 " " $2 " " $3 " " $4; got[key]++
			if (strict && !bad_order) {
				e = port " POST " s[(NR - 1) % k + 1]
				if (key != e) bad_order = "line " NR " is \"" key "\", expected \"" e "\""
			}
		}
		END {
			for (key in want) if (got[key] != want[key]) { printf "%s: served %d, expected %d\n", key, got[key], want[key]; bad = 1 }
			for (key in got) if (!(key in want)) { printf "%s: served %d, expected 0\n", key, got[key]; bad = 1 }
			if (bad_order != "") { print "order: " bad_order; bad = 1 }
			printf "%d requests for %d sagas (%.3f per saga, expected %d)%s\n", NR, n, n ? NR / n : 0, k, strict ? ", strict order" : ""
			exit bad
		}' "$file"
}

# --prefill: one template database with PREFILL finished sagas, copied for every run. The rows
# are copies of one real happy saga (sagas, saga_steps, saga_history), saga i created and ended
# (PREFILL - i) ms before the template minus PREFILL_AGE_DAYS days, under a ULID of that time
# (10 Crockford base32 characters of the milliseconds, 'PF' and 14 digits of i) and shard 1,
# which marks them for the checks (sagad writes shard 0).
if [ "$PREFILL" -gt 0 ]; then
	log "prefilling a store with $PREFILL finished sagas (${PREFILL_AGE_DAYS} days old)"
	pdb="$RUN/prefill.db"
	rm -f "$pdb" "$pdb-wal" "$pdb-shm"
	start_sagad happy "$pdb" || { echo "run.sh: sagad did not start for the prefill"; exit 1; }
	tpl=$(curl -s --max-time 10 -H 'Content-Type: application/json' -d '{"studentId":"s-1","classId":"c-42","amount":100}' \
		"$SAGA_URL" | sed -n 's/^{"id":"\([0-9A-Z]*\)".*/\1/p')
	stop_pid "$SAGAD_PID" TERM 15; SAGAD_PID=""
	[ -n "$tpl" ] || { echo "run.sh: the template saga for the prefill did not run"; exit 1; }
	age=$((PREFILL_AGE_DAYS * 86400000))
	t_pre=$SECONDS
	sqlite3 "$pdb" >/dev/null <<-SQL || { echo "run.sh: the prefill failed"; exit 1; }
		PRAGMA synchronous = OFF;
		PRAGMA foreign_keys = ON;
		PRAGMA cache_size = -262144;
		BEGIN;
		CREATE TEMP TABLE n AS WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $PREFILL)
			SELECT i, (SELECT created_at FROM sagas WHERE id = '$tpl') - $age - ($PREFILL - i) AS ms FROM c;
		CREATE TEMP TABLE ids AS SELECT i, ms, (SELECT group_concat(substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ',
			((n.ms >> (5 * (9 - k))) & 31) + 1, 1), '') FROM (WITH RECURSIVE d(k) AS (SELECT 0 UNION ALL
			SELECT k + 1 FROM d WHERE k < 9) SELECT k FROM d ORDER BY k)) || 'PF' || printf('%014d', i) AS id FROM n;
		INSERT INTO sagas SELECT ids.id, 1, owner_epoch, flow, flow_version, status, cursor, input, output, error,
			NULL, NULL, NULL, cancel_requested, ids.ms, ids.ms + (updated_at - created_at), deadline_at
			FROM ids, sagas t WHERE t.id = '$tpl' ORDER BY ids.i;
		CREATE TEMP TABLE t0 AS SELECT created_at AS c0 FROM sagas WHERE id = '$tpl';
		INSERT INTO saga_steps SELECT ids.id, t.idx, t.name, t.state, t.attempt, t.comp_attempt, t.response,
			t.error, ids.ms + (t.updated_at - t0.c0), t.maybe_applied FROM ids, saga_steps t, t0
			WHERE t.saga_id = '$tpl' ORDER BY ids.i, t.idx;
		INSERT INTO saga_history (saga_id, step, step_name, phase, attempt, event, request, status, response, error,
			started_at, ended_at) SELECT ids.id, t.step, t.step_name, t.phase, t.attempt, t.event, t.request,
			t.status, t.response, t.error, ids.ms + (t.started_at - t0.c0), ids.ms + (t.ended_at - t0.c0)
			FROM ids, saga_history t, t0 WHERE t.saga_id = '$tpl' ORDER BY ids.i, t.seq;
		DELETE FROM sagas WHERE id = '$tpl';
		COMMIT;
		PRAGMA wal_checkpoint(TRUNCATE);
	SQL
	log "prefilled in $((SECONDS - t_pre)) s: $(sqlite3 "$pdb" "SELECT count(*) FROM sagas") sagas, $(sqlite3 "$pdb" "SELECT count(*) FROM saga_history") history rows, $(du -m "$pdb" | cut -f1) MiB"
fi

declare -A JSON=() R_SPS=() R_P50=() ROW_A=() ROW_B=()
LABELS=()
for mode in $MODES; do
	expect=completed
	[ "$mode" = fail ] && expect=compensated
	for c in $CONCS; do
		label="$mode-c$c"
		log "$label: fresh sagad, warm-up ${WARMUP}s, timed ${DURATION}s, fsync count ${FSYNC_SECONDS}s"
		db="$RUN/sagad-$label.db"
		rm -f "$db" "$db-wal" "$db-shm"
		if [ "$PREFILL" -gt 0 ]; then
			# synced: else sagad's first checkpoint fsyncs the whole copy (a 1 s loop turn)
			cp "$RUN/prefill.db" "$db" && sync "$db" || { fail "$label: cannot copy the prefilled database"; continue; }
		fi
		log0=$(log_size)
		if [ "$mode" = kafka ] && ! { start_kafka_mock && start_echo "$label"; }; then
			fail "$label: the Kafka mock or participant did not start"
			continue
		fi
		if ! start_sagad "$mode" "$db"; then
			fail "$label: sagad did not start"
			stop_pid "$SAGAD_PID"; SAGAD_PID=""
			continue
		fi
		wrk_total=0 wrk_unexp=0 wrk_errs=0 first=""
		if [ "$WARMUP" -gt 0 ]; then
			run_wrk "$label-warmup" "$HERE/wrk/saga.lua" "$c" "$WARMUP" "$SAGA_URL" SAGA_EXPECT=$expect SAGA_PREFER="$PREFER"
			wrk_total=$((wrk_total + W_REQ)) wrk_unexp=$((wrk_unexp + W_UNEXP)) wrk_errs=$((wrk_errs + W_ERRS))
			[ "$W_FIRST" != "-" ] && first=${first:-$W_FIRST}
			wait_drained || fail "$label: sagas still active 60 s after the warm-up"
		fi

		# --- timed run
		m0=$(metrics); s0=$(cpu_ticks "$SAGAD_PID"); n0=$(cpu_ticks $(nginx_workers)); read -r mb0 mt0 < <(machine_ticks)
		run_wrk "$label" "$HERE/wrk/saga.lua" "$c" "$DURATION" "$SAGA_URL" SAGA_EXPECT=$expect SAGA_PREFER="$PREFER"
		wrk_total=$((wrk_total + W_REQ)) wrk_unexp=$((wrk_unexp + W_UNEXP)) wrk_errs=$((wrk_errs + W_ERRS))
		[ "$W_FIRST" != "-" ] && first=${first:-$W_FIRST}
		wait_drained || fail "$label: sagas still active 60 s after the timed run"
		m1=$(metrics); s1=$(cpu_ticks "$SAGAD_PID"); n1=$(cpu_ticks $(nginx_workers)); read -r mb1 mt1 < <(machine_ticks)
		T_REQ=$W_REQ T_DUR=$W_DUR T_P50=$W_P50 T_P99=$W_P99 T_MAX=$W_MAX T_CPU=$W_CPU_PCT T_REAL=$W_REAL
		fin=$(( $(metric sagas_completed_total <<<"$m1") + $(metric sagas_compensated_total <<<"$m1") + $(metric sagas_failed_total <<<"$m1")
			- $(metric sagas_completed_total <<<"$m0") - $(metric sagas_compensated_total <<<"$m0") - $(metric sagas_failed_total <<<"$m0") ))
		commits=$(( $(metric store_commits_total <<<"$m1") - $(metric store_commits_total <<<"$m0") ))
		writes=$(( $(metric store_writes_total <<<"$m1") - $(metric store_writes_total <<<"$m0") ))
		dispatches=$(( $(metric dispatches_total <<<"$m1") - $(metric dispatches_total <<<"$m0") ))
		walsyncs=$(( $(metric store_wal_syncs_total <<<"$m1") - $(metric store_wal_syncs_total <<<"$m0") ))

		# --- fsync count: a separate short run under strace (never part of the timed run)
		fsyncs=null fsync_fin=0 fsync_commits=0 fsync_walsyncs=0
		if [ "$FSYNC_SECONDS" -gt 0 ]; then
			m2=$(metrics)
			strace -f -c -e trace=fsync,fdatasync -o "$RUN/strace-$label.txt" -p "$SAGAD_PID" 2>"$RUN/strace-$label.err" &
			STRACE_PID=$!
			traced=0
			for ((i = 0; i < 50; i++)); do
				[ "$(awk '/^TracerPid:/ {print $2}' "/proc/$SAGAD_PID/status")" != 0 ] && { traced=1; break; }
				kill -0 "$STRACE_PID" 2>/dev/null || break
				sleep 0.1
			done
			if [ "$traced" = 0 ]; then
				echo "   WARNING: strace could not attach to sagad (ptrace not permitted?): no fsync count"
				sed 's/^/   strace: /' "$RUN/strace-$label.err" | head -3
			fi
			run_wrk "$label-strace" "$HERE/wrk/saga.lua" "$c" "$FSYNC_SECONDS" "$SAGA_URL" SAGA_EXPECT=$expect SAGA_PREFER="$PREFER"
			wrk_total=$((wrk_total + W_REQ)) wrk_unexp=$((wrk_unexp + W_UNEXP)) wrk_errs=$((wrk_errs + W_ERRS))
			[ "$W_FIRST" != "-" ] && first=${first:-$W_FIRST}
			wait_drained || fail "$label: sagas still active 60 s after the strace run"
			stop_pid "$STRACE_PID" INT 10; STRACE_PID=""
			m3=$(metrics)
			fsync_fin=$(( $(metric sagas_completed_total <<<"$m3") + $(metric sagas_compensated_total <<<"$m3")
				- $(metric sagas_completed_total <<<"$m2") - $(metric sagas_compensated_total <<<"$m2") ))
			fsync_commits=$(( $(metric store_commits_total <<<"$m3") - $(metric store_commits_total <<<"$m2") ))
			fsync_walsyncs=$(( $(metric store_wal_syncs_total <<<"$m3") - $(metric store_wal_syncs_total <<<"$m2") ))
			[ "$traced" = 1 ] && fsyncs=$(awk '$NF == "fsync" || $NF == "fdatasync" { s += $4 } END { print s + 0 }' "$RUN/strace-$label.txt")
			cp "$RUN/strace-$label.txt" "$OUT/checks/" 2>/dev/null
		fi
		hwm_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$SAGAD_PID/status")
		stop_pid "$SAGAD_PID" TERM 15; SAGAD_PID=""
		if [ "$mode" = kafka ]; then
			stop_pid "$ECHO_PID" TERM 15; ECHO_PID=""
			cp "$RUN/echo-$label.count" "$OUT/checks/" 2>/dev/null
		fi
		log1=$(log_size)   # this run's calls: the log from log0 to log1
		tail -c +$((log0 + 1)) "$RUN/access.log" | head -c $((log1 - log0)) >"$RUN/access-$label.log"

		# --- correctness
		ok=1
		# (prefilled sagas are in shard 1: not this run's)
		sqlite3 "$db" "SELECT status, count(*) FROM sagas WHERE shard = 0 GROUP BY status" >"$OUT/checks/db-$label.txt" 2>&1 || { fail "$label: sqlite3 on $db failed"; ok=0; }
		prefill_left=0
		[ "$PREFILL" -gt 0 ] && prefill_left=$(sqlite3 "$db" "SELECT count(*) FROM sagas WHERE shard = 1")
		n_db=$(awk -F'|' '{ s += $2 } END { print s + 0 }' "$OUT/checks/db-$label.txt")
		n_exp=$(awk -F'|' -v e="$expect" '$1 == e { print $2 + 0 }' "$OUT/checks/db-$label.txt")
		n_exp=${n_exp:-0}
		if [ "$n_db" != "$n_exp" ]; then
			fail "$label: the store has sagas that did not end $expect: $(tr '\n' ' ' <"$OUT/checks/db-$label.txt")"; ok=0
		fi
		# every answered saga is in the store; at most C per wrk run were in flight when wrk stopped
		nruns=$(( ($WARMUP > 0) + 1 + ($FSYNC_SECONDS > 0) ))
		if [ "$n_db" -lt "$wrk_total" ] || [ "$n_db" -gt $((wrk_total + nruns * c)) ]; then
			fail "$label: $n_db sagas in the store for $wrk_total answers (at most $((nruns * c)) more expected)"; ok=0
		fi
		if [ "$wrk_unexp" != 0 ] || [ "$wrk_errs" != 0 ]; then
			fail "$label: $wrk_unexp unexpected answers (first: $first), $wrk_errs socket errors"; ok=0
		fi
		if ! check_log "$RUN/access-$label.log" "$mode" "$n_db" "$c" >"$OUT/checks/log-$label.txt"; then
			fail "$label: participant calls do not match $n_db sagas: $(head -5 "$OUT/checks/log-$label.txt" | tr '\n' ';')"; ok=0
		fi
		if [ "$mode" = kafka ]; then   # one command per saga, each answered, none twice
			kc=$(sed -n 's/.*commands=\([0-9]*\).*/\1/p' "$RUN/echo-$label.count" 2>/dev/null)
			kline="$(cat "$RUN/echo-$label.count" 2>/dev/null)"
			if [ "$kline" != "commands=$n_db replies=$n_db duplicates=0 unflushed=0 errors=0" ]; then
				fail "$label: Kafka participant: '${kline:-no count file}' for $n_db sagas (commands=${kc:-?})"; ok=0
			fi
		fi
		[ "$T_REQ" -gt 0 ] || { fail "$label: the timed run answered no saga"; ok=0; }
		[ "$KEEP" = 1 ] || rm -f "$db" "$db-wal" "$db-shm" "$RUN/access-$label.log"

		# --- figures (the ratios to the ceiling are computed at the end, after its second measurement)
		sps=$(awk -v n="$T_REQ" -v d="$T_DUR" 'BEGIN { printf "%.0f", n / (d / 1e6) }')
		# loop turns over 10 / 50 ms in the timed run (histogram deltas), the longest since start
		t10=$(( $(bucket 0.01 <<<"$m0") - $(bucket 0.01 <<<"$m1") + $(metric loop_turn_seconds_count <<<"$m1") - $(metric loop_turn_seconds_count <<<"$m0") ))
		t50=$(( $(bucket 0.05 <<<"$m0") - $(bucket 0.05 <<<"$m1") + $(metric loop_turn_seconds_count <<<"$m1") - $(metric loop_turn_seconds_count <<<"$m0") ))
		tmax=$(awk -v v="$(metric loop_turn_seconds_max <<<"$m1")" 'BEGIN { printf "%.1f", v * 1000 }')
		# the longest turn of the timed run, as the histogram bound it is under
		tlong=">1000"
		for le in 0.001 0.005 0.01 0.05 0.1 0.5 1; do
			if [ $(( $(bucket $le <<<"$m1") - $(bucket $le <<<"$m0") )) = $(( $(metric loop_turn_seconds_count <<<"$m1") - $(metric loop_turn_seconds_count <<<"$m0") )) ]; then
				tlong="<=$(awk -v v=$le 'BEGIN { printf "%g", v * 1000 }')"; break
			fi
		done
		sagad_ms=$(awk -v t=$((s1 - s0)) -v h="$CLK_TCK" -v n="$fin" 'BEGIN { if (n > 0) printf "%.3f", 1000 * t / h / n; else print "null" }')
		sagad_pct=$(awk -v t=$((s1 - s0)) -v h="$CLK_TCK" -v r="$T_REAL" 'BEGIN { printf "%.0f", 100 * t / h / r }')
		nginx_pct=$(awk -v t=$((n1 - n0)) -v h="$CLK_TCK" -v r="$T_REAL" 'BEGIN { printf "%.0f", 100 * t / h / r }')
		busy_pct=$(awk -v b=$((mb1 - mb0)) -v t=$((mt1 - mt0)) 'BEGIN { printf "%.0f", (t > 0) ? 100 * b / t : 0 }')
		cps=$(rel "$commits" "$fin"); wps=$(rel "$writes" "$fin" %.1f)
		# fsyncs per saga = fsyncs per commit (counted under strace, which slows sagad and so
		# changes how many sagas share a commit) x commits per saga (exact, from the timed run).
		# With the WAL sync thread (sagad_store_wal_syncs_total counts its syncs) several commits
		# share a sync: then fsyncs per WAL sync (strace; > 1 by the checkpoints' syncs) x WAL
		# syncs per saga (exact, timed run).
		fpc=null fps=null fps_strace=null
		if [ "$fsyncs" != null ]; then
			fpc=$(rel "$fsyncs" "$fsync_commits" %.3f)
			fps_strace=$(rel "$fsyncs" "$fsync_fin")
			if [ "$walsyncs" -gt 0 ] && [ "$fsync_walsyncs" -gt 0 ]; then
				fps=$(awk -v w="$walsyncs" -v n="$fin" -v f="$fsyncs" -v s="$fsync_walsyncs" 'BEGIN { if (n > 0) printf "%.2f", w / n * f / s; else print "null" }')
			elif [ "$fpc" != null ]; then
				fps=$(awk -v a="$commits" -v n="$fin" -v f="$fpc" 'BEGIN { if (n > 0) printf "%.2f", a / n * f; else print "null" }')
			fi
		fi
		wsps=$(rel "$walsyncs" "$fin")
		rss=$(awk -v k="$hwm_kb" 'BEGIN { printf "%.1f", k / 1024 }')
		JSON[$label]=$(printf '"mode":"%s","concurrency":%s,"expected":"%s","duration_s":%s,"sagas_timed":%s,"sagas_per_s":%s,"p50_ms":%s,"p99_ms":%s,"max_ms":%s,"sagad_cpu_ms_per_saga":%s,"sagad_cpu_pct":%s,"driver_cpu_pct":%s,"nginx_cpu_pct":%s,"machine_busy_pct":%s,"finished_in_window":%s,"commits_per_saga":%s,"rows_per_saga":%s,"dispatches_per_saga":%s,"fsyncs":%s,"fsync_run_sagas":%s,"fsync_run_commits":%s,"fsyncs_per_commit":%s,"fsyncs_per_saga_in_strace_run":%s,"fsyncs_per_saga":%s,"wal_syncs":%s,"wal_syncs_per_saga":%s,"fsync_run_wal_syncs":%s,"peak_rss_mib":%s,"loop_turns_over_10ms":%s,"loop_turns_over_50ms":%s,"loop_turn_max_ms_since_start":%s,"loop_turn_longest_ms_in_run":"%s","prefilled":%s,"prefilled_left":%s,"sagas_in_store":%s,"answers":%s,"unexpected":%s,"socket_errors":%s,"checks_ok":%s' \
			"$mode" "$c" "$expect" "$(rel "$T_DUR" 1e6 %.3f)" "$T_REQ" "$sps" "$(rel "$T_P50" 1000 %.3f)" "$(rel "$T_P99" 1000 %.3f)" "$(rel "$T_MAX" 1000 %.3f)" \
			"$sagad_ms" "$sagad_pct" "$T_CPU" "$nginx_pct" "$busy_pct" "$fin" "$cps" "$wps" "$(rel "$dispatches" "$fin")" \
			"$fsyncs" "$fsync_fin" "$fsync_commits" "$fpc" "$fps_strace" "$fps" "$walsyncs" "$wsps" "$fsync_walsyncs" "$rss" "$t10" "$t50" "$tmax" "$tlong" "$PREFILL" "$prefill_left" "$n_db" "$wrk_total" "$wrk_unexp" "$wrk_errs" "$([ $ok = 1 ] && echo true || echo false)")
		verdict="ok $n_exp/$n_db, 0"
		[ "$ok" = 1 ] || verdict="**FAIL** $n_exp/$n_db, $wrk_unexp"
		R_SPS[$label]=$sps R_P50[$label]=$T_P50
		ROW_A[$label]="| $mode | $c | $sps | $(rel "$T_P50" 1000) | $(rel "$T_P99" 1000) | $sagad_ms | $sagad_pct% | $T_CPU% | $cps | $wps | $fps | $rss | $t50 ($tlong) |"
		ROW_B[$label]=" $verdict |"
		LABELS+=("$label")
		printf '   %s: %s sagas/s, p50 %s ms, p99 %s ms, sagad %s ms/saga (%s%% CPU), wrk %s%% CPU, nginx %s%%, machine %s%% busy, %s commits, %s rows, %s fsyncs per saga, RSS %s MiB, loop turns >10 ms: %s, >50 ms: %s (longest %s ms; since start %s ms)%s: %s\n' \
			"$label" "$sps" "$(rel "$T_P50" 1000)" "$(rel "$T_P99" 1000)" "$sagad_ms" "$sagad_pct" "$T_CPU" "$nginx_pct" "$busy_pct" "$cps" "$wps" "$fps" "$rss" "$t10" "$t50" "$tlong" "$tmax" \
			"$([ "$PREFILL" -gt 0 ] && echo ", prefilled sagas left $prefill_left of $PREFILL")" \
			"$([ $ok = 1 ] && echo "checks ok ($n_db sagas, $(tail -1 "$OUT/checks/log-$label.txt"))" || echo CHECKS FAILED)"
	done
done

log "participants' ceiling, after"
ceiling after
ROWS=()
for label in "${LABELS[@]}"; do
	c=${label##*-c}
	x_thr=$(rel "${R_SPS[$label]}" "${CEIL_RPS[$c]:-0}" %.3f)
	x_p50=$(rel "${R_P50[$label]}" "${CEIL_P50[$c]:-0}" %.1f)
	printf '{%s,"ceiling_req_per_s":%s,"ceiling_p50_ms":%s,"sagas_per_s_over_ceiling":%s,"p50_over_ceiling_p50":%s}\n' \
		"${JSON[$label]}" "${CEIL_RPS[$c]:-null}" "$(rel "${CEIL_P50[$c]:-0}" 1000 %.3f)" "$x_thr" "$x_p50" >>"$OUT/results.jsonl"
	ROWS+=("${ROW_A[$label]} $x_thr | $x_p50 |${ROW_B[$label]}")
done

# ---------------------------------------------------------------------------------------------
# 5. summary
{
	echo "# sagad benchmark, $(sed -n 's/^date: //p' "$OUT/env.txt")"
	echo
	sed 's/^/    /' "$OUT/env.txt"
	echo
	echo "Participants' ceiling (nginx alone, wrk -t1, POST /classes; before and after the sagad runs):"
	echo
	echo "| clients | before req/s | after req/s | p50 ms (before/after) | p99 ms (before/after) |"
	echo "|---:|---:|---:|---:|---:|"
	for c in $CONCS; do
		awk -v c="$c" -F'[:,]' '
			{ for (i = 1; i < NF; i += 2) { gsub(/[{}"]/, "", $i); gsub(/[{}"]/, "", $(i + 1)); v[$i] = $(i + 1) } }
			v["concurrency"] == c && v["phase"] == "before" { b = v["req_per_s"]; b50 = v["p50_ms"]; b99 = v["p99_ms"] }
			v["concurrency"] == c && v["phase"] == "after" { a = v["req_per_s"]; a50 = v["p50_ms"]; a99 = v["p99_ms"] }
			END { printf "| %s | %s | %s | %s / %s | %s / %s |\n", c, b, a, b50, a50, b99, a99 }' "$OUT/ceiling.jsonl"
	done
	echo
	echo "sagad, apply saga (happy: 3 calls -> completed; fail: 5 calls -> compensated; kafka: 2 calls + a Kafka request/reply -> completed), ${DURATION}s per run$([ "$PREFILL" -gt 0 ] && echo ", each on a store prefilled with $PREFILL finished sagas ($PREFILL_AGE_DAYS days old)"):"
	echo
	echo "| mode | clients | sagas/s | p50 ms | p99 ms | sagad CPU ms/saga | sagad CPU | driver CPU | commits/saga | rows/saga | fsyncs/saga | peak RSS MiB | loop turns >50 ms (longest, ms) | sagas/s ÷ ceiling | p50 ÷ ceiling p50 | ok/sagas, unexpected |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	printf '%s\n' "${ROWS[@]}"
	echo
	if [ "$FAILS" = 0 ]; then
		echo "Checks: every saga ended as expected and the participants saw exactly the calls they should (all runs)."
	else
		echo "Checks: **$FAILS FAILED**:"
		sed 's/^/- /' "$OUT/checks/failures.txt"
	fi
	echo
	echo "Load while running: loadavg $(sed -n 's/^loadavg at start: //p' "$OUT/env.txt") at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end; 'machine_busy_pct' in results.jsonl is the busy share of all $(nproc) cores during each timed run (other processes included)."
	echo
	echo "Wall time of the whole bench: $((SECONDS / 60)) min $((SECONDS % 60)) s."
	echo
	echo "CPU % is of one core over the timed run; 'ceiling' is the mean of the before and after ceiling at the same number of clients."
	echo "Raw numbers: results.jsonl, ceiling.jsonl; wrk outputs, strace tables, per-run checks: checks/."
} >"$OUT/summary.md"
echo
cat "$OUT/summary.md"
if [ "$FAILS" = 0 ]; then
	log "bench: all checks passed; results in $OUT"
	exit 0
fi
log "bench: $FAILS check(s) failed; results in $OUT"
exit 1
