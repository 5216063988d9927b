#!/bin/bash
# 21-failures.sh -- a failure at each step of the apply flow, and the participants' own records
# (operations logs ordered by mono_ns, rows) showing exactly the compensations in reverse order:
#   (a) class refuses the application (500 until exhausted, 400 at once): nothing to undo;
#   (b) payment declined (payAccount 0000...) or down: the class is cancelled, delivery untouched;
#   (c) delivery refuses (400): payment cancelled BEFORE the class, no delivery applied.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

start_participants || bail_out "participants did not start"
start_sagad || bail_out "sagad did not start"

# log_of ID...: the merged log entries whose Idempotency-Key belongs to one of the sagas ID...
log_of() {
	merged_log | jq -c --arg ids "$*" '($ids | split(" ")) as $s
		| [.[] | select((.idempotency_key // "" | split(":")[0]) as $k | $s | index($k))]'
}
states() { jget "$1" '.steps | map("\(.name)=\(.state)") | join(",")'; }

# ---- (a) the first step fails: nothing was done, nothing is compensated -------------------------
fault class '{"method":"POST","path":"/classes","status":500,"times":-1}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "a500"')")
clear_faults class
id=$(jget "$body" .id)
is "$HTTP_STATUS:$(jget "$body" .status)" "200:compensated" "(a) class 500: saga compensated"
is "$(states "$body")" "apply=failed,pay=pending,ship=pending" "(a) apply failed, pay and ship never ran"
is "$(jget "$body" '.steps[0].attempt')" 3 "(a) a 5xx is retried: 3 attempts (the default policy)"
like "$(jget "$body" .error)" 'step "apply" failed: status 500' "(a) saga error names the step and the status"
l=$(log_of "$id")
is "$(jget "$l" 'map("\(.service) \(.method) \(.outcome)") | join(",")')" \
	"class POST fault,class POST fault,class POST fault" "(a) class saw 3 refused POSTs with the saga's key, nothing else"
is "$(jget "$body" '[.history[] | select(.phase == "compensation")] | length')" 0 "(a) no compensation in the history"

fault class '{"method":"POST","path":"/classes","status":400,"times":1}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "a400"')")
id2=$(jget "$body" .id)
is "$HTTP_STATUS:$(jget "$body" .status):$(states "$body")" "200:compensated:apply=failed,pay=pending,ship=pending" \
	"(a) class 400: compensated, apply failed"
is "$(jget "$body" '.steps[0].attempt')" 1 "(a) a 400 is not retried"
is "$(log_of "$id2" | jq -r 'map("\(.service) \(.method) \(.outcome)") | join(",")')" "class POST fault" \
	"(a) class saw one refused POST"
is "$(merged_log | jq '[.[] | select(.method != "POST")] | length')" 0 "(a) no PATCH anywhere: nothing compensated"
is "$(pcall class GET /classes | jq '._embedded.classes | length')" 0 "(a) no class row exists"

# ---- (b) payment declined: the class is cancelled, nothing reaches delivery ---------------------
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.payAccount = "0000-1111-2222-3333"')")
id=$(jget "$body" .id)
pay_id=$(child_saga "$body" pay)
aid=$(jget "$body" '.steps[0].response.body.id')
is "$HTTP_STATUS:$(jget "$body" .status)" "200:compensated" "(b) payment declined: saga compensated"
is "$(states "$body")" "apply=compensated,pay=failed,ship=pending" "(b) apply compensated, pay failed, ship never ran"
like "$(jget "$body" .error)" 'body is false, expected true' "(b) error says the payment answered false"
l=$(log_of "$id" "$pay_id")
is "$(jget "$l" 'map("\(.service) \(.method) \(.path) \(.idempotency_key | split(":")[2])") | join(", ")')" \
	"class POST /classes action, payment POST /payments action, class PATCH /classes/$aid compensation" \
	"(b) records in order: class POST, payment POST (declined), class PATCH (cancel)"
is "$(jget "$l" '.[1] | "\(.applied) \(.changed) \(.response_body)"')" "1 0 false" \
	"(b) payment answered false and saved nothing"
is "$(jget "$l" '.[2] | "\(.idempotency_key) \(.request_body.applyStatus) \(.status)"')" \
	"$id:apply:compensation CLASS_CANCELED 200" "(b) class cancel: key <saga>:apply:compensation, applyStatus CLASS_CANCELED"
is "$(pcall class GET "/classes/$aid" | jq -r .applyStatus)" CLASS_CANCELED "(b) class row CLASS_CANCELED"
is "$(pcall payment GET "/payments/search/findByApplyId?applyId=$aid" | jq '._embedded.payments | length')" 0 \
	"(b) no payment row"
is "$(participant_log delivery | jq length)" 0 "(b) delivery received nothing"
is "$(participant_log payment | jq '[.[] | select(.method == "PATCH")] | length')" 0 \
	"(b) payment not compensated (the declined step did nothing)"

# payment down (500 on every attempt): same outcome, the failed step is not compensated
fault payment '{"method":"POST","path":"/payments","status":500,"times":-1}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "b500"')")
clear_faults payment
id=$(jget "$body" .id)
pay_id=$(child_saga "$body" pay)
aid=$(jget "$body" '.steps[0].response.body.id')
pay=$(api GET "/v1/sagas/$pay_id")
is "$(jget "$body" .status):$(states "$body")" "compensated:apply=compensated,pay=failed,ship=pending" \
	"(b) payment 500: compensated, apply compensated, pay failed"
is "$(jget "$pay" '"\(.status) \(.steps[0].state) \(.steps[0].attempt)"')" "compensated failed 3" \
	"(b) child pay saga: its step failed after 3 attempts"
l=$(log_of "$id" "$pay_id")
is "$(jget "$l" 'map("\(.service) \(.method) \(.outcome)") | join(",")')" \
	"class POST applied,payment POST fault,payment POST fault,payment POST fault,class PATCH applied" \
	"(b) 3 refused payments, then the class cancel; no payment PATCH"
is "$(pcall class GET "/classes/$aid" | jq -r .applyStatus)" CLASS_CANCELED "(b) class row CLASS_CANCELED"
is "$(participant_log delivery | jq length)" 0 "(b) delivery still received nothing"

# ---- (c) delivery refuses: payment cancelled before the class, in reverse order ------------------
fault delivery '{"method":"POST","path":"/deliveries","status":400,"times":1}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "c400"')")
id=$(jget "$body" .id)
pay_id=$(child_saga "$body" pay)
ship_id=$(child_saga "$body" ship)
aid=$(jget "$body" '.steps[0].response.body.id')
is "$HTTP_STATUS:$(jget "$body" .status)" "200:compensated" "(c) delivery 400: saga compensated"
is "$(states "$body")" "apply=compensated,pay=compensated,ship=failed" \
	"(c) sagad's steps: ship failed, pay compensated, apply compensated"
like "$(jget "$body" .error)" 'step "ship" failed: .*status 400' "(c) saga error names ship and the 400"
is "$(jget "$(api GET "/v1/sagas/$pay_id")" '"\(.status) \(.steps[0].state)"')" "compensated compensated" \
	"(c) child pay saga compensated"
is "$(jget "$(api GET "/v1/sagas/$ship_id")" '"\(.status) \(.steps[0].state) \(.steps[0].comp_attempt)"')" \
	"compensated failed 0" "(c) child ship saga: its step failed, not compensated"
l=$(log_of "$id" "$pay_id" "$ship_id")
is "$(jget "$l" 'map("\(.service) \(.method) \(.outcome)") | join(",")')" \
	"class POST applied,payment POST applied,delivery POST fault,payment PATCH applied,class PATCH applied" \
	"(c) mono_ns order: class, payment, delivery refused, then payment cancel BEFORE class cancel"
comp=$(jq -c '[.[] | select(.method == "PATCH")]' <<<"$l")
is "$(jget "$comp" 'map(.path) | join(" ")')" "/payments?applyId=$aid /classes/$aid" \
	"(c) compensations: PATCH /payments?applyId=$aid, then PATCH /classes/$aid"
is "$(jget "$comp" 'map(.idempotency_key) | join(" ")')" "$pay_id:pay:compensation $id:apply:compensation" \
	"(c) each compensation carries <saga>:<step>:compensation"
is "$(jget "$comp" 'map(.request_body | to_entries[0] | "\(.key)=\(.value)") | join(" ")')" \
	"payStaus=PaymentCancelled applyStatus=CLASS_CANCELED" "(c) compensation bodies"
is "$(pcall payment GET "/payments/search/findByApplyId?applyId=$aid" | jq -r '._embedded.payments | map(.payStaus) | join(",")')" \
	PaymentCancelled "(c) payment row PaymentCancelled"
is "$(pcall class GET "/classes/$aid" | jq -r .applyStatus)" CLASS_CANCELED "(c) class row CLASS_CANCELED"
is "$(pcall delivery GET "/deliveries/search/findByApplyId?applyId=$aid" | jq '._embedded.deliveries | length')" 0 \
	"(c) no delivery row: nothing applied on delivery"
is "$(participant_log delivery | jq '[.[] | select(.applied == 1)] | length')" 0 "(c) delivery applied nothing at all"
h=$(jq -r '[.history[] | select(.phase == "compensation" and .event != "dispatched") | .step] | join(",")' <<<"$body")
is "$h" "pay,apply" "(c) sagad's history: compensations pay then apply"

done_testing
