#!/bin/bash
# 20-happy.sh -- the happy path of seed 000 against the real sagad and participant processes:
# an application completes; each participant's own records (rows, operations log with
# Idempotency-Key and traceparent) show what sagad did; child sagas; history; wait=step:pay
# while shipping is slow; the pay, ship and cancel flows run on their own.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

TP_RE='^00-[0-9a-f]{32}-[0-9a-f]{16}-01$'
trace_id() { cut -d- -f2 <<<"$1"; }
span_id() { cut -d- -f3 <<<"$1"; }
# log_entry NAME JQ-SELECT: the first operations-log entry of participant NAME matching.
log_entry() { participant_log "$1" | jq -c "[.[] | select($2)][0] // empty"; }

start_participants || bail_out "participants did not start"
start_sagad || bail_out "sagad did not start"

# ---- one application, end to end ------------------------------------------------------------
input=$(seed_input)
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$input" -D "$TMP/h1")
is "$HTTP_STATUS" 200 "apply with the seed's input answers 200 (wait=completion)"
id=$(jget "$body" .id)
like "$id" '^[0-9A-HJKMNP-TV-Z]{26}$' "saga id is a ULID"
is "$(header_value "$TMP/h1" Location)" "/v1/sagas/$id" "Location: /v1/sagas/ID"
is "$(jget "$body" .status)" completed "saga completed"
is "$(jget "$body" '.steps | map("\(.name)=\(.state)") | join(",")')" \
	"apply=succeeded,pay=succeeded,ship=succeeded" "every step succeeded"
is "$(jq -r '.output.applyId | type' <<<"$body")" string "output.applyId is a String"
apply_id=$(jget "$body" .output.applyId)
class_id=$(jget "$body" '.steps[0].response.body.id')
is "$apply_id" "$class_id" "output.applyId is the class id ($class_id) as a String"
is "$(jget "$body" .output.applyStatus)" ApplyRequest "output.applyStatus ApplyRequest"
body2=$(api GET "/v1/sagas/$id")
is "$HTTP_STATUS:$(jget "$body2" .status)" "200:completed" "GET /v1/sagas/ID reads it back"

# The participants' own records.
row=$(pcall class GET "/classes/$apply_id")
is "$HTTP_STATUS:$(jget "$row" '"\(.applyStatus) \(.studentName) \(.courseId) \(.payAccount)"')" \
	"200:ApplyRequest 학생2 2 1234-2334-4556-7890" "class row: ApplyRequest with the input (courseId Long)"
pays=$(pcall payment GET "/payments/search/findByApplyId?applyId=$apply_id")
is "$(jget "$pays" '._embedded.payments | length')" 1 "one payment for that applyId"
is "$(jget "$pays" '._embedded.payments[0] | "\(.payStaus) \(.applyId|type) \(.applyId) \(.studentName)"')" \
	"PaymentAprroved string $apply_id 학생2" "payment PaymentAprroved with applyId as a String"
dels=$(pcall delivery GET "/deliveries/search/findByApplyId?applyId=$apply_id")
is "$(jget "$dels" '._embedded.deliveries | length')" 1 "one delivery for that applyId"
is "$(jget "$dels" '._embedded.deliveries[0] | "\(.deliveryStatus) \(.name) \(.addr) \(.telelephoneInfo)"')" \
	"DeliveryStart 학생2 SEOUL NAMGU 010-1234-2345" "delivery DeliveryStart with name/addr/telelephoneInfo"

# Child sagas.
pay_id=$(child_saga "$body" pay)
ship_id=$(child_saga "$body" ship)
pay=$(api GET "/v1/sagas/$pay_id")
is "$(jget "$pay" '"\(.flow) \(.status) \(.parent_id)"')" "pay completed $id" "child saga pay: completed, parent_id"
is "$(jget "$pay" '.output | "\(.applyId) \(.payApproved)"')" "$apply_id true" "pay's output: applyId, payApproved true"
ship=$(api GET "/v1/sagas/$ship_id")
is "$(jget "$ship" '"\(.flow) \(.status) \(.parent_id)"')" "ship completed $id" "child saga ship: completed, parent_id"
is "$(jget "$ship" '.output.deliveryStatus')" DeliveryStart "ship's output: DeliveryStart"
kids=$(api GET "/v1/sagas?limit=10" | jq -r --arg p "$id" '[.sagas[] | select(.parent_id == $p) | .flow] | sort | join(",")')
is "$kids" "pay,ship" "GET /v1/sagas lists the two children with parent_id"

# Idempotency-Key and traceparent on every participant request.
ec=$(log_entry class '.method == "POST"')
ep=$(log_entry payment '.method == "POST"')
ed=$(log_entry delivery '.method == "POST"')
is "$(jget "$ec" .idempotency_key)" "$id:apply:action" "class POST: Idempotency-Key <saga>:apply:action"
is "$(jget "$ep" .idempotency_key)" "$pay_id:pay:action" "payment POST: Idempotency-Key <pay saga>:pay:action"
is "$(jget "$ed" .idempotency_key)" "$ship_id:ship:action" "delivery POST: Idempotency-Key <ship saga>:ship:action"
tc=$(jget "$ec" .traceparent); tpay=$(jget "$ep" .traceparent); td=$(jget "$ed" .traceparent)
like "$tc" "$TP_RE" "class request carries a W3C traceparent ($tc)"
like "$tpay" "$TP_RE" "payment request carries a W3C traceparent"
like "$td" "$TP_RE" "delivery request carries a W3C traceparent"
is "$(jget "$ep" '.request_body | "\(.applyId) \(.payMethod) \(.payAccount)"')" "$apply_id BANK 1234-2334-4556-7890" \
	"payment request body: applyId String, payMethod, payAccount"
is "$(jq -s -r 'map(.applied) | join(",")' <<<"$ec$ep$ed")" "1,1,1" "each participant applied its request once"
order=$(merged_log | jq -r '[.[] | select(.method == "POST") | .service] | join(",")')
is "$order" "class,payment,delivery" "mono_ns order across processes: class, payment, delivery"

# History: one outcome row per attempt, with request summary, status and timings.
h=$(jq -c '[.history[] | select(.step == "apply")]' <<<"$body")
is "$(jget "$h" 'length')" 1 "history: one row for the apply step's one attempt"
is "$(jget "$h" '.[0] | "\(.phase) \(.attempt) \(.event) \(.status)"')" "action 1 succeeded 201" \
	"history row: action, attempt 1, succeeded, status 201"
like "$(jget "$h" '.[0].request')" "^POST $CLASS_URL/classes \\{.*\"applyStatus\":\"ApplyRequest\"" \
	"history row: request summary 'POST URL/classes {body}'"
ok "jq -e '.[0] | (.started_at|type) == \"string\" and .started_at <= .ended_at and (.ms|type) == \"number\" and .ms >= 0' <<<'$h'" \
	"history row: started_at <= ended_at, ms"
ph=$(jq -c '[.history[] | select(.step == "pay" and .phase == "action")]' <<<"$pay")
is "$(jget "$ph" 'map("\(.attempt):\(.event):\(.status)") | join(",")')" "1:succeeded:200" "pay saga's history: one attempt, 200"
like "$(jget "$ph" '.[0].request')" "^POST $PAYMENT_URL/payments " "pay saga's history: request summary"
dups=$(jq '[.history[] | select(.event == "succeeded" or .event == "failed" or .event == "timed_out")
	| "\(.step)/\(.phase)/\(.attempt)"] | (length - (unique | length))' <<<"$body")
is "$dups" 0 "no attempt has two outcome rows"
is "$(jget "$body" '[.history[] | select(.phase == "saga") | .event] | join(",")')" "started,completed" \
	"saga events: started, completed"
ok "jq -e '[.history[].seq] | . == sort' <<<'$body'" "history is in seq order"

# ---- wait=step:pay answers once the payment (pivot) succeeded, shipping still slow ---------------
# The delivery answers 3 s late (under ship's 5 s timeout): the answer at step:pay comes well
# before it, on a loaded machine too.
fault delivery '{"method":"POST","path":"/deliveries","status":0,"delay_ms":3000,"times":1}' >/dev/null
t0=$(date +%s%N)
body=$(api POST '/v1/flows/apply/sagas?wait=step:pay' "$(seed_input '.studentName = "slow"')" -D "$TMP/h2")
ms=$((($(date +%s%N) - t0) / 1000000))
is "$HTTP_STATUS" 200 "wait=step:pay answers 200"
# That it answered before the delivery did is shown by the steps below (ship still running); a
# time bound would only measure how loaded the machine is.
diag "wait=step:pay answered after ${ms} ms (the delivery answers after 3 s)"
sid=$(jget "$body" .id)
is "$(jget "$body" '"\(.status) " + (.steps | map("\(.name)=\(.state)") | join(","))')" \
	"running apply=succeeded,pay=succeeded,ship=running" "saga still running: pay succeeded, ship running"
is "$(header_value "$TMP/h2" Location)" "/v1/sagas/$sid" "Location header on the step answer"
aid=$(jget "$body" '.steps[0].response.body.id')
pays=$(pcall payment GET "/payments/search/findByApplyId?applyId=$aid")
is "$(jget "$pays" '._embedded.payments[0].payStaus')" PaymentAprroved "the payment is approved when the answer comes"
body=$(wait_status "$sid" completed 60)
ok $? "the saga then completes"
dels=$(pcall delivery GET "/deliveries/search/findByApplyId?applyId=$aid")
is "$(jget "$dels" '._embedded.deliveries[0].deliveryStatus')" DeliveryStart "delivery DeliveryStart after the delay"
# The ship step's outcome row must cover the child saga's duration (the delivery took 3 s).
shiprow=$(jq -c '[.history[] | select(.step == "ship" and .phase == "action" and .event == "succeeded")][0]' <<<"$body")
ok "jq -e '.ms >= 2900 and .ended_at > .started_at' <<<'$shiprow'" \
	"history: the ship attempt's timing covers the 3 s child saga (got $(jget "$shiprow" '"ms=\(.ms) \(.started_at)..\(.ended_at)"'))"

# ---- the sub-flows run on their own -------------------------------------------------------------
body=$(api POST '/v1/flows/pay/sagas?wait=completion' \
	'{"applyId":"900","payMethod":"CARD","payAccount":"9999-1","studentName":"solo"}')
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "pay flow alone: completed"
is "$(jq -c '[.parent_id, .output]' <<<"$body")" '[null,{"applyId":"900","payApproved":true}]' \
	"pay alone: no parent, output {applyId, payApproved}"
pays=$(pcall payment GET '/payments/search/findByApplyId?applyId=900')
is "$(jget "$pays" '._embedded.payments | map(.payStaus) | join(",")')" PaymentAprroved "payment 900 PaymentAprroved"
pid=$(jget "$body" .id)
is "$(log_entry payment '.request_body.applyId == "900"' | jq -r .idempotency_key)" "$pid:pay:action" \
	"pay alone: Idempotency-Key of its own saga"

body=$(api POST '/v1/flows/ship/sagas?wait=completion' \
	'{"applyId":"901","addr":"JOONGU","name":"name2","telelephoneInfo":"012-2345"}')
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "ship flow alone: completed"
did=$(jget "$body" .output.deliveryId)
row=$(pcall delivery GET "/deliveries/$did")
is "$(jget "$row" '"\(.applyId) \(.deliveryStatus) \(.addr) \(.name) \(.telelephoneInfo)"')" \
	"901 DeliveryStart JOONGU name2 012-2345" "the seed's sample delivery row (1 | JOONGU | DeliveryStart | name2 | 012-2345)"

# One saga with several call steps: the cancel flow.  One trace id for all its requests, a new
# span per request.
body=$(api POST '/v1/flows/cancel/sagas?wait=completion' "{\"applyId\":\"$apply_id\"}")
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "cancel flow on the first application: completed"
cid=$(jget "$body" .id)
tps=$(merged_log | jq -r --arg c "$cid" '[.[] | select(.idempotency_key // "" | startswith($c + ":")) | .traceparent] | .[]')
is "$(wc -l <<<"$tps")" 3 "cancel saga: three participant requests"
is "$(cut -d- -f2 <<<"$tps" | sort -u | wc -l)" 1 "... all with the same trace id"
is "$(cut -d- -f3 <<<"$tps" | sort -u | wc -l)" 3 "... each with its own span id"
isnt "$(trace_id "$(head -n1 <<<"$tps")")" "$(trace_id "$tc")" "another saga, another trace id"

done_testing
