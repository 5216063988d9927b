#!/bin/bash
# 23-cancel.sh -- cancelling: a running saga cancelled while shipping is slow compensates
# everything (the delivery that was in flight too) in reverse order; cancel is idempotent while
# compensating, 409 once ended, 404 when unknown.  The `cancel` flow cancels a completed
# application by applyId (class, then payment, then delivery).
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

start_participants || bail_out "participants did not start"
start_sagad || bail_out "sagad did not start"

states() { jget "$1" '.steps | map("\(.name)=\(.state)") | join(",")'; }
delivery_posts() { [ "$(participant_log delivery | jq '[.[] | select(.method == "POST")] | length')" -ge "$1" ]; }

# ---- cancel a running saga while ship is slow --------------------------------------------------
# (4 s: the delivery is still in flight when the cancel comes, on a loaded machine too)
fault delivery '{"method":"POST","path":"/deliveries","status":0,"delay_ms":4000,"times":1}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=step:pay' "$(seed_input '.studentName = "cancelme"')")
id=$(jget "$body" .id)
aid=$(jget "$body" '.steps[0].response.body.id')
is "$HTTP_STATUS:$(jget "$body" .status):$(states "$body")" "200:running:apply=succeeded,pay=succeeded,ship=running" \
	"saga running, ship in flight"
wait_until 60 delivery_posts 1
ok $? "the delivery request has reached the participant (it applies, then answers late)"

body=$(api POST "/v1/sagas/$id/cancel")
is "$HTTP_STATUS" 202 "POST /v1/sagas/ID/cancel: 202"
is "$(jget "$body" '"\(.id) \(.status) \(.cancel_requested)"')" "$id compensating true" \
	"answer: the saga, compensating, cancel_requested true"
body=$(api POST "/v1/sagas/$id/cancel")
is "$HTTP_STATUS:$(jget "$body" .status)" "202:compensating" "cancel again while compensating: 202 (idempotent)"
is "$(jget "$(api GET "/v1/sagas/$id")" '[.history[] | select(.event == "cancel_requested")] | length')" 1 \
	"... recorded once (one cancel_requested event)"

body=$(wait_status "$id" compensated 60)
ok $? "the saga ends compensated"
is "$(jget "$body" .error)" "cancelled by request" "error: cancelled by request"
is "$(jget "$body" '.steps[0:2] | map("\(.name)=\(.state)") | join(",")')" "apply=compensated,pay=compensated" \
	"apply and pay compensated"
ship_id=$(child_saga "$body" ship)
pay_id=$(child_saga "$body" pay)
ship=$(api GET "/v1/sagas/$ship_id")
is "$(jget "$ship" '"\(.status) \(.steps[0].state)"')" "compensated compensated" \
	"child ship saga: the delivery that succeeded late was compensated"
l=$(merged_log | jq -c --arg a "$id:" --arg p "$pay_id:" --arg s "$ship_id:" \
	'[.[] | select(.idempotency_key // "" | startswith($a) or startswith($p) or startswith($s))]')
is "$(jget "$l" 'map("\(.service) \(.method)") | join(",")')" \
	"class POST,payment POST,delivery POST,delivery PATCH,payment PATCH,class PATCH" \
	"mono_ns order: forward class, payment, delivery; then reverse: delivery, payment, class"
is "$(jget "$l" '[.[] | select(.method == "PATCH") | "\(.path) \(.idempotency_key | split(":")[1:] | join(":"))"] | join(", ")')" \
	"/deliveries?applyId=$aid ship:compensation, /payments?applyId=$aid pay:compensation, /classes/$aid apply:compensation" \
	"compensation requests and their keys"
dpost=$(jq '[.[] | select(.service == "delivery" and .method == "POST")][0]' <<<"$l")
is "$(jget "$dpost" '"\(.applied) \(.status)"')" "1 201" "the delivery was applied (201, answered late)"
is "$(pcall delivery GET "/deliveries/search/findByApplyId?applyId=$aid" | jq -r '._embedded.deliveries | map(.deliveryStatus) | join(",")')" \
	DELIVERY_CANCEL "delivery row DELIVERY_CANCEL"
is "$(pcall payment GET "/payments/search/findByApplyId?applyId=$aid" | jq -r '._embedded.payments | map(.payStaus) | join(",")')" \
	PaymentCancelled "payment row PaymentCancelled"
is "$(pcall class GET "/classes/$aid" | jq -r .applyStatus)" CLASS_CANCELED "class row CLASS_CANCELED"

body=$(api POST "/v1/sagas/$id/cancel")
is "$HTTP_STATUS" 409 "cancel of a compensated saga: 409"
is "$(jget "$body" .error.code)" ESTATE "... JSON error with a code"
like "$(jget "$body" .error.message)" "already compensated" "... and a message saying it already ended"
body=$(api POST "/v1/sagas/01ZZZZZZZZZZZZZZZZZZZZZZZZ/cancel")
is "$HTTP_STATUS" 404 "cancel of an unknown id: 404"
like "$(jget "$body" .error.message)" 'no saga with id "01ZZZZZZZZZZZZZZZZZZZZZZZZ"' "... JSON error naming the id"
api GET "/v1/sagas/$id/cancel" >/dev/null
is "$HTTP_STATUS" 405 "GET on the cancel route: 405"

# ---- a completed saga cannot be cancelled; the cancel flow undoes it ----------------------------
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "done"')")
id=$(jget "$body" .id)
aid=$(jget "$body" .output.applyId)
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "a second application completed (applyId $aid)"
body=$(api POST "/v1/sagas/$id/cancel")
is "$HTTP_STATUS:$(jget "$body" .error.code)" "409:ESTATE" "cancel of a completed saga: 409"
n_before=$(merged_log | jq length)
body=$(api POST '/v1/flows/cancel/sagas?wait=completion' "{\"applyId\":\"$aid\"}")
cid=$(jget "$body" .id)
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "cancel flow by applyId: completed"
is "$(states "$body")" "cancel_class=succeeded,cancel_payment=succeeded,cancel_delivery=succeeded" "its three steps succeeded"
l=$(merged_log | jq -c --arg c "$cid:" '[.[] | select(.idempotency_key // "" | startswith($c))]')
is "$(jget "$l" 'map("\(.service) \(.method) \(.path)") | join(", ")')" \
	"class PATCH /classes/$aid, payment PATCH /payments?applyId=$aid, delivery PATCH /deliveries?applyId=$aid" \
	"mono_ns order: class cancel first, then payment, then delivery (the seed's cancel chain)"
is "$(jget "$l" 'map(.traceparent | split("-")[1]) | unique | length')" 1 "one trace id for the three steps of the cancel saga"
is "$(merged_log | jq length)" "$((n_before + 3))" "nothing else was sent"
is "$(pcall class GET "/classes/$aid" | jq -r .applyStatus)" CLASS_CANCELED "class CLASS_CANCELED"
is "$(pcall payment GET "/payments/search/findByApplyId?applyId=$aid" | jq -r '._embedded.payments | map(.payStaus) | join(",")')" \
	PaymentCancelled "payment PaymentCancelled"
is "$(pcall delivery GET "/deliveries/search/findByApplyId?applyId=$aid" | jq -r '._embedded.deliveries | map(.deliveryStatus) | join(",")')" \
	DELIVERY_CANCEL "delivery DELIVERY_CANCEL"
is "$(jget "$(api GET "/v1/sagas/$id")" .status)" completed "the apply saga itself stays completed"

# cancel flow for an application that does not exist: the class answers 404, nothing else runs
body=$(api POST '/v1/flows/cancel/sagas?wait=completion' '{"applyId":"424242"}')
is "$(jget "$body" .status):$(states "$body")" \
	"compensated:cancel_class=failed,cancel_payment=pending,cancel_delivery=pending" \
	"cancel flow for an unknown applyId: the class 404 fails it before payment/delivery are touched"

done_testing
