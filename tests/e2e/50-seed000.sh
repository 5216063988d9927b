#!/bin/bash
# 50-seed000.sh -- seed 000 (Online Class Application) end to end, on the seed's participants
# (examples/participants: class, payment, delivery over HTTP; notification over Kafka) and the
# flows class-apply, apply (with its applyId key) and apply-cancel.
# docs/scenarios/000-online-class-application.md maps the seed's requirements to these tests.
#
#   A  happy path (class-apply): ApplyRequest, PaymentAprroved, DeliveryStart in the services;
#      ClassRegisted, PaymentAppoved, DeliveryStarted published on class-events, in order
#   B  the mypage view by applyId: GET /v1/sagas?key.applyId= and sagactl saga list --key
#   C  apply-cancel of a completed class-apply saga: DELIVERY_CANCEL, PaymentCancelled,
#      CLASS_CANCELED; ClassCanceled and PaymentCanceled published; the view shows both sagas
#   D  apply-cancel of a completed `apply` saga (apply.yaml, sub-flows)
#   E  apply-cancel of a RUNNING class-apply saga (delivery slow): the in-flight delivery is
#      awaited and cancelled too; nothing of the forward path is published
#   F  apply-cancel of an unknown applyId fails without touching anything
#   G  declined payment (payApprove false): not accepted (CLASS_CANCELED), ClassCanceled
#   H  Hystrix 1000 ms: a payment slower than 1 s times out; the fallback `false` applies and
#      the payment that was made anyway is cancelled
#   I  payment keeps failing: the breaker opens; new applications get 503 + Retry-After at once
#      (nothing reaches class or payment); after the open period a probe closes it
#   D2 apply-cancel of a completed `apply-async` saga (delivery over Kafka)
#   J  payment down during a cancel: the cancel waits and completes when payment is back; an
#      application made meanwhile gets the fallback `false` (not accepted)
#   K  notifications: one message per lifecycle event (state change) of a saga, and the
#      notification service catches up after being down
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init
T0=$(date +%s)

# ---- setup ------------------------------------------------------------------------------------
start_kafka class-events:1 saga-events:3 delivery-commands:1 delivery-events:1 || bail_out "sagad-kafka-mock did not start"
start_participants || bail_out "class/payment/delivery did not start"
start_kafka_participant notification notification || bail_out "notification did not start"
start_kafka_participant kdelivery delivery || bail_out "delivery (Kafka) did not start"
start_sagad_kafka || bail_out "sagad did not start"
kp_wait_assigned 60 notification kdelivery
ok $? "setup: notification and the Kafka delivery joined their groups"
sagad_wait_assigned 60

# helpers
# apply_saga JQ-FILTER: starts class-apply with the seed's input (changed by the filter), waits
apply_saga() { api POST '/v1/flows/class-apply/sagas?wait=completion' "$(seed_input "${1:-.}")"; }
# events of class-events keyed by applyId $1: "eventType,eventType,..."
events_of() { kafka_topic_json class-events | jq -r --arg k "$1" 'select(.key == $k) | .value.eventType' | paste -sd, -; }
pay_of() { pcall payment GET "/payments/search/findByApplyId?applyId=$1" | jq -c '[._embedded.payments[].payStaus]'; }
dlv_of() { pcall delivery GET "/deliveries/search/findByApplyId?applyId=$1" | jq -c '[._embedded.deliveries[].deliveryStatus]'; }
cls_of() { pcall class GET "/classes/$1" | jq -r .applyStatus; }
states() { jq -r '[.steps[] | "\(.name)=\(.state)"] | join(",")' <<<"$1"; }
saga_status() { api GET "/v1/sagas/$1" | jq -r .status; }

# ---- A: happy path ----------------------------------------------------------------------------
body=$(apply_saga)
IDA=$(jget "$body" .id)
A=$(jget "$body" .output.applyId)
is "$HTTP_STATUS $(jget "$body" .status)" "200 completed" "A: class-apply completed"
is "$(jq -c '.output | {applyStatus, payApproved, deliveryStatus}' <<<"$body")" \
	'{"applyStatus":"ApplyRequest","payApproved":true,"deliveryStatus":"DeliveryStart"}' \
	"A: output: ApplyRequest, payApproved true, DeliveryStart"
is "$(states "$body")" "apply=succeeded,pay=succeeded,decline_payment=skipped,decline_class=skipped,class_canceled=skipped,ship=succeeded,class_registed=succeeded,payment_appoved=succeeded,delivery_started=succeeded" \
	"A: the decline branch is skipped (when), the forward branch ran"
is "$(cls_of "$A") $(pay_of "$A") $(dlv_of "$A")" 'ApplyRequest ["PaymentAprroved"] ["DeliveryStart"]' \
	"A: the services hold class ApplyRequest, payment PaymentAprroved, delivery DeliveryStart"
wait_until 60 eval '[ "$(events_of "$A")" = "ClassRegisted,PaymentAppoved,DeliveryStarted" ]'
is "$(events_of "$A")" "ClassRegisted,PaymentAppoved,DeliveryStarted" \
	"A: class-events: ClassRegisted, PaymentAppoved, DeliveryStarted keyed by applyId (verbatim names)"
ev=$(kafka_topic_json class-events | jq -c --arg k "$A" 'select(.key == $k) | .value')
is "$(jq -r 'select(.eventType == "PaymentAppoved") | "\(.applyId) \(.payStaus)"' <<<"$ev")" \
	"$A PaymentAprroved" "A: PaymentAppoved carries applyId (a String) and payStaus PaymentAprroved (sic)"
is "$(jq -r 'select(.eventType == "DeliveryStarted") | "\(.applyId) \(.deliveryStatus) \(.telelephoneInfo)"' <<<"$ev")" \
	"$A DeliveryStart 010-1234-2345" "A: DeliveryStarted carries deliveryStatus DeliveryStart, telelephoneInfo (sic)"

# ---- B: mypage view by applyId -----------------------------------------------------------------
v=$(api GET "/v1/sagas?key.applyId=$A")
is "$HTTP_STATUS $(jq -r '[.sagas[] | "\(.flow):\(.status):\(.keys.applyId)"] | join(" ")' <<<"$v")" \
	"200 class-apply:completed:$A" "B: GET /v1/sagas?key.applyId=$A finds the application"
is "$(jq -r '.sagas[0].steps[] | select(.name == "ship") | .response.body.deliveryStatus' <<<"$v")" \
	DeliveryStart "B: ... with each participant's status (ship: DeliveryStart)"
out=$("$SAGACTL" --url "$SAGAD_URL" saga list --key "applyId=$A" 2>&1)
like "$out" "$IDA +class-apply@1 +completed .*pay=succeeded.*ship=succeeded" \
	"B: sagactl saga list --key applyId=$A: the status view"

# ---- C: cancel a completed class-apply saga -----------------------------------------------------
body=$(api POST '/v1/flows/apply-cancel/sagas?wait=completion' "{\"applyId\":\"$A\"}")
is "$HTTP_STATUS $(jget "$body" .status)" "200 completed" "C: apply-cancel completed"
is "$(states "$body")" "application=succeeded,cancel_apply=succeeded,cancel_class_apply=succeeded,cancel_apply_async=skipped,class_canceled=succeeded,payment_canceled=succeeded" \
	"C: no apply saga (skip), the class-apply saga was cancelled"
is "$(jget "$body" .output.target)" "$IDA" "C: the target is the application's saga"
is "$(saga_status "$IDA")" compensated "C: the class-apply saga went completed -> compensated"
is "$(cls_of "$A") $(pay_of "$A") $(dlv_of "$A")" 'CLASS_CANCELED ["PaymentCancelled"] ["DELIVERY_CANCEL"]' \
	"C: class CLASS_CANCELED, payment PaymentCancelled, delivery DELIVERY_CANCEL"
ml=$(merged_log | jq -c --arg a "$A" '[.[] | select(.method == "PATCH" and (.path | test("applyId=\($a)$|/classes/\($a)$"))) | .service]')
is "$ml" '["delivery","payment","class"]' "C: undone in reverse order: delivery, payment, class (merged op logs)"
wait_until 60 eval '[ "$(events_of "$A")" = "ClassRegisted,PaymentAppoved,DeliveryStarted,ClassCanceled,PaymentCanceled" ]'
is "$(events_of "$A")" "ClassRegisted,PaymentAppoved,DeliveryStarted,ClassCanceled,PaymentCanceled" \
	"C: ClassCanceled and PaymentCanceled published after the forward events"
v=$(api GET "/v1/sagas?key.applyId=$A")
is "$(jq -r '[.sagas[] | "\(.flow):\(.status)"] | sort | join(" ")' <<<"$v")" \
	"apply-cancel:completed class-apply:compensated" "C: the mypage view shows the cancelled application and its cancel"

# ---- D: cancel a completed `apply` saga (apply.yaml) --------------------------------------------
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input)")
IDD=$(jget "$body" .id)
D=$(jget "$body" .output.applyId)
is "$(jget "$body" .status) $(jget "$body" .keys.applyId)" "completed $D" "D: apply completed, key applyId recorded"
body=$(api POST '/v1/flows/apply-cancel/sagas?wait=completion' "{\"applyId\":\"$D\"}")
is "$(jget "$body" .status) $(states "$body")" \
	"completed application=succeeded,cancel_apply=succeeded,cancel_class_apply=skipped,cancel_apply_async=skipped,class_canceled=succeeded,payment_canceled=succeeded" \
	"D: apply-cancel found the apply saga (the class-apply lookup skipped)"
is "$(saga_status "$IDD") $(cls_of "$D") $(pay_of "$D") $(dlv_of "$D")" \
	'compensated CLASS_CANCELED ["PaymentCancelled"] ["DELIVERY_CANCEL"]' \
	"D: apply compensated through its sub-flows: CLASS_CANCELED, PaymentCancelled, DELIVERY_CANCEL"

# ---- D2: cancel a completed `apply-async` saga (delivery over Kafka) -------------------------------
body=$(api POST '/v1/flows/apply-async/sagas?wait=completion' "$(seed_input '.studentName = "async"')")
IDD2=$(jget "$body" .id)
D2=$(jget "$body" .output.applyId)
is "$(jget "$body" .status) $(jget "$body" .keys.applyId)" "completed $D2" "D2: apply-async completed, key applyId recorded"
body=$(api POST '/v1/flows/apply-cancel/sagas?wait=completion' "{\"applyId\":\"$D2\"}")
is "$(jget "$body" .status) $(states "$body")" \
	"completed application=succeeded,cancel_apply=succeeded,cancel_class_apply=succeeded,cancel_apply_async=succeeded,class_canceled=succeeded,payment_canceled=succeeded" \
	"D2: apply-cancel found the apply-async saga (apply and class-apply lookups found nothing)"
is "$(saga_status "$IDD2") $(cls_of "$D2") $(pay_of "$D2") $(kp_get kdelivery "/deliveries?applyId=$D2" | jq -c '[._embedded.deliveries[].deliveryStatus]')" \
	'compensated CLASS_CANCELED ["PaymentCancelled"] ["DELIVERY_CANCEL"]' \
	"D2: apply-async compensated: DELIVERY_CANCEL over Kafka, PaymentCancelled, CLASS_CANCELED"

# ---- E: cancel a running application ------------------------------------------------------------
# The delivery answers 4 s late (under its 5 s timeout): the cancel comes while it is in
# flight, on a loaded machine too.
fault delivery '{"method":"POST","path":"/deliveries","status":0,"delay_ms":4000}' >/dev/null
body=$(api POST '/v1/flows/class-apply/sagas?wait=none' "$(seed_input '.studentName = "running"')")
IDE=$(jget "$body" .id)
ship_running() { [ "$(api GET "/v1/sagas/$IDE" | jq -r '.steps[] | select(.name == "ship") | .state')" = running ]; }
wait_until 60 ship_running
ok $? "E: the application is running, its delivery call in flight"
E=$(api GET "/v1/sagas/$IDE" | jq -r .keys.applyId)
body=$(api POST '/v1/flows/apply-cancel/sagas?wait=completion' "{\"applyId\":\"$E\"}")
is "$(jget "$body" .status) $(saga_status "$IDE")" "completed compensated" \
	"E: apply-cancel of the running saga completed; the application compensated"
is "$(cls_of "$E") $(pay_of "$E") $(dlv_of "$E")" 'CLASS_CANCELED ["PaymentCancelled"] ["DELIVERY_CANCEL"]' \
	"E: the delivery made by the in-flight call was cancelled too"
api GET "/v1/sagas/$IDE" >/dev/null
is "$(jq -r '[.steps[] | select(.name | test("class_registed|payment_appoved|delivery_started")) | .state] | unique | join(",")' <<<"$API_BODY")" \
	"pending" "E: the forward events were never published (steps pending)"
wait_until 60 eval '[ "$(events_of "$E")" = "ClassCanceled,PaymentCanceled" ]'
is "$(events_of "$E")" "ClassCanceled,PaymentCanceled" "E: class-events for it: only ClassCanceled, PaymentCanceled"
clear_faults delivery

# ---- F: cancel of an unknown applyId -------------------------------------------------------------
n0=$(merged_log | jq '[.[] | select(.method == "PATCH")] | length')
body=$(api POST '/v1/flows/apply-cancel/sagas?wait=completion' '{"applyId":"999999"}')
is "$(jget "$body" .status) $(states "$body")" \
	"compensated application=failed,cancel_apply=pending,cancel_class_apply=pending,cancel_apply_async=pending,class_canceled=pending,payment_canceled=pending" \
	"F: unknown applyId: the cancel fails at the class lookup (404)"
is "$(merged_log | jq '[.[] | select(.method == "PATCH")] | length') $(events_of 999999)" "$n0 " \
	"F: nothing was patched, nothing published"

# ---- G: declined payment ---------------------------------------------------------------------------
body=$(apply_saga '.payAccount = "0000-1111-2222-3333"')
G=$(jget "$body" .output.applyId)
is "$(jget "$body" .status) $(jq -c '.output | {applyStatus, payApproved, deliveryStatus}' <<<"$body")" \
	'completed {"applyStatus":"CLASS_CANCELED","payApproved":false,"deliveryStatus":null}' \
	"G: declined payment: the application is not accepted (CLASS_CANCELED), payApproved false"
is "$(cls_of "$G") $(pay_of "$G") $(dlv_of "$G")" 'CLASS_CANCELED [] []' \
	"G: class CLASS_CANCELED, no payment, no delivery (NFR 1.1)"
wait_until 60 eval '[ "$(events_of "$G")" = "ClassCanceled" ]'
is "$(events_of "$G")" "ClassCanceled" "G: only ClassCanceled published"

# ---- H: Hystrix timeout 1000 ms -------------------------------------------------------------------
# The payment answers 6 s late: a saga that waited for it would take 6 s or more, one that cut
# the call at 1000 ms well under 4 s even on a loaded machine.
fault payment '{"method":"POST","path":"/payments","status":0,"delay_ms":6000}' >/dev/null
t1=$(date +%s%N)
body=$(apply_saga '.studentName = "slow"')
t2=$(date +%s%N)
H=$(jget "$body" .output.applyId)
is "$(jget "$body" .status) $(jget "$body" .output.applyStatus) $(jq -r .output.payApproved <<<"$body")" \
	"completed CLASS_CANCELED false" "H: payment slower than 1 s: fallback false, application not accepted"
is "$(jq -r '[.history[] | select(.step == "pay") | .event] | join(",")' <<<"$body" | grep -o 'fallback')" \
	fallback "H: the pay step's history records the fallback"
ms=$(( (t2 - t1) / 1000000 ))
ok '[ "$ms" -ge 1000 ] && [ "$ms" -lt 4000 ]' "H: answered in ${ms} ms: the call was cut at 1000 ms, not waited 6000 ms"
wait_until 60 eval '[ "$(pay_of "$H")" = "[\"PaymentCancelled\"]" ]'
is "$(cls_of "$H") $(pay_of "$H")" 'CLASS_CANCELED ["PaymentCancelled"]' \
	"H: the payment the slow call made anyway was cancelled (decline_payment)"
clear_faults payment

# ---- I: circuit breaker ----------------------------------------------------------------------------
fault payment '{"method":"POST","path":"/payments","status":500,"times":-1}' >/dev/null
# Two starts at a time (both sent before either ends, so the breaker answers both alike): the
# breaker counts the calls of a 10 s window, and one start after the other took up to 9 s for
# 20 on a loaded machine (ASan, other tests running).
code=""; n=0; fb=0; ti=$(date +%s%3N)
while [ $n -lt 30 ]; do
	for i in $((n + 1)) $((n + 2)); do
		api_bg "$TMP/cb.$i" POST '/v1/flows/class-apply/sagas?wait=completion' "$(seed_input ".studentName = \"cb$i\"")"
	done
	wait_bg
	for i in $((n + 1)) $((n + 2)); do
		n=$i
		read -r code <"$TMP/cb.$i.code"
		[ "$code" = 200 ] || break 2
		if [ "$(jq -r .output.payApproved "$TMP/cb.$i")" = false ]; then fb=$((fb + 1)); else diag "start $n: $(jq -c "{status, output, steps: [.steps[] | {name, state, error}]}" "$TMP/cb.$i")"; fi
	done
done
diag "I: $n starts in $(( $(date +%s%3N) - ti )) ms"
is "$code" 503 "I: after payment failures the breaker opened: a new application gets 503 (start $n)"
is "$fb" $((n - 1)) "I: every application before it completed with the fallback false"
ok '[ "$n" -ge 11 ] && [ "$n" -le 21 ]' "I: it opened after the Hystrix volume (20 calls in 10 s) at >= 50 % failures (start $n)"
cls0=$(participant_log class | jq length)
pay0=$(participant_log payment | jq length)
curl -s -D "$TMP/h503" -o "$TMP/b503" -X POST -H 'Content-Type: application/json' \
	--data-binary "$(seed_input)" "$SAGAD_URL/v1/flows/class-apply/sagas?wait=completion" >/dev/null
RA=$(header_value "$TMP/h503" Retry-After)
is "$(head -n1 "$TMP/h503" | awk '{print $2}') $(jq -r .error.code "$TMP/b503")" "503 EOPEN" "I: 503 with code EOPEN"
ok '[ -n "$RA" ] && [ "$RA" -ge 1 ] && [ "$RA" -le 5 ]' "I: Retry-After $RA s (at most the 5 s open period)"
is "$(participant_log class | jq length) $(participant_log payment | jq length)" "$cls0 $pay0" \
	"I: refused at once: neither class nor payment was called"
clear_faults payment
sleep "${RA:-5}"; sleep 0.5
body=$(apply_saga '.studentName = "after-cb"')
is "$HTTP_STATUS $(jget "$body" .status) $(jq -r .output.payApproved <<<"$body")" "200 completed true" \
	"I: after the open period the half-open probe succeeds: applications are accepted again"
body=$(apply_saga '.studentName = "after-cb2"')
is "$HTTP_STATUS $(jq -r .output.payApproved <<<"$body")" "200 true" "I: the breaker is closed"

# ---- J: payment down during a cancel ----------------------------------------------------------------
body=$(apply_saga '.studentName = "j"')
J=$(jget "$body" .output.applyId)
stop_participant payment
api_bg "$TMP/j.out" POST '/v1/flows/apply-cancel/sagas?wait=completion' "{\"applyId\":\"$J\"}"
api_bg "$TMP/j2.out" POST '/v1/flows/class-apply/sagas?wait=completion' "$(seed_input '.studentName = "j2"')"
wait_until 60 eval '[ "$(dlv_of "$J")" = "[\"DELIVERY_CANCEL\"]" ]'
is "$(cls_of "$J") $(dlv_of "$J")" 'ApplyRequest ["DELIVERY_CANCEL"]' \
	"J: payment down: delivery cancelled, the payment compensation retries (class waits its turn)"
start_participant payment
wait_bg
is "$(jq -r .status "$TMP/j.out") $(cls_of "$J") $(pay_of "$J")" 'completed CLASS_CANCELED ["PaymentCancelled"]' \
	"J: payment back: the cancel completed (PaymentCancelled, CLASS_CANCELED)"
J2=$(jq -r .output.applyId "$TMP/j2.out")
is "$(jq -r '"\(.status) \(.output.payApproved) \(.output.applyStatus)"' "$TMP/j2.out") $(cls_of "$J2") $(pay_of "$J2") $(dlv_of "$J2")" \
	'completed false CLASS_CANCELED CLASS_CANCELED [] []' \
	"J: an application while payment was down: payApprove refused -> fallback false, not accepted, nothing paid or shipped"

# ---- K: notifications --------------------------------------------------------------------------------
lev=$(lifecycle_events "$IDA")
nev=$(grep -c . <<<"$lev")
msgs() { kp_get notification "/messages?sagaId=$1"; }
wait_until 60 eval '[ "$(msgs "$IDA" | jq "._embedded.messages | length")" = "$nev" ]'
m=$(msgs "$IDA")
is "$(jq '._embedded.messages | length' <<<"$m")" "$nev" "K: one notification per lifecycle event of the application ($nev)"
is "$(jq -r '[._embedded.messages[].eventId] | sort | join(",")' <<<"$m")" \
	"$(jq -r .event_id <<<"$lev" | sort | paste -sd, -)" "K: ... each event notified once (by event_id)"
like "$(jq -r '[._embedded.messages[] | select(.step == null) | .status] | join(",")' <<<"$m")" \
	'^running,completed,compensating,compensated$' "K: saga status changes notified: running, completed, compensating, compensated"
stop_kafka_participant notification
body=$(apply_saga '.studentName = "k"')
IDK=$(jget "$body" .id)
is "$(msgs "$IDK")" "" "K: notification is down"
start_kafka_participant notification notification
wait_until 60 eval '[[ "$(lifecycle_summary "$IDK")" == *saga:completed ]]'
nk=$(lifecycle_events "$IDK" | grep -c .)
wait_until 60 eval '[ "$(msgs "$IDK" | jq "._embedded.messages | length")" = "$nk" ]'
is "$(msgs "$IDK" | jq '._embedded.messages | length')" "$nk" \
	"K: back up, it caught up with the $nk events it missed"

diag "50-seed000 took $(( $(date +%s) - T0 ))s"
done_testing
