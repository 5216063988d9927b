#!/bin/bash
# 40-bench-smoke.sh -- the benchmark still runs and its invariants hold (docs/performance.md):
# bench/run.sh --quick at 1 and 4 clients, happy and failure variants, against nginx participants.
# Asserts only invariants -- the run completed, every saga ended as expected, the participants'
# counting log matches the sagas exactly, every commit was fsynced, the summary has its rows --
# never timings. Needs nginx, wrk, strace and sqlite3 (scripts/install-deps.sh installs them).
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

missing=""
for c in nginx wrk strace sqlite3; do
	command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || missing="$missing $c"
done
if [ -n "$missing" ]; then
	bail_out "missing:$missing -- the bench smoke needs them; run scripts/install-deps.sh as root (packages nginx wrk strace sqlite3)"
fi
SAGAD=${SAGAD:-$TOP_SRCDIR/sagad}
[ -x "$SAGAD" ] || bail_out "$SAGAD is not built"

out=$TMP/bench
BENCH_HAPPY_PORT=$(free_port) BENCH_FAIL_PORT=$(free_port) BENCH_SAGAD_PORT=$(free_port)
while [ "$BENCH_FAIL_PORT" = "$BENCH_HAPPY_PORT" ]; do BENCH_FAIL_PORT=$(free_port); done
while [ "$BENCH_SAGAD_PORT" = "$BENCH_HAPPY_PORT" ] || [ "$BENCH_SAGAD_PORT" = "$BENCH_FAIL_PORT" ]; do
	BENCH_SAGAD_PORT=$(free_port)
done
export BENCH_HAPPY_PORT BENCH_FAIL_PORT BENCH_SAGAD_PORT
"$TOP_SRCDIR/bench/run.sh" --quick --no-build --no-install --sagad "$SAGAD" --concs "1 4" \
	--duration 2 --ceiling-seconds 1 --out "$out" >"$TMP/bench.out" 2>&1 &
pid=$!
e2e_track_pid "$pid"
wait "$pid"
rc=$?
if ! is "$rc" 0 "bench/run.sh --quick exits 0 (ran to the end, every check passed)"; then
	tail -n 40 "$TMP/bench.out" | diag_stdin
fi

res=$out/results.jsonl
is "$(jq -s length "$res" 2>/dev/null)" 4 "results.jsonl: one line per mode x concurrency (2 x 2)"
is "$(jq -r '"\(.mode)-c\(.concurrency)"' "$res" 2>/dev/null | sort | tr '\n' ' ')" \
	"fail-c1 fail-c4 happy-c1 happy-c4 " "... for happy and fail at 1 and 4 clients"
is "$(jq -s '[.[] | select(.checks_ok != true)] | length' "$res")" 0 "every run passed its checks"
is "$(jq -s '[.[] | select(.unexpected != 0 or .socket_errors != 0)] | length' "$res")" 0 \
	"the driver saw no unexpected saga status, non-200 or socket error"
is "$(jq -s '[.[] | select(.sagas_timed <= 0 or .sagas_in_store < .answers)] | length' "$res")" 0 \
	"every timed run answered sagas, and every answered saga is in the store"
is "$(jq -s '[.[] | select(.dispatches_per_saga != (if .mode == "happy" then 3 else 5 end))] | length' "$res")" 0 \
	"sagad dispatched exactly 3 calls per completed saga, 5 per compensated one"

# the store: every saga final, with the expected status
for m in happy fail; do
	want=completed
	[ "$m" = fail ] && want=compensated
	for c in 1 4; do
		db=$(cat "$out/checks/db-$m-c$c.txt" 2>/dev/null)
		n=$(jq -r --arg m "$m" --argjson c "$c" 'select(.mode == $m and .concurrency == $c) | .sagas_in_store' "$res")
		is "$db" "$want|$n" "$m c=$c: the store holds $n sagas, all $want"
	done
done

# the participants' counting log
for c in 1 4; do
	n=$(jq -r --argjson c "$c" 'select(.mode == "happy" and .concurrency == $c) | .sagas_in_store' "$res")
	like "$(tail -n 1 "$out/checks/log-happy-c$c.txt" 2>/dev/null)" "^$((3 * n)) requests for $n sagas \(3\.000 per saga" \
		"happy c=$c: nginx served exactly /classes, /payments, /deliveries once per saga"
	n=$(jq -r --argjson c "$c" 'select(.mode == "fail" and .concurrency == $c) | .sagas_in_store' "$res")
	like "$(tail -n 1 "$out/checks/log-fail-c$c.txt" 2>/dev/null)" "^$((5 * n)) requests for $n sagas \(5\.000 per saga" \
		"fail c=$c: ... and /deliveries (500), /payments/cancel, /classes/cancel once per saga"
	is "$(wc -l <"$out/checks/log-fail-c$c.txt")" 1 "fail c=$c: no count differs from the expected one"
done
like "$(tail -n 1 "$out/checks/log-fail-c1.txt")" "strict order" \
	"fail c=1: the log is the exact per-saga sequence (compensations in reverse order)"

# durability as shipped (WAL, synchronous=FULL, the WAL synced on sagad's sync thread): the
# thread's syncs are real fdatasync calls, and at one client, where every commit waits for
# its own sync before the saga can go on, there is at least one per commit
traced=$(jq -s '[.[] | select(.fsyncs != null)] | length' "$res")
if [ "$traced" = 0 ]; then
	skip 3 "strace could not attach (ptrace not permitted here): fsyncs not counted"
else
	is "$(jq -s '[.[] | select(.fsyncs != null and (.fsync_run_wal_syncs <= 0 or .fsyncs < .fsync_run_wal_syncs))] | length' "$res")" 0 \
		"every strace run: WAL syncs counted by sagad, and at least as many fdatasync calls"
	is "$(jq -s '[.[] | select(.fsyncs != null and .concurrency == 1 and (.fsync_run_commits <= 0 or .fsyncs < .fsync_run_commits))] | length' "$res")" 0 \
		"one client: at least one fsync per SQLite commit"
	is "$(jq -s '[.[] | select(.wal_syncs <= 0 or .wal_syncs_per_saga == null)] | length' "$res")" 0 \
		"every timed run: the WAL sync thread synced (sagad_store_wal_syncs_total)"
fi

# the summary
rows=$(grep -cE '^\| (happy|fail) \| [0-9]+ \|' "$out/summary.md" 2>/dev/null)
is "$rows" 4 "summary.md has a table row per run"
like "$(cat "$out/summary.md")" "every saga ended as expected" "summary.md says the checks passed"
ok "[ ! -e '$out/checks/failures.txt' ]" "no check failure recorded"

# everything it started is stopped
ok "[ ! -e '$out/run' ]" "run directory removed (processes stopped, databases deleted)"
for p in "$BENCH_HAPPY_PORT" "$BENCH_FAIL_PORT" "$BENCH_SAGAD_PORT"; do
	ok "! ss -ltnH 'sport = :$p' | grep -q ." "port $p is free again"
done

# bench/floor.sh (libcurl and nginx alone, without sagad): it builds, runs and every call
# succeeds (its exit status); the figures themselves are not checked
BENCH_FLOOR_PORT=$(free_port)
while [ "$((BENCH_FLOOR_PORT + 1))" = "$BENCH_HAPPY_PORT" ]; do BENCH_FLOOR_PORT=$(free_port); done
BENCH_FLOOR_PORT=$BENCH_FLOOR_PORT "$TOP_SRCDIR/bench/floor.sh" --calls 2000 --concs 4 >"$TMP/floor.out" 2>&1
is "$?" 0 "floor.sh exits 0 (every call answered 2xx)"
is "$(grep -c '^libcurl .*, 4 in flight: 1996 calls in .* 0 failed; nginx [0-9.]* us per call$' "$TMP/floor.out")" 2 \
	"floor.sh: a line for sagad's headers and one without ($(head -c 300 "$TMP/floor.out"))"
like "$(cat "$TMP/floor.out")" "wrk, 4 connections: [0-9.]+ req/s" "floor.sh: wrk's line"
ok "! ss -ltnH 'sport = :$BENCH_FLOOR_PORT' | grep -q ." "floor.sh's port is free again"

done_testing
