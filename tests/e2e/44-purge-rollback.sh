#!/bin/bash
# 44-purge-rollback.sh -- the purge shares the loop's grouped transaction with the engine.
# When one of its deletes fails while SQLite spills its page cache (disk full), SQLite rolls
# back the whole transaction, and with it the starts written earlier in it. Those starts must
# not be acknowledged: sagad must take the failed-commit path (pause, forget, recover from the
# store), not find nothing left to commit and answer them (docs/architecture.md, "Transactions:
# grouped commit").
#
# Set-up: a backlog of 300 finished sagas of 64 KiB each, ended long ago (written with the
# sqlite3 CLI while sagad is down); sagad restarted with --retention 20s (the first purge pass
# comes 10 s after start) and tests/fault/faultvfs.so preloaded. Four clients start sagas in a
# loop while the fault "full 131071" is on (writes of 128 KiB or more fail): a disk with a
# little room left, where the small commits of the starts fit but the purge's first batch
# does not (its deletes dirty ~2,000 pages, freed pages being zeroed: SQLite spills them to
# the WAL in 128 KiB writes). That spill fails and SQLite rolls back the transaction, with the
# starts and saga progress written in it.
# Checked: the rollback was noticed (event=store_error ... rolled back) and the engine paused
# (nothing of that transaction was answered or dispatched), then resumed from the store;
# sagad kept running; after a restart every acknowledged start (202) and every saga a
# participant was called for is in the store; a new saga completes.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init
command -v sqlite3 >/dev/null 2>&1 || skip_all "sqlite3 is not installed"
need_faultvfs

CONTROL=$TMP/fault
CLIENTS=4
rm -f "$CONTROL"
start_participants || bail_out "participants did not start"
start_sagad || bail_out "sagad did not start"   # creates the schema
stop_sagad || bail_out "sagad did not stop"
sqlite3 "$TMP/sagad.db" <<'SQL' >/dev/null || bail_out "cannot write the backlog"
BEGIN;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 300)
INSERT INTO sagas (id, shard, owner_epoch, flow, flow_version, status, cursor, input,
		   created_at, updated_at)
	SELECT '00PURGE' || printf('%019d', i), 0, 1, 'apply', 1, 'completed', 3,
		'"' || hex(zeroblob(32768)) || '"', 1000 + i, 2000 + i FROM c;
COMMIT;
SQL
is "$(sqlite3 "$TMP/sagad.db" "SELECT count(*) FROM sagas WHERE id LIKE '00PURGE%'")" 300 \
	"a backlog of 300 finished sagas of 64 KiB"

launch_ns=$(date +%s%N)
SAGAD=$(sagad_wrapper sagad-faults LD_PRELOAD="$FAULTVFS_SO" FAULTVFS_CONTROL="$CONTROL") \
	start_sagad --retention 20s || bail_out "sagad did not start with the fault shim"
echo 'full 131071' >"$CONTROL"
# The clients start 8 s after sagad was launched, about 2 s before its first purge pass
# (10 s after its start): measured from the launch, not from the end of start_sagad, which
# comes later on a loaded machine (an ASan build, other tests running).
sleep "$(awk -v l="$launch_ns" -v n="$(date +%s%N)" 'BEGIN { d = (l + 8e9 - n) / 1e9; printf "%.3f", (d > 0 ? d : 0) }')"
diag "the clients start $(( ($(date +%s%N) - launch_ns) / 1000000 )) ms after sagad's launch"

# client N: starts sagas one after the other until $TMP/stop exists; each answer's status and
# body go to $TMP/c.N.I.code and $TMP/c.N.I.
input=$(seed_input '.studentName = "purge-rollback"')
client() {
	local i=0 code
	trap - DEBUG
	while [ ! -e "$TMP/stop" ]; do
		i=$((i + 1))
		code=$(curl -s -o "$TMP/c.$1.$i" -w '%{http_code}' --max-time 30 -X POST \
			-H 'Content-Type: application/json' --data-binary "$input" \
			"$SAGAD_URL/v1/flows/apply/sagas?wait=none")
		echo "${code:-000}" >"$TMP/c.$1.$i.code"
	done
}
pids=()
for c in $(seq 1 "$CLIENTS"); do
	client "$c" </dev/null &
	pids+=($!)
	e2e_track_pid "$!"
done
_logged() { [ "$(sagad_log_count "$1")" -gt 0 ]; }
wait_until 60 _logged 'event=purge_failed '
ok $? "the purge's first pass failed (disk full) while clients were starting sagas"
rm -f "$CONTROL"
sleep 1
touch "$TMP/stop"
for p in "${pids[@]}"; do
	wait "$p" 2>/dev/null
	_e2e_untrack_pid "$p"
done

_logged 'event=store_error op=purge_[a-z]+ code=13 msg="the grouped transaction was rolled back'
ok $? "the store noticed that SQLite rolled the grouped transaction back"
_logged 'event=store_paused err="disk full"'
ok $? "the engine paused"
_ready() { [ "$(_e2e_http_code "$SAGAD_URL/readyz")" = 200 ]; }
wait_until 60 _ready
ok $? "the engine resumed (/readyz is 200)"
ok sagad_alive "sagad is still running"
stop_sagad
is "$SAGAD_EXIT" 0 "sagad stopped cleanly"

start_sagad || bail_out "sagad did not start again"
for f in "$TMP"/c.*.code; do
	[ "$(cat "$f")" = 202 ] && jq -r .id "${f%.code}"
done >"$TMP/acked"
# in_store FILE: how many of the saga ids in FILE (one a line) the store holds
in_store() {
	{ echo 'CREATE TEMP TABLE ids (id TEXT);'
	  sed "s/.*/INSERT INTO ids VALUES ('&');/" "$1"
	  echo 'SELECT count(*) FROM ids JOIN sagas USING (id);'; } | sqlite3 "$TMP/sagad.db"
}
acked=$(wc -l <"$TMP/acked")
diag "starts: $(cat "$TMP"/c.*.code | sort | uniq -c | tr '\n' ' ')"
ok "[ $acked -gt 0 ]" "starts were acknowledged ($acked)"
is "$(in_store "$TMP/acked")" "$acked" "every acknowledged start is in the store after a restart"
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "after"')")
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "a new saga completes"
stop_sagad
# Persist, then act: every call a participant received belongs to a saga the store holds
# (the idempotency key starts with the saga's id).
oplog_all | jq -r '.[] | .idempotency_key // empty' | cut -d: -f1 | sort -u >"$TMP/called"
is "$(in_store "$TMP/called")" "$(wc -l <"$TMP/called")" \
	"every saga a participant was called for ($(wc -l <"$TMP/called")) is in the store"
is "$(integrity "$TMP/sagad.db")" ok "PRAGMA integrity_check"
done_testing
