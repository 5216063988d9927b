#!/bin/bash
# 41-bench-variants.sh -- the bench's other variants still run and their invariants hold
# (docs/performance.md): bench/run.sh's Kafka mode (the ship step as a Kafka request/reply through
# sagad-kafka-mock and bench/kafka_echo.py) on a store prefilled with finished sagas, and
# bench/waiting.sh (sagas waiting on a reply, then a restart that recovers them). Invariants only,
# never timings. Needs nginx, wrk, strace, sqlite3, python3-confluent-kafka (scripts/install-deps.sh).
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

missing=""
for c in nginx wrk strace sqlite3; do
	command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || missing="$missing $c"
done
/usr/bin/python3 -c 'import confluent_kafka' 2>/dev/null || missing="$missing python3-confluent-kafka"
[ -z "$missing" ] || bail_out "missing:$missing -- run scripts/install-deps.sh as root"
SAGAD=${SAGAD:-$TOP_SRCDIR/sagad}
[ -x "$SAGAD" ] || bail_out "$SAGAD is not built"

BENCH_HAPPY_PORT=$(free_port) BENCH_FAIL_PORT=$(free_port) BENCH_SAGAD_PORT=$(free_port)
while [ "$BENCH_FAIL_PORT" = "$BENCH_HAPPY_PORT" ]; do BENCH_FAIL_PORT=$(free_port); done
while [ "$BENCH_SAGAD_PORT" = "$BENCH_HAPPY_PORT" ] || [ "$BENCH_SAGAD_PORT" = "$BENCH_FAIL_PORT" ]; do
	BENCH_SAGAD_PORT=$(free_port)
done
export BENCH_HAPPY_PORT BENCH_FAIL_PORT BENCH_SAGAD_PORT

# --- Kafka mode on a prefilled store
out=$TMP/bench
"$TOP_SRCDIR/bench/run.sh" --quick --no-build --no-install --sagad "$SAGAD" --modes kafka --concs "1 4" \
	--duration 2 --ceiling-seconds 1 --prefill 300 --out "$out" >"$TMP/bench.out" 2>&1 &
pid=$!
e2e_track_pid "$pid"
wait "$pid"
rc=$?
is "$rc" 0 "bench/run.sh --modes kafka --prefill 300 exits 0 (ran to the end, every check passed)" ||
	tail -n 40 "$TMP/bench.out" | diag_stdin
res=$out/results.jsonl
is "$(jq -r '"\(.mode)-c\(.concurrency)"' "$res" 2>/dev/null | sort | tr '\n' ' ')" "kafka-c1 kafka-c4 " \
	"results.jsonl: the Kafka mode at 1 and 4 clients"
is "$(jq -s '[.[] | select(.checks_ok != true or .unexpected != 0 or .socket_errors != 0)] | length' "$res")" 0 \
	"every Kafka run passed its checks"
is "$(jq -s '[.[] | select(.dispatches_per_saga != 3)] | length' "$res")" 0 \
	"sagad dispatched 3 per saga: 2 HTTP calls and 1 Kafka command"
for c in 1 4; do
	n=$(jq -r --argjson c "$c" 'select(.concurrency == $c) | .sagas_in_store' "$res")
	is "$(cat "$out/checks/echo-kafka-c$c.count" 2>/dev/null)" \
		"commands=$n replies=$n duplicates=0 unflushed=0 errors=0" \
		"kafka c=$c: the Kafka participant got one command per saga ($n) and answered each"
	like "$(tail -n 1 "$out/checks/log-kafka-c$c.txt" 2>/dev/null)" "^$((2 * n)) requests for $n sagas \(2\.000 per saga" \
		"kafka c=$c: nginx served exactly /classes and /payments once per saga"
	is "$(cat "$out/checks/db-kafka-c$c.txt")" "completed|$n" \
		"kafka c=$c: the run's $n sagas are completed (the 300 prefilled ones are not counted)"
done
is "$(jq -s '[.[] | select(.prefilled != 300 or .prefilled_left < 0)] | length' "$res")" 0 \
	"each run started on the store prefilled with 300 finished sagas"
is "$(jq -s '[.[] | select((.loop_turns_over_50ms | type) != "number" or (.loop_turn_max_ms_since_start | type) != "number")] | length' "$res")" 0 \
	"every run reports sagad's loop turns (GET /metrics: sagad_loop_turn_seconds)"
ok "[ ! -e '$out/run' ]" "run directory removed (processes stopped, databases deleted)"

# --- sagas waiting on a reply, and their recovery
w=$TMP/waiting
"$TOP_SRCDIR/bench/waiting.sh" --no-build --sagad "$SAGAD" --sagas 1000 --clients 8 --restart \
	--out "$w" >"$TMP/waiting.out" 2>&1 &
pid=$!
e2e_track_pid "$pid"
wait "$pid"
rc=$?
is "$rc" 0 "bench/waiting.sh --sagas 1000 --restart exits 0 (every check passed)" ||
	tail -n 30 "$TMP/waiting.out" | diag_stdin
like "$(cat "$w/db.txt" 2>/dev/null)" "^running\|[0-9]+$" "the store holds only running (waiting) sagas"
n=$(cut -d'|' -f2 "$w/db.txt" 2>/dev/null)
ok "[ '${n:-0}' -ge 1000 ]" "at least 1000 sagas waited ($n)"
like "$(cat "$w/summary.md")" "after a restart \(recovery\) \| $n \|" "all $n were recovered after the restart"
like "$(cat "$w/summary.md")" "checks: all passed" "summary.md says the checks passed"
ok "[ ! -e '$w/run' ]" "waiting.sh removed its run directory"
ok "! ss -ltnH 'sport = :$BENCH_SAGAD_PORT' | grep -q ." "port $BENCH_SAGAD_PORT is free again"

done_testing
