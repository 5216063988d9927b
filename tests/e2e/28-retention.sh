#!/usr/bin/env bash
# 28-retention.sh -- --retention deletes finished sagas (completed, compensated) with their
# steps and history, in batches, and keeps what an operator or a parent may still need:
# failed sagas, and finished children of a saga that is not finished.
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
wait_until 15 gone "$done_id"
ok $? "the completed saga is deleted after the retention"
ok "gone $kids" "... and its completed child saga"
api GET "/v1/sagas/$failed_id" >/dev/null
is "$HTTP_STATUS" 200 "a failed saga is kept for its operator"
api GET "/v1/sagas/$failed_kid" >/dev/null
is "$HTTP_STATUS" 200 "a finished child of an unfinished parent is kept (it may be compensated)"
is "$(sqlite3 "$TMP/sagad.db" "SELECT count(*) FROM saga_history WHERE saga_id = '$done_id'")" 0 \
	"the deleted saga's history went with it"
like "$(cat "$TMP/sagad.log")" "event=purged sagas=[0-9]+" "sagad logs what it purged"

done_testing
