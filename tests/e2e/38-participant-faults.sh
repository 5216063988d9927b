#!/bin/bash
# 38-participant-faults.sh -- misbehaving participants (the fault table of
# examples/participants/README.md) against the pay flow (timeout 1 s; a copy with 5 attempts,
# backoff 300 ms doubling to 1 s, no jitter).  Complements 21-23 (failures, 503 twice, 429,
# a delivery slower than its timeout, cancel), 24 (replays after crashes) and 30 (duplicate
# and late Kafka replies).
#
#   hang once        the first call is never answered (in time): timed out, retried, applied once
#   hang always      no call is ever answered: every attempt times out, the outcome stays
#                    unknown, so the payment is compensated (cancelled) like a success
#   slow, under      answered 300 ms late (timeout 1 s): one attempt
#   slow, over       applied but answered 1.4 s late, after the step timed out: the retry gets
#                    the stored answer (replayed), applied once
#   answer lost      applied, then the connection drops: sent again, replayed, applied once
#   5xx storm        every call answers 503 while 12 sagas run, until each of them was refused
#                    once, then the service recovers: all complete, each payment applied once,
#                    within the attempts
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

mkdir -p "$TMP/flows"
cp "$TOP_SRCDIR"/flows/*.yaml "$TMP/flows/"
python3 - "$TMP/flows/pay.yaml" <<'PY' || bail_out "cannot edit the flow copy"
import sys
p = sys.argv[1]
s = open(p).read()
old = "      max_attempts: 3\n      initial_backoff: 100ms\n      max_backoff: 1s\n"
assert s.count(old) == 1
s = s.replace(old, "      max_attempts: 5\n      initial_backoff: 300ms\n      max_backoff: 1s\n      jitter: 0\n")
open(p, "w").write(s)
PY
FLOWS_DIR=$TMP/flows
export FLOWS_DIR

plan 21
start_participants || bail_out "participants did not start"
start_sagad || bail_out "sagad did not start"
is "$(api GET /v1/flows/pay | jq -c '.steps[0].retry | [.max_attempts, .initial_backoff_ms]')" \
	"[5,300]" "sagad runs the pay copy (5 attempts, 300 ms backoff)"

pay_input() { jq -cn --arg a "$1" '{applyId: $a, payMethod: "BANK", payAccount: "1234-5678"}'; }
# attempts ID: the pay step's action history as "attempt:event,..."
attempts() {
	api GET "/v1/sagas/$1" | jq -r '[.history[] | select(.phase == "action") | "\(.attempt):\(.event)"] | join(",")'
}
# outcomes ID [PHASE]: the payment participant's outcomes for the saga's key
outcomes() {
	participant_log payment | jq -r --arg k "$1:pay:${2:-action}" \
		'[.[] | select(.idempotency_key == $k) | .outcome] | join(",")'
}
run() {   # NAME: one pay saga, waited for; sets ID, BODY, MS
	local t0
	t0=$(date +%s%3N)
	BODY=$(API_MAX_TIME=60 api POST '/v1/flows/pay/sagas?wait=completion' "$(pay_input "$1")")
	MS=$(( $(date +%s%3N) - t0 ))
	ID=$(jget "$BODY" .id)
}

# ---- hang once --------------------------------------------------------------------------------
fault payment '{"method":"POST","path":"/payments","status":200,"body":true,"delay_ms":30000,"times":1}' >/dev/null
run hang-once
is "$(jget "$BODY" .status)" completed "hang once: the saga completed"
is "$(attempts "$ID")" "1:timed_out,2:succeeded" "hang once: attempt 1 timed out after 1 s, attempt 2 succeeded"
is "$(outcomes "$ID")" applied "hang once: the payment was applied once"

# ---- hang always ------------------------------------------------------------------------------
fault payment '{"method":"POST","path":"/payments","status":200,"body":true,"delay_ms":30000,"times":5}' >/dev/null
run hang-always
is "$(jget "$BODY" .status)" compensated "hang always: the saga compensated"
is "$(attempts "$ID")" "1:timed_out,2:timed_out,3:timed_out,4:timed_out,5:timed_out" \
	"hang always: 5 attempts, each timed out"
is "$(api GET "/v1/sagas/$ID" | jq -r '.steps[0].state')" compensated \
	"hang always: the outcome unknown, the payment was cancelled like a success"
is "$(outcomes "$ID" compensation)" applied "hang always: ... once (the cancel found nothing: 404 is success)"
diag "hang always: $MS ms"

# ---- slow, under the timeout --------------------------------------------------------------------
# 300 ms: well under the timeout, with room for a loaded machine (the participant applies and
# commits before it sleeps).
fault payment '{"method":"POST","path":"/payments","status":0,"delay_ms":300,"times":1}' >/dev/null
run slow-under
is "$(jget "$BODY" .status):$(attempts "$ID")" "completed:1:succeeded" "slow (300 ms of 1 s): one attempt, completed"

# ---- slow, over the timeout: the answer comes after the step timed out -----------------------
fault payment '{"method":"POST","path":"/payments","status":0,"delay_ms":1400,"times":1}' >/dev/null
run slow-over
is "$(jget "$BODY" .status)" completed "slow (1.4 s of 1 s): completed"
is "$(attempts "$ID")" "1:timed_out,2:succeeded" "slow: attempt 1 timed out, attempt 2 succeeded"
is "$(outcomes "$ID")" "applied,replayed" "slow: applied once; the retry got the stored answer (replayed)"
is "$(api GET "/v1/sagas/$ID" | jq -c '.steps[0].response.body')" true "slow: the replayed answer is the saga's response"

# ---- answer lost: applied, then the connection drops ------------------------------------------
fault payment '{"method":"POST","path":"/payments","status":-1,"apply":true,"times":1}' >/dev/null
run answer-lost
is "$(jget "$BODY" .status)" completed "answer lost: completed"
# libcurl itself re-sends a request once when a kept-alive connection dies under it (same
# attempt, same key); otherwise sagad's retry does.
like "$(attempts "$ID")" '^(1:succeeded|1:failed,2:succeeded)$' "answer lost: the call was sent again (by libcurl or as attempt 2)"
is "$(outcomes "$ID")" "applied,replayed" "answer lost: applied once, the retry replayed"

# ---- 5xx storm, then recovery -------------------------------------------------------------------
fault payment '{"method":"*","path":"*","status":503,"times":-1}' >/dev/null
for i in $(seq 1 12); do
	api_bg "$TMP/storm.$i" POST '/v1/flows/pay/sagas?wait=completion' "$(pay_input "storm-$i")"
done
# The service recovers once every saga's first attempt was refused (not after a fixed time:
# the 12 requests may start slowly on a loaded machine); each saga has 5 attempts over ~2.9 s.
storm_refused() {
	[ "$(participant_log payment | jq '[.[] | select(.outcome == "fault" and
		((.request_body.applyId // "") | tostring | startswith("storm-"))) | .idempotency_key] | unique | length')" -ge 12 ]
}
wait_until 60 storm_refused
clear_faults payment
wait_bg
codes=$(for i in $(seq 1 12); do cat "$TMP/storm.$i.code"; done | sort | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ')
is "$codes" "200x12 " "5xx storm: all 12 sagas answered 200"
is "$(for i in $(seq 1 12); do jq -r .status "$TMP/storm.$i"; done | sort -u | tr '\n' ' ')" "completed " \
	"5xx storm: all completed once the service recovered"
ids=$(for i in $(seq 1 12); do jq -r .id "$TMP/storm.$i"; done)
bad=""
for id in $ids; do
	a=$(attempts "$id")
	[[ $a =~ ^(([0-9]+:failed,)+)[0-9]+:succeeded$ ]] || bad="$bad $id=$a"
done
is "$bad" "" "5xx storm: each saga had failed attempts (503), then one success"
is "$(for id in $ids; do outcomes "$id" | tr ',' '\n' | grep -c '^applied$'; done | sort -u | tr '\n' ' ')" "1 " \
	"5xx storm: each payment applied exactly once"
is "$(oplog_dup_applied "$(oplog_all)" | tr '\n' ' ')" "" "no participant applied an idempotency key twice"
done_testing
