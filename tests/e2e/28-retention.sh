#!/usr/bin/env bash
# 28-retention.sh -- --retention deletes finished sagas (completed, compensated) with their
# steps and history, in batches, and keeps what an operator or a parent may still need:
# failed sagas, and finished children of a saga that is not finished; and a backlog many passes
# long is purged to the last saga.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

FLOWS_DIR=$TMP/flows
copy_flows "$FLOWS_DIR"
python3 - "$FLOWS_DIR" <<'PY' || bail_out "cannot edit the flow copies"
import sys
p = sys.argv[1] + "/apply.yaml"
s = open(p).read()
old = "retry: { max_attempts: 10, initial_backoff: 200ms, max_backoff: 30s }"
assert s.count(old) == 1
open(p, "w").write(s.replace(old, "retry: { max_attempts: 1 }"))
PY
export FLOWS_DIR

start_participants || bail_out "participants did not start"
start_sagad --retention 2s || bail_out "sagad did not start"

# A completed saga (with two completed children) and a failed one: ship fails, pay is
# compensated (its child saga ends compensated), the class cancel is refused: parked failed.
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "keep-not"')")
done_id=$(jget "$body" .id)
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "a completed saga"
kids=$(api GET '/v1/sagas?flow=pay' | jq -r '.sagas[0].id')
fault delivery '{"method":"POST","path":"/deliveries","status":400,"times":-1}' >/dev/null
fault class '{"method":"PATCH","path":"/classes/*","status":503,"times":-1}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "keep"')")
failed_id=$(jget "$body" .id)
is "$HTTP_STATUS:$(jget "$body" .status)" "200:failed" "a failed saga (its class cancel is refused)"
failed_kid=$(api GET '/v1/sagas?flow=pay' | jq -r --arg p "$failed_id" '[.sagas[] | select(.parent_id == $p)][0].id')
ok "[ -n '$failed_kid' ] && [ '$failed_kid' != null ]" "the failed saga has a pay child"

gone() { api GET "/v1/sagas/$1" >/dev/null; [ "$HTTP_STATUS" = 404 ]; }
wait_until 60 gone "$done_id"
ok $? "the completed saga is deleted after the retention"
ok "gone $kids" "... and its completed child saga"
api GET "/v1/sagas/$failed_id" >/dev/null
is "$HTTP_STATUS" 200 "a failed saga is kept for its operator"
api GET "/v1/sagas/$failed_kid" >/dev/null
is "$HTTP_STATUS" 200 "a finished child of an unfinished parent is kept (it may be compensated)"
is "$(sqlite3 "$TMP/sagad.db" "SELECT count(*) FROM saga_history WHERE saga_id = '$done_id'")" 0 \
	"the deleted saga's history went with it"
like "$(cat "$TMP/sagad.log")" "event=purged sagas=[0-9]+" "sagad logs what it purged"

# A backlog far larger than one pass (a store that was kept without retention, or a retention
# lowered): 20,000 finished sagas with their steps and history, written while sagad is down,
# among finished sagas it must keep: 300 failed ones, and 300 created as long ago that ended
# only now (the rows a purge pass once read, one by one, on every pass). Ids start with '00':
# older than any id sagad makes.
stop_sagad || bail_out "sagad did not stop"
now=$(date +%s%3N)
sqlite3 "$TMP/sagad.db" <<SQL >/dev/null || bail_out "cannot write the backlog"
BEGIN;
CREATE TEMP TABLE n AS WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20600)
	SELECT i, '00BACKLOG' || printf('%017d', i) AS id FROM c;
INSERT INTO sagas (id, shard, owner_epoch, flow, flow_version, status, cursor, input, created_at, updated_at)
	SELECT id, 0, 1, 'apply', 1, CASE WHEN i <= 20000 THEN 'completed' WHEN i <= 20300 THEN 'failed'
	ELSE 'compensated' END, 3, '{}', 1000 + i, CASE WHEN i <= 20300 THEN 2000 + i ELSE $now + 86400000 END FROM n;
INSERT INTO saga_steps (saga_id, idx, name, state, attempt, updated_at)
	SELECT id, k, 'step' || k, 'succeeded', 1, 2000 + i FROM n, (SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2);
INSERT INTO saga_history (saga_id, step, phase, attempt, event, started_at, ended_at)
	SELECT id, -1, 'saga', 0, 'e' || k, 1000 + i, 2000 + i FROM n, (SELECT 0 AS k UNION ALL SELECT 1
	UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4);
COMMIT;
SQL
is "$(sqlite3 "$TMP/sagad.db" "SELECT count(*) FROM sagas WHERE id LIKE '00BACKLOG%'")" 20600 "a backlog of 20,000 purgeable sagas"
start_sagad --retention 2s || bail_out "sagad did not start again"
backlog_gone() { [ "$(sqlite3 "$TMP/sagad.db" "SELECT count(*) FROM sagas WHERE id LIKE '00BACKLOG%' AND status = 'completed'")" = 0 ]; }
wait_until 120 backlog_gone
ok $? "the whole backlog is purged"
is "$(sqlite3 "$TMP/sagad.db" "SELECT status, count(*) FROM sagas WHERE id LIKE '00BACKLOG%' GROUP BY status ORDER BY status" | tr '\n' ' ')" \
	"compensated|300 failed|300 " "... the failed sagas and those that ended after the cutoff are kept"
is "$(sqlite3 "$TMP/sagad.db" "SELECT count(*) FROM saga_steps WHERE saga_id LIKE '00BACKLOG%'") $(sqlite3 "$TMP/sagad.db" "SELECT count(*) FROM saga_history WHERE saga_id LIKE '00BACKLOG%'")" \
	"1800 3000" "... and only their steps and history are left"
# The log lines after the restart add up to the backlog: every deleted saga is counted once
# (the last line comes with the pass that finds the backlog gone).
purged_since_start() {
	sed -n '/=== start_sagad/h; /=== start_sagad/!H; ${x;p}' "$TMP/sagad.log" |
		sed -n 's/.*event=purged sagas=\([0-9]*\) .*/\1/p' | awk '{ n += $1 } END { print n + 0 }'
}
logged_all() { [ "$(purged_since_start)" -ge 20000 ]; }
wait_until 60 logged_all
is "$(purged_since_start)" 20000 "sagad logs the 20,000 sagas it purged"
passes=$(sed -n '/=== start_sagad/h; /=== start_sagad/!H; ${x;p}' "$TMP/sagad.log" |
	sed -n 's/.*event=purged .* passes=\([0-9]*\) .*/\1/p' | awk '{ n += $1 } END { print n + 0 }')
ok "[ $passes -gt 1 ]" "... in $passes passes (each one bounded: purge.c)"
api GET "/v1/sagas/$failed_id" >/dev/null
is "$HTTP_STATUS" 200 "the failed saga from before is still there"

done_testing
