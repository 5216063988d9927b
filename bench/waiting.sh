#!/usr/bin/env bash
# bench/waiting.sh -- memory of sagas that wait on a reply: how much RSS sagad needs to hold N
# sagas at once, each waiting on a Kafka reply that does not come during the bench.
#
#   bench/waiting.sh [--sagas N] [--clients C] [--max-seconds S] [--max-rss-mib M] [--restart]
#                    [--no-build] [--sagad PATH] [--out DIR]
#
# What it does:
#   1. builds sagad (scripts/build.sh; --no-build or --sagad PATH to use a binary as it is);
#   2. starts sagad-kafka-mock (librdkafka's mock cluster) and a fresh sagad (shipped settings:
#      WAL, synchronous=FULL; flow bench/flows-wait/wait.yaml: one Kafka step whose reply
#      deadline is 30 minutes and whose commands nobody consumes);
#   3. starts N sagas (default 100000) with wrk -t1 -cC (default 32) and bench/wrk/start.lua
#      (Prefer: respond-async, return=minimal: 202 once the start is durable), at most S seconds
#      (default 300);
#   4. waits until every command left the outbox (acknowledged by the mock broker), then reads
#      sagad's VmRSS and VmHWM (/proc) and checks: the store holds only running sagas, as many
#      as sagad_sagas_active, at least N, and the outbox is empty;
#   5. --restart: stops sagad (SIGTERM), starts it again on the same database and measures the
#      recovery (every waiting saga loaded back into memory and its command produced again with
#      the same idempotency key) and the RSS after it;
#   6. prints a summary (also $OUT/summary.md; default bench/results/waiting-<UTC time>/).
# Exit status 0 when every check passed and the peak RSS is at most M MiB (default 1024).
# Environment: BENCH_SAGAD_PORT (default 17720).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOP="$(cd "$HERE/.." && pwd)"
N=100000
CLIENTS=32
MAXSEC=300
MAX_RSS=1024
RESTART=0
BUILD=1
SAGAD_BIN=""
OUT=""
PORT=${BENCH_SAGAD_PORT:-17720}

usage() { sed -n '3,/^set -uo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case $1 in
	--sagas) N=$2; shift ;;
	--clients) CLIENTS=$2; shift ;;
	--max-seconds) MAXSEC=$2; shift ;;
	--max-rss-mib) MAX_RSS=$2; shift ;;
	--restart) RESTART=1 ;;
	--no-build) BUILD=0 ;;
	--sagad) SAGAD_BIN=$2; shift ;;
	--out) OUT=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "waiting.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
for c in wrk curl sqlite3; do
	command -v "$c" >/dev/null || { echo "waiting.sh: needs $c (apt-get install -y wrk curl sqlite3)" >&2; exit 1; }
done
if [ "$BUILD" = 1 ] && [ -z "$SAGAD_BIN" ]; then
	"$TOP/scripts/build.sh" >/dev/null || { echo "waiting.sh: build failed" >&2; exit 1; }
fi
SAGAD_BIN=${SAGAD_BIN:-$TOP/sagad}
KMOCK_BIN=${SAGAD_KAFKA_MOCK:-$(dirname "$SAGAD_BIN")/sagad-kafka-mock}
[ -x "$SAGAD_BIN" ] && [ -x "$KMOCK_BIN" ] || { echo "waiting.sh: $SAGAD_BIN or $KMOCK_BIN is not built" >&2; exit 1; }
: "${OUT:=$HERE/results/waiting-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT" || exit 1
OUT="$(cd "$OUT" && pwd)"
RUN="$OUT/run"
mkdir -p "$RUN"
exec > >(tee "$OUT/run.log") 2>&1

SAGAD_PID="" KMOCK_PID=""
stop_pid() {   # PID [timeout_s]
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < ${2:-30} * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}
cleanup() { stop_pid "$SAGAD_PID"; stop_pid "$KMOCK_PID"; SAGAD_PID="" KMOCK_PID=""; rm -rf "$RUN"; }
trap cleanup EXIT
trap 'echo interrupted; exit 130' INT TERM HUP
FAILS=0
fail() { echo "CHECK FAILED: $*"; FAILS=$((FAILS + 1)); }
BASE=http://127.0.0.1:$PORT
metric() { curl -s --max-time 5 "$BASE/metrics" | awk -v n="sagad_$1" '$1 == n { print $2; f = 1 } END { if (!f) print -1 }'; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

"$KMOCK_BIN" --topic bench-wait-commands:4 --topic bench-wait-events:4 --bootstrap-file "$RUN/kafka.bootstrap" \
	>"$OUT/kafka-mock.log" 2>&1 </dev/null &
KMOCK_PID=$!
for ((i = 0; i < 100; i++)); do [ -s "$RUN/kafka.bootstrap" ] && break; sleep 0.1; done
read -r KBOOT <"$RUN/kafka.bootstrap" || { echo "sagad-kafka-mock did not start"; exit 1; }

DB="$RUN/wait.db"
start_sagad() {
	"$SAGAD_BIN" --flows "$HERE/flows-wait" --db "$DB" --listen "127.0.0.1:$PORT" --log-level warn \
		--kafka-brokers "$KBOOT" -X fetch.wait.max.ms=10 -X session.timeout.ms=6000 \
		-X heartbeat.interval.ms=500 >>"$OUT/sagad.log" 2>&1 </dev/null &
	SAGAD_PID=$!
	for ((i = 0; i < 6000; i++)); do   # recovery of N sagas may take a while: 10 minutes at most
		kill -0 "$SAGAD_PID" 2>/dev/null || break
		[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$BASE/readyz")" = 200 ] && return 0
		sleep 0.1
	done
	echo "sagad did not become ready:"; tail -5 "$OUT/sagad.log"
	return 1
}
wait_outbox_empty() {   # at most 120 s
	for ((i = 0; i < 1200; i++)); do [ "$(metric outbox_unsent)" = 0 ] && return 0; sleep 0.1; done
	return 1
}

echo "== $(date -u +%FT%TZ) $(nproc) cores, $("$SAGAD_BIN" --version | head -1), tree $(git -C "$TOP" describe --always --dirty 2>/dev/null)"
echo "== starting $N waiting sagas (wrk -t1 -c$CLIENTS, Prefer: respond-async), at most ${MAXSEC}s"
start_sagad || exit 1
rss0=$(status_kb "$SAGAD_PID" VmRSS)
t0=$(date +%s.%N)
# wrk stops sending at N accepted starts (start.lua) but would sleep out its -d: SIGINT makes it
# report at once, once sagad has started N sagas.
SAGA_COUNT=$N wrk -t1 -c"$CLIENTS" -d"${MAXSEC}s" --timeout 30s -s "$HERE/wrk/start.lua" \
	"$BASE/v1/flows/wait/sagas" >"$OUT/wrk.txt" 2>&1 &
WRK_PID=$!
while kill -0 "$WRK_PID" 2>/dev/null && [ "$(metric sagas_started_total)" -lt "$N" ]; do sleep 0.2; done
sleep 0.5
kill -INT "$WRK_PID" 2>/dev/null
wait "$WRK_PID"
t1=$(date +%s.%N)
line=$(grep '^start-check:' "$OUT/wrk.txt")
accepted=$(sed -n 's/.*accepted=\([0-9]*\).*/\1/p' <<<"$line")
other=$(sed -n 's/.*other=\([0-9]*\).*/\1/p' <<<"$line")
[ -n "$accepted" ] || { echo "wrk produced no summary:"; tail -5 "$OUT/wrk.txt"; exit 1; }
wait_outbox_empty || fail "the outbox still holds $(metric outbox_unsent) commands 120 s after the starts"
t2=$(date +%s.%N)
active=$(metric sagas_active)
rss=$(status_kb "$SAGAD_PID" VmRSS)
hwm=$(status_kb "$SAGAD_PID" VmHWM)
rate=$(awk -v n="$accepted" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
drain=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1f", b - a }')
[ "$accepted" -ge "$N" ] || fail "only $accepted sagas accepted in ${MAXSEC}s (wanted $N)"
[ "$other" = 0 ] || fail "$other answers were not 202 ($line)"
[ "$active" -ge "$accepted" ] || fail "sagad_sagas_active $active < $accepted accepted"
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
per=$(awk -v a="$rss" -v b="$rss0" -v n="$active" 'BEGIN { printf "%.2f", (a - b) / n }')
printf '   %s sagas accepted (%s/s), %s active; outbox empty %ss after the last start\n' "$accepted" "$rate" "$active" "$drain"
printf '   RSS %s MiB (idle before: %s MiB), peak %s MiB: %s KiB per waiting saga\n' "$(mib "$rss")" "$(mib "$rss0")" "$(mib "$hwm")" "$per"
[ "$(mib "$hwm")" -le "$MAX_RSS" ] || fail "peak RSS $(mib "$hwm") MiB > $MAX_RSS MiB"

r_line=""
if [ "$RESTART" = 1 ]; then
	echo "== restart: SIGTERM, then recovery of the waiting sagas"
	stop_pid "$SAGAD_PID"; SAGAD_PID=""
	t3=$(date +%s.%N)
	start_sagad || exit 1
	t4=$(date +%s.%N)
	wait_outbox_empty || fail "after the restart the outbox still holds $(metric outbox_unsent) commands"
	r_active=$(metric sagas_active)
	r_rss=$(status_kb "$SAGAD_PID" VmRSS)
	r_hwm=$(status_kb "$SAGAD_PID" VmHWM)
	r_time=$(awk -v a="$t3" -v b="$t4" 'BEGIN { printf "%.1f", b - a }')
	[ "$r_active" = "$active" ] || fail "after the restart $r_active sagas active, $active before"
	[ "$(mib "$r_hwm")" -le "$MAX_RSS" ] || fail "peak RSS after the restart $(mib "$r_hwm") MiB > $MAX_RSS MiB"
	printf '   recovered %s sagas, ready %ss after the start; RSS %s MiB, peak %s MiB\n' "$r_active" "$r_time" "$(mib "$r_rss")" "$(mib "$r_hwm")"
	r_line="| after a restart (recovery) | $r_active | ready in ${r_time} s | $(mib "$r_rss") | $(mib "$r_hwm") |"
fi
stop_pid "$SAGAD_PID"; SAGAD_PID=""
sqlite3 "$DB" "SELECT status, count(*) FROM sagas GROUP BY status" >"$OUT/db.txt"
[ "$(cut -d'|' -f1 "$OUT/db.txt" | tr '\n' ' ')" = "running " ] || fail "the store holds sagas that are not running: $(tr '\n' ' ' <"$OUT/db.txt")"
n_db=$(awk -F'|' '{ s += $2 } END { print s + 0 }' "$OUT/db.txt")
[ "$n_db" = "$active" ] || fail "$n_db sagas in the store, $active active in sagad"
db_mib=$(du -cm "$DB"* | awk 'END { print $1 }')

{
	echo "# sagad, sagas waiting on a reply: $(date -u +%FT%TZ)"
	echo
	echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); $("$SAGAD_BIN" --version | head -1), tree $(git -C "$TOP" describe --always --dirty 2>/dev/null); shipped settings (WAL, synchronous=FULL); wrk -t1 -c$CLIENTS; database $db_mib MiB"
	echo
	echo "| phase | sagas waiting | rate | RSS MiB | peak RSS MiB |"
	echo "|---|---:|---|---:|---:|"
	echo "| idle, before | 0 | | $(mib "$rss0") | |"
	echo "| after the starts | $active | $rate starts/s, outbox empty ${drain} s after the last | $(mib "$rss") | $(mib "$hwm") |"
	[ -n "$r_line" ] && echo "$r_line"
	echo
	echo "$per KiB of RSS per waiting saga; checks: $([ "$FAILS" = 0 ] && echo "all passed" || echo "$FAILS FAILED")"
} >"$OUT/summary.md"
cat "$OUT/summary.md"
[ "$FAILS" = 0 ]
