#!/bin/bash
# 29-dsl-features.sh -- the flow features the seeds need, in general form, against the seed 000
# participants: a parallel group (both calls in flight together; all must succeed; a failure
# compensates the group's finished steps before the steps before it), `when` (skipped steps),
# a background step, business keys and the status view (GET /v1/sagas?key.NAME=, sagactl saga
# list --key), saga steps (cancel a completed saga, cancel a running one and wait for it, a
# cancel that finds nothing, find with states), a fallback value, and a saga step that is
# waiting when sagad is killed (it waits again after the restart).
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

FLOWS_DIR="$TMP/flows"
mkdir -p "$FLOWS_DIR"
cat >"$FLOWS_DIR/feat-par.yaml" <<'EOF'
name: feat-par
version: 1
input:
  student: { type: string, required: true }
  account: { type: string, default: "1234-5678" }
  notify: { type: boolean, default: true }
keys:
  applyId: "${string(steps.apply.response.body.id)}"
  student: "${input.student}"
participants:
  class: { url: "${env.CLASS_URL}" }
  payment: { url: "${env.PAYMENT_URL}", timeout: 15s }
  delivery: { url: "${env.DELIVERY_URL}", timeout: 5s }
steps:
  - name: apply
    participant: class
    action: { method: POST, path: /classes, body: { studentName: "${input.student}" },
              success: { status: [201] } }
    compensation: { method: PATCH, path: "/classes/${steps.apply.response.body.id}",
                    body: { applyStatus: CLASS_CANCELED }, success: { status: [200, 404] } }
  - name: goods
    parallel:
      - name: pay
        participant: payment
        retry: { max_attempts: 1 }
        action: { method: POST, path: /payments, success: { body: true },
                  body: { applyId: "${string(steps.apply.response.body.id)}",
                          payAccount: "${input.account}" } }
        compensation: { method: PATCH, path: /payments, body: { payStaus: PaymentCancelled },
                        query: { applyId: "${string(steps.apply.response.body.id)}" },
                        success: { status: [200, 404] } }
      - name: ship
        participant: delivery
        action: { method: POST, path: /deliveries, success: { status: [201] },
                  body: { applyId: "${string(steps.apply.response.body.id)}" } }
        compensation: { method: PATCH, path: /deliveries, body: { deliveryStatus: DELIVERY_CANCEL },
                        query: { applyId: "${string(steps.apply.response.body.id)}" },
                        success: { status: [200, 404] } }
  - name: notify
    when: "${input.notify}"
    background: true
    participant: delivery
    action: { method: GET, path: /deliveries/search/findByApplyId,
              query: { applyId: "${string(steps.apply.response.body.id)}" } }
EOF
cat >"$FLOWS_DIR/feat-cancel.yaml" <<'EOF'
name: feat-cancel
version: 1
input: { applyId: { type: string, required: true } }
keys: { applyId: "${input.applyId}" }
steps:
  - name: undo
    saga: { flow: feat-par, key: { applyId: "${input.applyId}" }, do: cancel, if_missing: skip }
EOF
cat >"$FLOWS_DIR/feat-find.yaml" <<'EOF'
name: feat-find
version: 1
input: { student: { type: string, required: true } }
steps:
  - name: found
    saga: { flow: feat-par, key: { student: "${input.student}" }, do: find, states: [completed] }
output: { applyId: "${steps.found.response.body.keys.applyId}" }
http_status: { completed: 201, compensated: 409 }
EOF
cat >"$FLOWS_DIR/feat-breaker.yaml" <<'EOF'
name: feat-breaker
version: 1
input: { account: { type: string, default: "1234" } }
participants:
  payment:
    url: "${env.PAYMENT_URL}"
    circuit_breaker: { consecutive_failures: 2, open: 6s }
steps:
  - name: pay
    participant: payment
    pivot: true
    retry: { max_attempts: 1 }
    action: { method: POST, path: /payments, body: { applyId: "cb", payAccount: "${input.account}" },
              success: { body: true } }
EOF
cat >"$FLOWS_DIR/feat-fallback.yaml" <<'EOF'
name: feat-fallback
version: 1
input: { account: { type: string, required: true } }
participants:
  payment: { url: "${env.PAYMENT_URL}" }
steps:
  - name: pay
    participant: payment
    action: { method: POST, path: /payments, body: { applyId: "fb", payAccount: "${input.account}" },
              success: { body: true } }
    fallback: { value: false }
output: { paid: "${steps.pay.response.body}" }
EOF

start_participants || bail_out "participants did not start"
start_sagad || bail_out "sagad did not start"

states() { jget "$1" '.steps | map("\(.name)=\(.state)") | join(",")'; }
posts() { # SERVICE: number of POST requests the participant logged
	participant_log "$1" | jq '[.[] | select(.method == "POST")] | length'
}
delivery_posts_at_least() { [ "$(posts delivery)" -ge "$1" ]; }

# ---- a parallel group: both in flight at once, the join waits for both ------------------------
# The payment answers 5 s late: time enough to see the delivery call leave and pay still running
# on a loaded machine.
fault payment '{"method":"POST","path":"/payments","status":0,"delay_ms":5000,"times":1}' >/dev/null
d0=$(posts delivery)
body=$(api POST '/v1/flows/feat-par/sagas?wait=none' '{"student":"par-1"}')
id=$(jget "$body" .id)
wait_until 60 delivery_posts_at_least $((d0 + 1))
ok $? "the delivery request left while the payment was still being answered"
is "$(jget "$(api GET "/v1/sagas/$id")" '.steps[1].state')" running "... pay still running then (parallel, not in turn)"
body=$(wait_status "$id" completed 60)
ok $? "the saga completes once both steps of the group succeeded"
is "$(states "$body")" "apply=succeeded,pay=succeeded,ship=succeeded,notify=succeeded" \
	"every step succeeded; the background notify too"
aid=$(jget "$body" '.steps[0].response.body.id')
is "$(jget "$body" '.keys | "\(.applyId) \(.student)"')" "$aid par-1" "business keys recorded (applyId from a response, student from the input)"

# ---- when false: skipped ------------------------------------------------------------------------
body=$(api POST '/v1/flows/feat-par/sagas?wait=completion' '{"student":"par-2","notify":false}')
is "$(jget "$body" .status):$(jget "$body" '.steps[3].state')" "completed:skipped" "when false: the step is skipped, the saga completes"
is "$(jget "$(api GET "/v1/sagas/$(jget "$body" .id)")" '[.history[] | select(.event == "skipped")] | length')" 1 \
	"... a skipped event in the history"

# ---- a failure in the group: the group's finished step is undone, then the steps before --------
body=$(api POST '/v1/flows/feat-par/sagas?wait=completion' '{"student":"par-3","account":"0000-1111"}')
fid=$(jget "$body" .id)
faid=$(jget "$body" '.steps[0].response.body.id')
is "$(jget "$body" .status):$(states "$body")" \
	"compensated:apply=compensated,pay=failed,ship=compensated,notify=pending" \
	"payment declined: ship compensated, apply compensated, notify never ran"
l=$(merged_log | jq -c --arg a "$fid:" '[.[] | select(.idempotency_key // "" | startswith($a)) | select(.method == "PATCH") | .service]')
is "$l" '["delivery","class"]' "compensation order: the group's delivery first, then the class"
is "$(pcall delivery GET "/deliveries/search/findByApplyId?applyId=$faid" | jq -r '._embedded.deliveries | map(.deliveryStatus) | join(",")')" \
	DELIVERY_CANCEL "the participant's delivery row is DELIVERY_CANCEL"

# ---- business keys: the status view --------------------------------------------------------------
body=$(api GET "/v1/sagas?key.student=par-3")
is "$HTTP_STATUS:$(jget "$body" '.sagas | length')" "200:1" "GET /v1/sagas?key.student=par-3: one saga"
is "$(jget "$body" '.sagas[0] | "\(.id) \(.status) \(.keys.applyId)"')" "$fid compensated $faid" "... with its status and keys"
is "$(jget "$body" '.sagas[0].steps | map("\(.name)=\(.state)") | join(",")')" \
	"apply=compensated,pay=failed,ship=compensated,notify=pending" "... and every step's state (the status view)"
api GET "/v1/sagas?key.student=a&key.applyId=1" >/dev/null
is "$HTTP_STATUS" 400 "two key filters: 400"
api GET "/v1/sagas?key.=1" >/dev/null
is "$HTTP_STATUS" 400 "key. without a name: 400"
out=$("$SAGACTL" --url "$SAGAD_URL" saga list --key "student=par-3" 2>&1)
like "$out" "$fid +feat-par@1 +compensated .*apply=compensated pay=failed ship=compensated" "sagactl saga list --key student=par-3: the status view"
"$SAGACTL" --url "$SAGAD_URL" saga list --key student >/dev/null 2>&1
is "$?" 2 "sagactl saga list --key without =VALUE: usage error (exit 2)"

# ---- saga steps: cancel a completed saga ------------------------------------------------------------
body=$(api POST '/v1/flows/feat-cancel/sagas?wait=completion' "{\"applyId\":\"$aid\"}")
is "$(jget "$body" .status):$(jget "$body" '.steps[0].response.body | "\(.id) \(.status)"')" "completed:$id compensated" \
	"cancel flow: completes once the completed feat-par saga is compensated"
target=$(api GET "/v1/sagas/$id")
is "$(jget "$target" .status):$(states "$target")" "compensated:apply=compensated,pay=compensated,ship=compensated,notify=not_compensated" \
	"the target went completed -> compensating -> compensated (notify has nothing to undo)"
like "$(jget "$target" .error)" "cancelled by saga $(jget "$body" .id) \\(flow feat-cancel, step undo\\)" "... its error names the cancelling saga"
is "$(pcall payment GET "/payments/search/findByApplyId?applyId=$aid" | jq -r '._embedded.payments | map(.payStaus) | join(",")')" \
	PaymentCancelled "the participant's payment row is PaymentCancelled"
body=$(api POST '/v1/flows/feat-cancel/sagas?wait=completion' "{\"applyId\":\"$aid\"}")
is "$(jget "$body" .status):$(jget "$body" '.steps[0].response.body.status')" "completed:compensated" \
	"cancelling again: nothing more to do, completes at once"
body=$(api GET "/v1/sagas?key.applyId=$aid")
is "$(jget "$body" '[.sagas[].flow] | sort | join(",")')" "feat-cancel,feat-cancel,feat-par" \
	"status view by applyId: the saga and both cancel sagas"

# ---- a cancel that finds nothing (if_missing: skip) -----------------------------------------------
body=$(api POST '/v1/flows/feat-cancel/sagas?wait=completion' '{"applyId":"999999"}')
is "$(jget "$body" .status):$(jget "$body" '.steps[0].response | "\(.status) \(.body.found)"')" "completed:404 false" \
	"nothing to cancel: the step succeeds with found=false (a cancel before its saga)"

# ---- find with states -------------------------------------------------------------------------------
body=$(api POST '/v1/flows/feat-find/sagas?wait=completion' '{"student":"par-2"}')
is "$HTTP_STATUS:$(jget "$body" .status)" 201:completed "find a completed saga by key: completes (http_status: completed 201)"
is "$(jget "$body" .output.applyId)" "$(jget "$(api GET '/v1/sagas?key.student=par-2')" '.sagas[0].keys.applyId')" \
	"... and reads the target's keys"
body=$(api POST '/v1/flows/feat-find/sagas?wait=completion' '{"student":"par-3"}')
is "$HTTP_STATUS:$(jget "$body" .status)" 409:compensated "find a compensated saga where states: [completed]: the step fails (http_status: compensated 409)"
like "$(jget "$body" .error)" "is compensated, which this step does not accept" "... saying why"

# ---- cancel a running saga: waits for the in-flight step, then for the compensation ---------------
fault payment '{"method":"POST","path":"/payments","status":0,"delay_ms":6000,"times":1}' >/dev/null
body=$(api POST '/v1/flows/feat-par/sagas?wait=step:apply' '{"student":"par-4"}')
rid=$(jget "$body" .id)
raid=$(jget "$body" '.steps[0].response.body.id')
body=$(api POST '/v1/flows/feat-cancel/sagas?wait=none' "{\"applyId\":\"$raid\"}")
cid=$(jget "$body" .id)
# The cancel saga's step reached the target once it is compensating (its payment answers 6 s
# late: it is still in flight then).
saga_status_is() { [ "$(jget "$(api GET "/v1/sagas/$1")" .status)" = "$2" ]; }
wait_until 60 saga_status_is "$rid" compensating
is "$(jget "$(api GET "/v1/sagas/$cid")" '"\(.status) \(.steps[0].state)"')" "running running" \
	"cancel of a running saga: the saga step waits"
is "$(jget "$(api GET "/v1/sagas/$rid")" .status)" compensating "... the target is compensating, its payment still in flight"
body=$(wait_status "$cid" completed 60)
ok $? "the cancel saga completes once the target is compensated"
target=$(api GET "/v1/sagas/$rid")
is "$(jget "$target" .status):$(states "$target")" "compensated:apply=compensated,pay=compensated,ship=compensated,notify=pending" \
	"the payment that succeeded late was compensated too"

# ---- a waiting saga step survives kill -9 -----------------------------------------------------------
fault payment '{"method":"POST","path":"/payments","status":0,"delay_ms":3000,"times":1}' >/dev/null
body=$(api POST '/v1/flows/feat-par/sagas?wait=step:apply' '{"student":"par-5"}')
kid=$(jget "$body" .id)
kaid=$(jget "$body" '.steps[0].response.body.id')
body=$(api POST '/v1/flows/feat-cancel/sagas?wait=none' "{\"applyId\":\"$kaid\"}")
kcid=$(jget "$body" .id)
wait_until 60 saga_status_is "$kid" compensating   # the cancel saga's step is waiting on it
kill9_sagad
start_sagad || bail_out "sagad did not restart"
body=$(wait_status "$kcid" completed 60)
ok $? "after kill -9 the cancel saga's step waits again and completes"
is "$(jget "$(api GET "/v1/sagas/$kid")" .status)" compensated "... and its target is compensated"

# ---- fallback value -----------------------------------------------------------------------------------
body=$(api POST '/v1/flows/feat-fallback/sagas?wait=completion' '{"account":"0000-2222"}')
is "$(jq -r '"\(.status):\(.output.paid)"' <<<"$body")" "completed:false" \
	"a declined payment with fallback {value: false}: the step succeeds with body false"
is "$(jq -r '"\(.steps[0].response.fallback):\(.steps[0].state)"' <<<"$body")" "true:succeeded" \
	"... its response says fallback: true"

# ---- circuit breaker: opens after failures, new starts fail fast with 503, recovers -----------------
# The breaker stays open 6 s: the two failing sagas and the refused start must fit in that window
# on a loaded machine (with 2 s, ASan under load let the third start through as a probe).
fault payment '{"method":"POST","path":"/payments","status":503,"times":100}' >/dev/null
p0=$(posts payment)
for n in 1 2; do
	body=$(api POST '/v1/flows/feat-breaker/sagas?wait=completion' '{}')
	is "$(jget "$body" .status)" compensated "breaker: saga $n fails on the 503"
done
hdr=$(curl -s -D - -o "$TMP/cb.json" -X POST -H 'Content-Type: application/json' -d '{}' \
	"$SAGAD_URL/v1/flows/feat-breaker/sagas?wait=completion")
like "$hdr" "^HTTP/1.1 503" "pivot breaker open: the next start is refused with 503 at once"
retry_after=$(tr -d '\r' <<<"$hdr" | awk -F': ' 'tolower($1) == "retry-after" {print $2}')
ok "$([ "${retry_after:-0}" -ge 1 ] && [ "${retry_after:-0}" -le 6 ]; echo $?)" "... with Retry-After 1-6 s (got '${retry_after}')"
is "$(jq -r .error.code "$TMP/cb.json")" EOPEN "... code EOPEN"
like "$(jq -r .error.message "$TMP/cb.json")" "participant payment .* circuit breaker is open" "... a message naming the participant"
is "$(( $(posts payment) - p0 ))" 2 "the payment participant saw only the two failing calls"
like "$(curl -s "$SAGAD_URL/metrics")" 'sagad_breaker_state\{participant="payment",state="open"\} 1' "/metrics: the breaker is open"
clear_faults payment
sleep 6.2
body=$(api POST '/v1/flows/feat-breaker/sagas?wait=completion' '{}')
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "after the open period a probe goes through and the saga completes"
body=$(api POST '/v1/flows/feat-breaker/sagas?wait=completion' '{}')
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "the breaker closed: the next saga completes too"
like "$(curl -s "$SAGAD_URL/metrics")" 'sagad_breaker_opened_total\{participant="payment"\} 1' "/metrics: opened once"

done_testing
