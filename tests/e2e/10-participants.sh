#!/bin/bash
# 10-participants.sh -- smoke test of the example participants alone (no sagad): the seed-000
# contracts, Idempotency-Key replay, fault injection, persistence across restarts, and the
# operations log ordering events across processes.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

count_log() {   # NAME JQ-SELECT: number of operations-log entries matching
	participant_log "$1" | jq "[.[] | select($2)] | length"
}

start_participants
ok $? "class, payment and delivery started"
like "$CLASS_URL" '^http://127\.0\.0\.1:[0-9]+$' "CLASS_URL exported"
body=$(curl -s "$PAYMENT_URL/_control/health")
is "$(jget "$body" .status)" UP "payment health is UP"

# ---- class: Spring Data REST style ----------------------------------------------------------
body=$(pcall class POST /classes '{"studentName":"학생2","classId":"2","addr":"SEOUL NAMGU","telephoneInfo":"010-1234-2345","payMethod":"BANK","payAccount":"1234-2334-4556-7890","applyStatus":"ApplyRequest","courseId":"2"}')
is "$HTTP_STATUS" 201 "POST /classes answers 201"
is "$(jget "$body" '"\(.id) \(.applyStatus) \(.courseId) \(.studentName)"')" "1 ApplyRequest 2 학생2" \
	"class entity: id 1 (Long), ApplyRequest, courseId Long"
like "$(jget "$body" '._links.self.href')" '/classes/1$' "HAL self link"
body=$(pcall class PATCH /classes/1 '{"courseId":2}')
is "$HTTP_STATUS:$(jget "$body" .applyStatus)" "200:CLASS_CANCELED" "any PATCH of a class is a cancel"
body=$(pcall class PATCH /classes/99 '{"applyStatus":"CLASS_CANCELED"}')
is "$HTTP_STATUS:$(jget "$body" .status)" "404:404" "PATCH of a missing class is a JSON 404"
body=$(pcall class GET /classes)
is "$(jget "$body" '._embedded.classes | length')" 1 "GET /classes lists it (_embedded)"

# ---- payment: idempotent replay applies once ---------------------------------------------------
pay='{"applyId":"1","payMethod":"BANK","payAccount":"1234-2334","addr":"SEOUL","telephoneInfo":"010","studentName":"s"}'
b1=$(pcall payment POST /payments "$pay" -H 'Idempotency-Key: pay-1')
s1=$HTTP_STATUS
b2=$(pcall payment POST /payments "$pay" -H 'Idempotency-Key: pay-1')
is "$s1 $b1 / $HTTP_STATUS $b2" "200 true / 200 true" "payApprove answers true, and the repeat replays it"
body=$(pcall payment GET '/payments/search/findByApplyId?applyId=1')
is "$(jget "$body" '._embedded.payments | length')" 1 "one payment saved for two requests with one key"
is "$(jget "$body" '._embedded.payments[0].payStaus')" PaymentAprroved "payStaus PaymentAprroved (sic)"
is "$(count_log payment '.idempotency_key == "pay-1" and .applied == 1')" 1 "log: applied once"
is "$(count_log payment '.idempotency_key == "pay-1" and .outcome == "replayed"')" 1 "log: replayed once"
pcall payment PATCH '/payments?applyId=1' '{}' -H 'Idempotency-Key: pay-1' >/dev/null
is "$HTTP_STATUS" 422 "a key reused for another request is refused (422)"

# concurrent repeats of one key: exactly one is applied
pids=()
for i in 1 2 3 4 5 6 7 8; do
	curl -s -o /dev/null -X POST -H 'Idempotency-Key: pay-conc' -H 'Content-Type: application/json' \
		--data-binary '{"applyId":"2","payAccount":"9"}' "$PAYMENT_URL/payments" &
	pids+=($!)
done
wait "${pids[@]}"    # never a bare `wait`: it would wait for the participants too
body=$(pcall payment GET '/payments/search/findByApplyId?applyId=2')
is "$(jget "$body" '._embedded.payments | length')" 1 "8 concurrent requests with one key save one payment"

body=$(pcall payment POST /payments '{"applyId":"3","payAccount":"0000-1111"}')
is "$HTTP_STATUS $body" "200 false" "payAccount 0000... is declined: 200 false"
body=$(pcall payment GET '/payments/search/findByApplyId?applyId=3')
is "$(jget "$body" '._embedded.payments | length')" 0 "a declined payment is not saved"
body=$(pcall payment PATCH '/payments?applyId=1' '{"payStaus":"PaymentCancelled"}')
is "$HTTP_STATUS:$(jget "$body" .payStaus)" "200:PaymentCancelled" "PATCH /payments?applyId cancels"
pcall payment PATCH '/payments?applyId=3' '{"payStaus":"PaymentCancelled"}' >/dev/null
is "$HTTP_STATUS" 404 "cancelling a payment that does not exist: 404"

# ---- delivery ------------------------------------------------------------------------------
body=$(pcall delivery POST /deliveries '{"applyId":"1","addr":"JOONGU","name":"name2","telelephoneInfo":"012-2345"}')
is "$HTTP_STATUS:$(jget "$body" .deliveryStatus):$(jget "$body" .telelephoneInfo)" \
	"201:DeliveryStart:012-2345" "POST /deliveries: 201 DeliveryStart"
did=$(jget "$body" .id)
body=$(pcall delivery PATCH '/deliveries?applyId=1' '{"deliveryStatus":"DELIVERY_CANCEL"}')
is "$HTTP_STATUS:$(jget "$body" .deliveryStatus)" "200:DELIVERY_CANCEL" "PATCH /deliveries?applyId cancels"
body=$(pcall delivery PATCH "/deliveries/$did" '{}')
is "$HTTP_STATUS:$(jget "$body" .deliveryStatus)" "200:DELIVERY_CANCEL" "PATCH /deliveries/{id} cancels"

# ---- faults --------------------------------------------------------------------------------
fault payment '{"method":"POST","path":"/payments","status":500,"times":2}' >/dev/null
codes=""
for i in 1 2 3; do
	pcall payment POST /payments '{"applyId":"4","payAccount":"1"}' -H "Idempotency-Key: f-$i" >/dev/null
	codes="$codes $HTTP_STATUS"
done
is "$codes" " 500 500 200" "fault times=2: two 500s, then normal"
body=$(pcall payment GET '/payments/search/findByApplyId?applyId=4')
is "$(jget "$body" '._embedded.payments | length')" 1 "faulted requests were not applied"

fault payment '{"method":"POST","path":"/payments","status":0,"delay_ms":1500,"times":1}' >/dev/null
pcall payment POST /payments '{"applyId":"5","payAccount":"1"}' -H 'Idempotency-Key: slow-1' \
	--max-time 0.4 >/dev/null
is "$HTTP_STATUS" 000 "status 0 + delay: the caller times out"
# It applies before it sleeps; on a loaded machine that may come after the caller gave up.
payments_of_5() { [ "$(pcall payment GET '/payments/search/findByApplyId?applyId=5' | jq '._embedded.payments | length')" = "$1" ]; }
wait_until 60 payments_of_5 1
body=$(pcall payment GET '/payments/search/findByApplyId?applyId=5')
is "$(jget "$body" '._embedded.payments | length')" 1 "... but the slow participant applied it"
t0=$(date +%s%N)
body=$(pcall payment POST /payments '{"applyId":"5","payAccount":"1"}' -H 'Idempotency-Key: slow-1')
t1=$(date +%s%N)
is "$HTTP_STATUS $body" "200 true" "the retry with the same key replays the answer"
ok "[ $(((t1 - t0) / 1000000)) -lt 1000 ]" "... at once (the fault was used up)"
body=$(pcall payment GET '/payments/search/findByApplyId?applyId=5')
is "$(jget "$body" '._embedded.payments | length')" 1 "... and applies nothing more"

fault class '{"method":"*","path":"/classes/*","status":503,"times":-1,"body":{"msg":"down"}}' >/dev/null
pcall class GET /classes/1 >/dev/null; c1=$HTTP_STATUS
pcall class GET /classes/1 >/dev/null; c2=$HTTP_STATUS
pcall class GET /classes >/dev/null
is "$c1 $c2 $HTTP_STATUS" "503 503 200" "times=-1 with a glob path until cleared"
clear_faults class
pcall class GET /classes/1 >/dev/null
is "$HTTP_STATUS" 200 "DELETE /_control/faults clears"
fault delivery '{"method":"POST","path":"/deliveries","status":-1}' >/dev/null
pcall delivery POST /deliveries '{"applyId":"9"}' >/dev/null
is "$HTTP_STATUS" 000 "status -1 drops the connection"

# ---- keep-alive ------------------------------------------------------------------------------
n=$(curl -s -o /dev/null -o /dev/null -w '%{num_connects}\n' "$CLASS_URL/classes/1" "$CLASS_URL/classes" |
	awk '{s += $1} END {print s}')
is "$n" 1 "HTTP/1.1 keep-alive: two requests, one connection"

# ---- restart keeps data --------------------------------------------------------------------
stop_participant payment
is "$PARTICIPANT_EXIT" 0 "SIGTERM: clean exit"
old_url=$PAYMENT_URL
start_participant payment
ok $? "payment restarted"
is "$PAYMENT_URL" "$old_url" "same port after restart"
body=$(pcall payment GET /payments/1)
is "$HTTP_STATUS:$(jget "$body" .payStaus)" "200:PaymentCancelled" "records survive a restart"
body=$(pcall payment POST /payments "$pay" -H 'Idempotency-Key: pay-1')
is "$HTTP_STATUS $body" "200 true" "idempotency keys survive a restart"
is "$(count_log payment '.idempotency_key == "pay-1" and .applied == 1')" 1 "... still applied once"
kill9_participant class
start_participant class
body=$(pcall class GET /classes/1)
is "$(jget "$body" .applyStatus)" CLASS_CANCELED "records survive a SIGKILL"

# ---- the operations log orders events across processes --------------------------------------
tp=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
pcall class POST /classes '{"studentName":"order"}' -H "traceparent: $tp" >/dev/null
pcall payment POST /payments '{"applyId":"77","payAccount":"1"}' -H "traceparent: $tp" >/dev/null
pcall delivery POST /deliveries '{"applyId":"77"}' -H "traceparent: $tp" >/dev/null
order=$( { participant_log class; participant_log payment; participant_log delivery; } |
	jq -s -r --arg tp "$tp" '[.[][] | select(.traceparent == $tp)] | sort_by(.mono_ns) | map(.service) | join(",")')
is "$order" "class,payment,delivery" "merged logs sorted by mono_ns give the real order"
e=$(participant_log payment | jq -c --arg tp "$tp" '[.[] | select(.traceparent == $tp)][0]')
is "$(jget "$e" '"\(.method) \(.path) \(.applied) \(.status) \(.request_body.applyId)"')" \
	"POST /payments 1 200 77" "a log entry has method, path, applied, status, request body"

done_testing
