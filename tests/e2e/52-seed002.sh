#!/bin/bash
# 52-seed002.sh -- seed 002 (smartphone pre-reservation): flows/prereservation.yaml and
# flows/prereservation-cancel.yaml against the seed's services (examples/seed002: prereservation
# and payment over HTTP, receipt and the myreservation view over Kafka on the one topic
# `prereservation`), plus the lifecycle notification participant.
#   A  happy path: "order" -> ReservationCreated (before the payment) -> payment (pivot, 400+ ms)
#      -> PaymentCreated -> receipt (paidId, expectedDeliveryAt = +21 d) -> receiptCreated;
#   B  the payment fails / times out (620 ms): commit-then-compensate (reservation deleted,
#      ReservationCancelled with "reservation_cancelled", no payment left);
#   C  cancel of a completed reservation: payments and receipts deleted, ReservationCancelled;
#   D  cancel while the payment is in flight; cancel of an unknown id;
#   E  receipt down: reservation and payment still work, the receipt catches up after restart;
#   F  payment down: breaker opens, 503 + Retry-After, recovery; F2 the same with slow payments;
#   G  notifications for every state change; H  status view by preReservationId.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

PRE_PY="$TOP_SRCDIR/examples/seed002/prereservation.py"
PRE_KAFKA_PY="$TOP_SRCDIR/examples/seed002/prereservation_kafka.py"
# The seed's 400-620 ms payment latency sits right on its 620 ms Hystrix timeout; keep it
# under the timeout here (400-500 ms) so that only the injected faults time out.
export PRE_PAYMENT_DELAY_MS=${PRE_PAYMENT_DELAY_MS:-400-500}
pre_var() { case $1 in reservation) echo PRE_RESERVATION_URL ;; payment) echo PRE_PAYMENT_URL ;; esac; }
pre_start() {        # NAME (reservation|payment): start or restart on the same port and db
	start_service "pre-$1" "$(pre_var "$1")" "$PRE_PY" \
		"$([ "$1" = reservation ] && echo pre-prereservation || echo pre-payment)"
}
pre_stop() { stop_service "pre-$1"; }
purl() { local v; v=$(pre_var "$1"); echo "${!v}"; }
pget() { curl -s --max-time 10 "$(purl "$1")$2"; }
plog() { pget "$1" /_control/log; }
pfault() { curl -s --max-time 10 -X POST -H 'Content-Type: application/json' --data-binary "$2" "$(purl "$1")/_control/faults" >/dev/null; }
payments_of() { pget payment "/payments/search/findByPreReservationId?preReservationId=$1" | jq -c '._embedded.payments'; }
kstart() { KAFKA_PARTICIPANT_PY=$PRE_KAFKA_PY start_kafka_participant "$@"; }
receipts_of() { kp_get receipt /receipts | jq -c --arg r "$1" '[._embedded.receipts[] | select((.preReservationId | tostring) == $r)]'; }
myres_of() { kp_get myreservation /myReservations | jq -c --arg r "$1" '._embedded.myReservations[] | select((.preReservationId | tostring) == $r)'; }
# events_of R: the event types on topic prereservation with key R, in offset order
events_of() { kafka_consume prereservation | jq -s -r --arg k "$1" 'map(select(.key == $k)) | sort_by(.partition, .offset) | map((.payload | fromjson).eventType) | join(" ")'; }
seed_in() {
	jq -cn '{userId: "1", userAddress: "seoul", productId: "1", productName: "fold", price: "1300000",
		cardNo: "1234-1234-1234-1234", status: "order"}' | jq -c "${1:-.}"
}
states() { jget "$1" '.steps | map("\(.name)=\(.state)") | join(",")'; }
ms_of() { jq -r --arg t "$1" -n '$t | sub("\\.(?<ms>[0-9]{3})Z$"; "Z") as $s | ($s | fromdate) * 1000 + ($t | capture("\\.(?<ms>[0-9]{3})Z$").ms | tonumber)'; }

start_kafka prereservation:3 saga-events:3 || bail_out "kafka mock did not start"
pre_start reservation || bail_out "prereservation did not start"
pre_start payment || bail_out "payment did not start"
kstart receipt pre-receipt || bail_out "receipt did not start"
kstart myreservation pre-myreservation || bail_out "myreservation did not start"
start_kafka_participant notification notification || bail_out "notification did not start"
mkdir -p "$TMP/flows" && cp "$TOP_SRCDIR"/flows/prereservation*.yaml "$TMP/flows/"
FLOWS_DIR="$TMP/flows" start_sagad_kafka || bail_out "sagad did not start"
sagad_wait_assigned 60
kp_wait_assigned 60 receipt myreservation notification

# ---- A: happy path ---------------------------------------------------------------------------------
body=$(api POST '/v1/flows/prereservation/sagas?wait=completion' "$(seed_in)")
ID1=$(jget "$body" .id)
R1=$(jget "$body" .keys.preReservationId)
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "A: the pre-reservation saga completed"
is "$(states "$body")" "create_reservation=succeeded,reservation_created=succeeded,pay=succeeded,payment_created=succeeded" \
	"A: every step succeeded"
is "$(pget reservation "/preReservations/$R1" | jq -r '"\(.status) \(.userId) \(.productName) \(.price) \(.cardNo)"')" \
	"order 1 fold 1300000 1234-1234-1234-1234" "A: PreReservation $R1, status order"
pay=$(payments_of "$R1" | jq -c '.[0]')
PAY1=$(jget "$pay" .id)
is "$(jget "$pay" '"\(.cardNo) \(.price) \(.preReservationId) \(.productId) \(.productName) \(.userId)"')" \
	"1234-1234-1234-1234 1300000 $R1 1 fold 1" "A: Payment with the seed's six fields"
rc=$(receipts_of "$R1" | jq -c '.[0]')
is "$(jget "$rc" .paidId)" "$PAY1" "A: Receipt paidId = the payment id"
want_eda=$(jq -rn --arg c "$(jget "$pay" .createdAt)" '$c | capture("^(?<s>[^.]+)\\.(?<ms>[0-9]{3})Z$") | ((.s + "Z" | fromdate) + 21 * 86400 | todate | sub("Z$"; "")) + "." + .ms + "Z"')
is "$(jget "$rc" .expectedDeliveryAt)" "$want_eda" "A: receipt expectedDeliveryAt = payment createdAt + 21 days ($want_eda)"
is "$(jget "$body" .output.expectedDeliveryAt)" "$want_eda" "A: the flow's date_add(createdAt, '21d') gives the same date"
wait_until 60 eval '[ -n "$(myres_of "$R1" | jq -r ".receiptId // empty")" ]'
is "$(myres_of "$R1" | jq -r '"\(.status) \(.paymentId) \(.expectedDeliveryAt)"')" "order $PAY1 $want_eda" \
	"A: myReservations: status, payment and receipt from the events"
is "$(events_of "$R1")" "ReservationCreated PaymentCreated receiptCreated" \
	"A: ReservationCreated, PaymentCreated, receiptCreated on topic prereservation"
rc_ts=$(kafka_consume prereservation | jq -s -r --arg k "$R1" 'map(select(.key == $k and (.payload | fromjson).eventType == "ReservationCreated"))[0].ts')
pay_ms=$(ms_of "$(jget "$pay" .createdAt)")
ok '[ "$rc_ts" -lt $((pay_ms + 400)) ]' "A: ReservationCreated was out before the payment answered (ts $rc_ts < $pay_ms + 400)"
pay_call_ms=$(jget "$(api GET "/v1/sagas/$ID1")" '[.history[] | select(.step == "pay" and .event == "succeeded")][0].ms // empty')
ok '[ -z "$pay_call_ms" ] || [ "$pay_call_ms" -ge 400 ]' "A: the payment call took ${pay_call_ms:-?} ms (400+ ms latency)"

# ---- B: the pivot fails: commit-then-compensate -----------------------------------------------------
pfault payment '{"method":"POST","path":"/payments","status":500,"times":1}'
body=$(api POST '/v1/flows/prereservation/sagas?wait=completion' "$(seed_in '.userId = "2"')")
R2=$(jget "$body" .keys.preReservationId)
is "$(jget "$body" .status)" compensated "B1: payment 500: the saga is compensated"
is "$(states "$body")" "create_reservation=compensated,reservation_created=compensated,pay=failed,payment_created=pending" \
	"B1: the reservation and its event compensated"
pget reservation "/preReservations/$R2" >/dev/null
is "$(curl -s -o /dev/null -w '%{http_code}' "$(purl reservation)/preReservations/$R2")" 404 "B1: the reservation was deleted"
wait_until 60 eval '[ "$(events_of "$R2")" = "ReservationCreated ReservationCancelled" ]'
is "$(events_of "$R2")" "ReservationCreated ReservationCancelled" "B1: ReservationCreated, then ReservationCancelled"
is "$(kafka_consume prereservation | jq -s -r --arg k "$R2" 'map(select(.key == $k) | .payload | fromjson | select(.eventType == "ReservationCancelled"))[0].status')" \
	reservation_cancelled "B1: ReservationCancelled carries status reservation_cancelled"
wait_until 60 eval '[ "$(myres_of "$R2" | jq -r .status)" = reservation_cancelled ]'
is "$(myres_of "$R2" | jq -r .status)" reservation_cancelled "B1: myReservations shows it cancelled"
is "$(payments_of "$R2" | jq length)" 0 "B1: no payment"

pfault payment '{"method":"POST","path":"/payments","status":0,"delay_ms":900,"times":1}'
body=$(api POST '/v1/flows/prereservation/sagas?wait=completion' "$(seed_in '.userId = "3"')")
R3=$(jget "$body" .keys.preReservationId)
is "$(jget "$body" .status)" compensated "B2: payment slower than 620 ms: compensated"
is "$(jget "$(api GET "/v1/sagas/$(jget "$body" .id)")" '"\(.steps[2].state) " + ([.history[] | select(.step == "pay" and .phase == "action") | .event] | join(","))')" \
	"compensated timed_out" "B2: pay timed out at 620 ms (outcome unknown, so it is compensated too)"
is "$(plog payment | jq -r --arg r "$R3" '[.[] | select((.request_body.preReservationId // "" | tostring) == $r or (.path | endswith("preReservationId=" + $r))) | "\(.method) \(.status)"] | join(",")')" \
	"POST 201,DELETE 204" "B2: the payment that committed late was deleted"
is "$(payments_of "$R3" | jq length)" 0 "B2: no payment left"

# ---- C: cancel a completed reservation ------------------------------------------------------------
body=$(api POST '/v1/flows/prereservation-cancel/sagas?wait=completion' "{\"preReservationId\":\"$R1\"}")
C1=$(jget "$body" .id)
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "C: the cancel saga completed"
is "$(jget "$body" '"\(.output.reservationSaga) \(.output.status)"')" "$ID1 compensated" "C: it compensated the reservation saga"
is "$(payments_of "$R1" | jq length)" 0 "C: payments deleted"
wait_until 60 eval '[ "$(receipts_of "$R1" | jq length)" = 0 ]'
is "$(receipts_of "$R1" | jq length)" 0 "C: receipts deleted"
is "$(curl -s -o /dev/null -w '%{http_code}' "$(purl reservation)/preReservations/$R1")" 404 "C: the reservation was deleted"
wait_until 60 eval '[ "$(myres_of "$R1" | jq -r .status)" = reservation_cancelled ]'
is "$(myres_of "$R1" | jq -r .status)" reservation_cancelled "C: myReservations shows it cancelled (cancelled orders stay visible)"
is "$(events_of "$R1")" "ReservationCreated PaymentCreated receiptCreated ReservationCancelled" "C: ReservationCancelled published"

# ---- D: cancel while the payment is in flight; unknown id --------------------------------------------
body=$(api POST '/v1/flows/prereservation/sagas?wait=step:reservation_created' "$(seed_in '.userId = "4"')")
ID4=$(jget "$body" .id)
R4=$(jget "$body" .keys.preReservationId)
body=$(api POST '/v1/flows/prereservation-cancel/sagas?wait=completion' "{\"preReservationId\":\"$R4\"}")
is "$(jget "$body" .status)" completed "D: cancel while the payment is in flight: completed"
t=$(api GET "/v1/sagas/$ID4")
like "$(jget "$t" .status):$(states "$t")" "^compensated:create_reservation=compensated,reservation_created=compensated,pay=compensated,payment_created=(pending|not_compensated)$" \
	"D: the running saga stopped; the payment that was in flight was undone too"
is "$(plog payment | jq -r --arg r "$R4" '[.[] | select((.request_body.preReservationId // "" | tostring) == $r or (.path | endswith("preReservationId=" + $r))) | .method] | join(",")')" \
	"POST,DELETE" "D: the payment saw the POST, then the DELETE"
is "$(payments_of "$R4" | jq length):$(curl -s -o /dev/null -w '%{http_code}' "$(purl reservation)/preReservations/$R4")" "0:404" \
	"D: no payment, no reservation"
body=$(api POST '/v1/flows/prereservation-cancel/sagas?wait=completion' '{"preReservationId":"424242"}')
is "$(jget "$body" .status)" compensated "D: cancel of an unknown preReservationId fails"

# ---- E: receipt down: reservation and payment still work; it catches up ---------------------------------
stop_kafka_participant receipt
body=$(api POST '/v1/flows/prereservation/sagas?wait=step:pay' "$(seed_in '.userId = "5"')")
ID5=$(jget "$body" .id)
R5=$(jget "$body" .keys.preReservationId)
is "$HTTP_STATUS:$(jget "$body" '.steps[2].state')" "200:succeeded" "E: receipt down: the payment still succeeds"
is "$(payments_of "$R5" | jq length):$(pget reservation "/preReservations/$R5" | jq -r .status)" "1:order" \
	"E: reservation and payment are stored"
sleep 2
is "$(jget "$(api GET "/v1/sagas/$ID5")" '"\(.status) \(.steps[3].state)"')" "running running" \
	"E: the receipt step waits (in the background)"
# a cancel while the receipt is still down: it does not wait for the receipt
body=$(api POST '/v1/flows/prereservation/sagas?wait=step:pay' "$(seed_in '.userId = "6"')")
ID6=$(jget "$body" .id)
R6=$(jget "$body" .keys.preReservationId)
t0=$(date +%s)
body=$(api POST '/v1/flows/prereservation-cancel/sagas?wait=completion' "{\"preReservationId\":\"$R6\"}")
t1=$(date +%s)
is "$(jget "$body" .status):$(jget "$(api GET "/v1/sagas/$ID6")" .status)" "completed:compensated" \
	"E: cancel while the receipt is down: done in $((t1 - t0)) s, the reservation saga compensated"
ok '[ $((t1 - t0)) -le 12 ]' "E: ... within one receipt attempt's timeout (5 s) and the compensations"
kstart receipt pre-receipt || bail_out "receipt did not restart"
body=$(wait_status "$ID5" completed 60)
ok $? "E: after the restart the receipt caught up and the saga completed"
is "$(receipts_of "$R5" | jq -r '.[0].paidId')" "$(payments_of "$R5" | jq -r '.[0].id')" "E: the receipt exists (paidId)"
wait_until 60 eval '[ "$(kp_log receipt | jq --arg r "$R6" "[.[] | select(.eventType == \"ReservationCancelled\" and (.request_body.id | tostring) == \$r)] | length")" = 1 ]'
is "$(kp_log receipt | jq -r --arg r "$R6" '[.[] | select((.request_body.preReservationId // .request_body.id | tostring) == $r and (.eventType == "PaymentCreated" or .eventType == "ReservationCancelled")) | "\(.eventType):\(.outcome)"] | join(",")')" \
	"PaymentCreated:applied,ReservationCancelled:applied" "E: the receipt caught up with the cancelled reservation's events, in order"
is "$(receipts_of "$R6" | jq length)" 0 "E: ... and keeps no receipt for it"

# ---- F: payment down: breaker, 503 + Retry-After, recovery ------------------------------------------
pre_stop payment
# Until the breaker opens, each reservation is compensated. Failures of E may still be in the
# breaker's 10 s window on a slow machine, so it can open after fewer than three.
n_comp=0 opened=0
for i in 1 2 3; do
	body=$(api POST '/v1/flows/prereservation/sagas?wait=completion' "$(seed_in ".userId = \"6$i\"")")
	if [ "$HTTP_STATUS" = 503 ] && [ "$(jget "$body" .error.code)" = EOPEN ]; then
		opened=1
		break
	fi
	[ "$(jget "$body" .status)" = compensated ] && n_comp=$((n_comp + 1))
done
tries=$((opened ? i - 1 : 3))
ok "[ $n_comp -ge 1 ] && [ $n_comp = $tries ]" \
	"F: payment down: every reservation compensated until the breaker opened ($n_comp of $tries)"
n_res=$(plog reservation | jq '[.[] | select(.method == "POST")] | length')
api POST '/v1/flows/prereservation/sagas?wait=completion' "$(seed_in '.userId = "64"')" -D "$TMP/h503" >/dev/null
is "$HTTP_STATUS:$(jget "$API_BODY" .error.code)" "503:EOPEN" "F: breaker open: 503 EOPEN at once"
ra=$(header_value "$TMP/h503" Retry-After)
ok '[ -n "$ra" ] && [ "$ra" -ge 1 ] && [ "$ra" -le 5 ]' "F: ... Retry-After $ra"
is "$(plog reservation | jq '[.[] | select(.method == "POST")] | length')" "$n_res" "F: ... and no reservation was created"
pre_start payment || bail_out "payment did not restart"
sleep "${ra:-5}"
body=$(api POST '/v1/flows/prereservation/sagas?wait=completion' "$(seed_in '.userId = "65"')")
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "F: after the open period a reservation completes"

# the seed's own breaker test (siege on a slow payment): 3 payments slower than 620 ms open it too
pfault payment '{"method":"POST","path":"/payments","status":0,"delay_ms":800,"times":3}'
for i in 1 2 3; do
	body=$(api POST '/v1/flows/prereservation/sagas?wait=completion' "$(seed_in ".userId = \"7$i\"")")
	is "$(jget "$body" .status)" compensated "F2: slow payment $i (> 620 ms): compensated"
done
api POST '/v1/flows/prereservation/sagas?wait=completion' "$(seed_in '.userId = "74"')" -D "$TMP/h503b" >/dev/null
is "$HTTP_STATUS:$(jget "$API_BODY" .error.code)" "503:EOPEN" "F2: three timeouts opened the breaker: 503 EOPEN"
sleep "$(header_value "$TMP/h503b" Retry-After)"
body=$(api POST '/v1/flows/prereservation/sagas?wait=completion' "$(seed_in '.userId = "75"')")
is "$(jget "$body" .status)" completed "F2: payment fast again: the half-open probe closes the breaker"
wait_until 60 eval '[ "$(pget payment /payments | jq "[._embedded.payments[] | select(.userId >= 71 and .userId <= 73)] | length")" = 0 ]'
is "$(pget payment /payments | jq '[._embedded.payments[] | select(.userId >= 71 and .userId <= 73)] | length')" 0 \
	"F2: the payments that committed after the timeout were deleted"

# ---- G: notifications ---------------------------------------------------------------------------------
want=$(lifecycle_summary "$ID1")
like "$want" "^saga:running .*step:pay:succeeded.* saga:completed .*saga:compensated$" "G: lifecycle events of the reservation saga (completed, then cancelled)"
wait_until 60 eval '[ "$(kp_get notification "/messages?sagaId=$ID1" | jq "._embedded.messages | length")" = "$(lifecycle_events "$ID1" | grep -c .)" ]'
got=$(kp_get notification "/messages?sagaId=$ID1" | jq -r '._embedded.messages[] | if .eventType == "saga" then "saga:\(.status)" else "step:\(.step):\(.stepState)" end' | tr '\n' ' ' | sed 's/ $//')
is "$got" "$want" "G: the notification participant recorded one message per state change"

# ---- H: the status view by business key --------------------------------------------------------------
body=$(api GET "/v1/sagas?key.preReservationId=$R1")
is "$HTTP_STATUS:$(jget "$body" '[.sagas[] | "\(.flow)=\(.status)"] | sort | join(",")')" \
	"200:prereservation-cancel=completed,prereservation=compensated" "H: GET /v1/sagas?key.preReservationId: the reservation and its cancel"
out=$("$SAGACTL" --url "$SAGAD_URL" saga list --key "preReservationId=$R1" 2>&1)
like "$out" "$ID1 +prereservation@1 +compensated .*pay=compensated" "H: sagactl saga list --key preReservationId"
like "$out" "$C1 +prereservation-cancel@1 +completed" "H: ... with the cancel saga"

done_testing
