#!/bin/bash
# 22-retry-timeout.sh -- retries, timeouts and a compensation that keeps failing:
#   503 twice then success (applied once, same key, one trace); 429 + Retry-After honoured;
#   409 not retried; a delivery slower than the ship timeout (outcome unknown) is compensated
#   by applyId, in reverse order; a failing compensation parks the saga as `failed`, and
#   `sagactl saga retry` finishes it once the cause is fixed.
# Flows: a copy of flows/ with a short ship timeout (500ms, 2 attempts) and a short apply
# compensation retry (3 attempts), so that the script stays fast.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

FLOWS_DIR=$TMP/flows
copy_flows "$FLOWS_DIR"
python3 - "$FLOWS_DIR" <<'PY' || bail_out "cannot edit the flow copies"
import sys
d = sys.argv[1]
def edit(name, old, new):
    p = f"{d}/{name}"
    s = open(p).read()
    assert s.count(old) == 1, (name, old)
    open(p, "w").write(s.replace(old, new))
edit("ship.yaml", "    timeout: 5s\n", "    timeout: 500ms\n")
edit("ship.yaml", "      max_attempts: 8\n", "      max_attempts: 2\n")
edit("apply.yaml", "retry: { max_attempts: 10, initial_backoff: 200ms, max_backoff: 30s }",
     "retry: { max_attempts: 3, initial_backoff: 100ms, max_backoff: 200ms }")
PY
export FLOWS_DIR

start_participants || bail_out "participants did not start"
start_sagad || bail_out "sagad did not start"
is "$(api GET /v1/flows/ship | jq -c '.steps[0] | [.timeout_ms, .retry.max_attempts]')" "[500,2]" \
	"sagad runs the edited ship flow (timeout 500ms, 2 attempts)"

states() { jget "$1" '.steps | map("\(.name)=\(.state)") | join(",")'; }
# plog NAME SAGA: participant NAME's log entries whose key belongs to saga SAGA
plog() { participant_log "$1" | jq -c --arg s "$2:" '[.[] | select(.idempotency_key // "" | startswith($s))]'; }

# ---- 503 twice, then success --------------------------------------------------------------------
fault payment '{"method":"POST","path":"/payments","status":503,"times":2}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "r503"')")
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "payment 503 twice, then ok: saga completed"
aid=$(jget "$body" .output.applyId)
pay_id=$(child_saga "$body" pay)
pay=$(api GET "/v1/sagas/$pay_id")
is "$(jget "$pay" '.steps[0] | "\(.state) \(.attempt)"')" "succeeded 3" "pay step: succeeded at attempt 3"
is "$(jget "$pay" '[.history[] | select(.phase == "action") | "\(.attempt):\(.event):\(.status)"] | join(",")')" \
	"1:failed:503,2:failed:503,3:succeeded:200" "history: the two 503 failures, then the success"
like "$(jget "$pay" '[.history[] | select(.phase == "action")][0].error')" '503' "history: the failure's error names 503"
l=$(plog payment "$pay_id")
is "$(jget "$l" 'map(.outcome) | join(",")')" "fault,fault,applied" "payment saw 2 refused attempts, then applied"
is "$(jget "$l" 'map(.idempotency_key) | unique | join(",")')" "$pay_id:pay:action" \
	"all three attempts carry the same Idempotency-Key"
is "$(jget "$l" 'map(.traceparent | split("-")[1]) | unique | length')" 1 "... the same trace id"
is "$(jget "$l" 'map(.traceparent | split("-")[2]) | unique | length')" 3 "... and a new span id per attempt"
is "$(pcall payment GET "/payments/search/findByApplyId?applyId=$aid" | jq '._embedded.payments | length')" 1 \
	"payment applied exactly once"

# ---- 429 with Retry-After: 1 is honoured ------------------------------------------------------
fault payment '{"method":"POST","path":"/payments","status":429,"times":1,"headers":{"Retry-After":"1"}}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "r429"')")
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "payment 429 then ok: saga completed"
pay_id=$(child_saga "$body" pay)
l=$(plog payment "$pay_id")
is "$(jget "$l" 'map("\(.status) \(.outcome)") | join(",")')" "429 fault,200 applied" "payment: one 429, then applied"
gap=$(jq '(.[1].mono_ns - .[0].mono_ns) / 1000000 | floor' <<<"$l")
ok "[ '$gap' -ge 1000 ]" "the retry waited >= Retry-After (1 s) although the backoff is 100ms (${gap} ms)"
ok "[ '$gap' -lt 5000 ]" "... and not much longer (${gap} ms)"

# ---- 409: another 4xx is not retried -------------------------------------------------------------
fault payment '{"method":"POST","path":"/payments","status":409,"times":-1}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "r409"')")
clear_faults payment
id=$(jget "$body" .id)
aid=$(jget "$body" '.steps[0].response.body.id')
pay_id=$(child_saga "$body" pay)
is "$(jget "$body" .status):$(states "$body")" "compensated:apply=compensated,pay=failed,ship=pending" \
	"payment 409: compensated, pay failed"
is "$(jget "$(api GET "/v1/sagas/$pay_id")" '.steps[0] | "\(.state) \(.attempt)"')" "failed 1" "a 409 is not retried: 1 attempt"
is "$(plog payment "$pay_id" | jq -r 'map("\(.method) \(.status)") | join(",")')" "POST 409" \
	"payment saw one POST, and no cancel (the refused step did nothing)"
is "$(pcall class GET "/classes/$aid" | jq -r .applyStatus)" CLASS_CANCELED "the class was cancelled"

# ---- a delivery slower than the ship timeout: outcome unknown, compensated by applyId -----------
fault delivery '{"method":"POST","path":"/deliveries","status":0,"delay_ms":800,"times":-1}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "slowship"')")
id=$(jget "$body" .id)
aid=$(jget "$body" '.steps[0].response.body.id')
pay_id=$(child_saga "$body" pay)
ship_id=$(child_saga "$body" ship)
is "$HTTP_STATUS:$(jget "$body" .status)" "200:compensated" "delivery slower than the timeout: saga compensated"
like "$(jget "$body" .error)" 'step "ship" failed: .*unknown outcome: timed out' "saga error: ship timed out (unknown outcome)"
is "$(states "$body")" "apply=compensated,pay=compensated,ship=failed" "steps: ship failed, pay and apply compensated"
ship=$(api GET "/v1/sagas/$ship_id")
is "$(jget "$ship" '"\(.status) \(.steps[0].state) \(.steps[0].attempt)"')" "compensated compensated 2" \
	"child ship saga: its timed-out step is compensated too"
is "$(jget "$ship" '[.history[] | select(.phase == "action") | .event] | join(",")')" "timed_out,timed_out" \
	"ship history: two timed_out attempts"
# wait for the late (delayed) answers to drain before reading the logs
wait_until 60 bash -c "[ \$(curl -s '$DELIVERY_URL/_control/log' | jq '[.[] | select(.method == \"POST\")] | length') -ge 2 ]"
clear_faults delivery
l=$(merged_log | jq -c --arg a "$id:" --arg p "$pay_id:" --arg s "$ship_id:" \
	'[.[] | select(.idempotency_key // "" | startswith($a) or startswith($p) or startswith($s))]')
is "$(jget "$l" 'map("\(.service) \(.method) \(.outcome)") | join(",")')" \
	"class POST applied,payment POST applied,delivery POST applied,delivery POST replayed,delivery PATCH applied,payment PATCH applied,class PATCH applied" \
	"mono_ns order: the delivery applied (late), then cancelled, then payment, then class"
is "$(jget "$l" '[.[] | select(.method == "PATCH") | .path] | join(" ")')" \
	"/deliveries?applyId=$aid /payments?applyId=$aid /classes/$aid" "compensations by applyId, in reverse order"
is "$(pcall delivery GET "/deliveries/search/findByApplyId?applyId=$aid" | jq -r '._embedded.deliveries | map(.deliveryStatus) | join(",")')" \
	DELIVERY_CANCEL "the late delivery row is DELIVERY_CANCEL"
is "$(pcall payment GET "/payments/search/findByApplyId?applyId=$aid" | jq -r '._embedded.payments | map(.payStaus) | join(",")')" \
	PaymentCancelled "payment PaymentCancelled"
is "$(pcall class GET "/classes/$aid" | jq -r .applyStatus)" CLASS_CANCELED "class CLASS_CANCELED"

# ---- a compensation that keeps failing: failed, then sagactl saga retry ---------------------------
fault class '{"method":"PATCH","path":"/classes/*","status":503,"times":-1}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.payAccount = "0000-9"')")
id=$(jget "$body" .id)
aid=$(jget "$body" '.steps[0].response.body.id')
is "$HTTP_STATUS:$(jget "$body" .status)" "200:failed" "class cancel keeps failing: saga failed"
like "$(jget "$body" .error)" "compensation of step \"apply\" failed: .*503.*sagactl saga retry $id" \
	"the error says what failed and to run 'sagactl saga retry $id'"
is "$(jget "$body" '.steps[0] | "\(.state) \(.comp_attempt)"')" "compensation_failed 3" \
	"apply: compensation_failed after 3 attempts"
is "$(plog class "$id" | jq -r '[.[] | select(.method == "PATCH") | .outcome] | join(",")')" "fault,fault,fault" \
	"class saw three refused cancels"
is "$(pcall class GET "/classes/$aid" | jq -r .applyStatus)" ApplyRequest "the class is not cancelled yet"
is "$(api GET "/v1/sagas?status=failed" | jq -r '[.sagas[].id] | join(",")')" "$id" "GET /v1/sagas?status=failed lists it"
api POST "/v1/sagas/$id/cancel" >/dev/null
is "$HTTP_STATUS" 409 "cancel of a failed saga: 409 (it needs retry)"

clear_faults class
out=$("$SAGACTL" saga retry "$id" 2>"$TMP/retry.err"); rc=$?
is "$rc" 0 "sagactl saga retry ID exits 0"
like "$out" "$id.*compensating" "sagactl says the compensation resumed"
body=$(wait_status "$id" compensated 60)
ok $? "after the retry the saga is compensated"
is "$(jget "$body" '.steps[0].state')" compensated "apply: compensated"
is "$(pcall class GET "/classes/$aid" | jq -r .applyStatus)" CLASS_CANCELED "class row CLASS_CANCELED"
is "$(plog class "$id" | jq -r '[.[] | select(.method == "PATCH") | .outcome] | join(",")')" "fault,fault,fault,applied" \
	"class: the cancel was applied once, with the same key"
is "$(jget "$body" '[.history[] | select(.phase == "saga") | .event] | join(",")')" \
	"started,compensating,failed,retry_requested,compensating,compensated" \
	"saga events: compensating, failed, retry_requested, compensating, compensated"
unlike_err=$(jget "$body" .error)
ok "[[ ! \$unlike_err =~ 'saga retry' ]]" \
	"a compensated saga no longer tells the operator to run 'saga retry' (error: $unlike_err)"
api POST "/v1/sagas/$id/retry" >/dev/null
is "$HTTP_STATUS" 409 "retry of a compensated saga: 409"

done_testing
