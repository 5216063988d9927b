#!/bin/bash
# 53-seed003.sh -- seed 003 (Pizza Order & Delivery with Refund) end to end: flows/pizza-*.yaml
# with the seed's services (examples/seed003/: order, payment, refund over HTTP; delivery,
# coupon, statusview over Kafka; delivery's SYNC refund API on its control port) and the
# notification participant on sagad's lifecycle topic.
#
#   A  happy path: order -> payment (pivot) -> Paid -> delivery (Kafka) -> Delivered "Finished"
#      -> coupon "published"; statusview; every participant's own record checked
#   B  the `when` branch: a delivery that did not finish -> coupon step skipped, no coupon event
#   C  order cancel of a completed order (payment cancelled, delivery cancelled, statusview)
#   D  order cancel while the order saga is still waiting for the delivery
#   E  the pivot failing (payment 500): order cancelled, nothing paid, nothing delivered
#   F  payment breaker: opens, new orders 503 + Retry-After at once, recovery after the open period
#   G  refund: delivery "refunded" through GET /deliveries with a JSON body, refund row with its
#      reason, coupon "couponRefunded", statusview reason; status view by key (API and sagactl)
#   H  refund of an order without coupon: a "couponRefunded" coupon is created (the compensation
#      before the forward action); a late Delivered does not issue a coupon
#   I  refund cancel: delivery status, coupons, refund row and statusview restored
#   J  delivery down: refunds fail with nothing committed or published; breaker opens, 503 +
#      Retry-After; recovery after delivery restarts and the open period passes
#   J2 the seed's Hystrix 500 ms: a delivery answering late fails the refund; its change is undone
#   K  coupon down: orders and refunds still accepted; the coupon catches up after its restart
#   L  notifications: one notification per lifecycle event (every saga and step state change)
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init
command -v kcat >/dev/null 2>&1 || skip_all "kcat is not installed"
"$KAFKA_PY" -c 'import confluent_kafka' 2>/dev/null || skip_all "python3-confluent-kafka missing"

SEED=$TOP_SRCDIR/examples/seed003
PIZZA_KAFKA_PY=$SEED/pizza_kafka.py
KP_ORIG=$KAFKA_PARTICIPANT_PY

# ---- helpers ----------------------------------------------------------------------------------
declare -A PH_PORT=()
# ph_start NAME: the HTTP service pizza-NAME (order, payment, refund) on a kept port; exports
# PIZZA_<NAME>_URL.
ph_start() {
	local n=$1 var port
	var="PIZZA_${n^^}_URL"
	rm -f "$TMP/$n.port"
	python3 "$SEED/pizza_http.py" "pizza-$n" --port "${PH_PORT[$n]:-0}" --db "$TMP/$n.db" \
		--port-file "$TMP/$n.port" >>"$TMP/$n.participant.log" 2>&1 </dev/null &
	e2e_track_pid "$!"
	wait_until 60 test -s "$TMP/$n.port" || { diag "pizza-$n did not start"; return 1; }
	read -r port <"$TMP/$n.port"
	PH_PORT[$n]=$port
	printf -v "$var" 'http://127.0.0.1:%s' "$port"
	export "${var?}"
	wait_until 60 _e2e_healthy "${!var}"
}
ph_url() { local var="PIZZA_${1^^}_URL"; echo "${!var}"; }
ph_get() { curl -s --max-time 10 "$(ph_url "$1")$2"; }
ph_fault() { curl -s --max-time 10 -X POST -H 'Content-Type: application/json' \
	--data-binary "$2" "$(ph_url "$1")/_control/faults" >/dev/null; }
ph_clear() { curl -s --max-time 10 -X DELETE "$(ph_url "$1")/_control/faults" >/dev/null; }
# pk_start NAME: the Kafka service pizza-NAME (delivery, coupon, statusview).
pk_start() {
	KAFKA_PARTICIPANT_PY=$PIZZA_KAFKA_PY start_kafka_participant "$1" "pizza-$1" --group "pizza-$1"
}
# the first row of a collection filtered by orderId: pk_row delivery deliveries 7
pk_row() { kp_get "$1" "/$2?orderId=$3" | jq -c "._embedded.$2[0] // empty"; }
pk_field() { pk_row "$1" "$2" "$3" | jq -r ".$4 // empty"; }
# field_eq SVC COLL OID FIELD VALUE (for wait_until)
field_eq() { [ "$(pk_field "$1" "$2" "$3" "$4")" = "$5" ]; }
coupons() { kp_get coupon "/coupons?orderId=$1" | jq -c '[._embedded.coupons[] | .status]'; }
coupons_eq() { [ "$(coupons "$1")" = "$2" ]; }
step_state() { jq -r --arg s "$2" '.steps[] | select(.name == $s) | .state' <<<"$1"; }
order() {   # order PIZZA QTY [wait]: starts pizza-order, prints the saga JSON
	api POST "/v1/flows/pizza-order/sagas?wait=${3:-completion}" "{\"pizzaId\":$1,\"qty\":$2}"
}
order_id_of() { jget "$1" .output.orderId; }
topic_events() {   # topic_events TOPIC ORDERID: event types on TOPIC for that orderId
	kafka_topic_json "$1" | jq -r --argjson o "$2" 'select(.value.orderId == $o) | .value.eventType' |
		tr '\n' ' ' | sed 's/ $//'
}

# ---- setup ------------------------------------------------------------------------------------
plan 71
start_kafka pizza-delivery-commands:3 pizza-delivery-events:3 pizza-coupon:1 pizza-events:1 \
	saga-events:3 || bail_out "sagad-kafka-mock did not start"
for n in order payment refund; do ph_start "$n" || bail_out "pizza-$n did not start"; done
for n in delivery coupon statusview; do pk_start "$n" || bail_out "pizza-$n did not start"; done
KAFKA_PARTICIPANT_PY=$KP_ORIG start_kafka_participant notification notification ||
	bail_out "notification did not start"
PIZZA_DELIVERY_URL=$(kp_url delivery)
export PIZZA_DELIVERY_URL
start_sagad_kafka || bail_out "sagad did not start"
kp_wait_assigned 60 delivery coupon statusview notification
ok $? "setup: the Kafka participants joined their groups"
sagad_wait_assigned 60
ok $? "setup: sagad's consumer was assigned its reply partitions"

# ---- A: happy path ----------------------------------------------------------------------------
t0=$(date +%s%N)
S1=$(order 10 1)
t1=$(date +%s%N)
ID1=$(jget "$S1" .id)
O1=$(order_id_of "$S1")
is "$HTTP_STATUS $(jget "$S1" .status)" "200 completed" "A: POST pizza-order (pizzaId 10, qty 1) completed"
lat=$(( (t1 - t0) / 1000000 ))
ok $(( lat >= 400 ? 0 : 1 )) "A: the payment's 400-700 ms are in the order's latency (${lat} ms)"
is "$(ph_get order "/orders/$O1" | jq -c '[.pizzaId, .qty, .status]')" '[10,1,"Ordered"]' \
	"A: order service: the order (pizzaId 10, qty 1, Ordered)"
is "$(ph_get payment "/payments/search/findByOrderId?orderId=$O1" | jq -c '[._embedded.payments[] | .status]')" \
	'["Paid"]' "A: payment service: one payment of that orderId, Paid"
is "$(pk_field delivery deliveries "$O1" deliveryStatus)" Finished "A: delivery service: Finished"
wait_until 60 coupons_eq "$O1" '["published"]'
ok $? "A: coupon service: one coupon of the orderId, status published"
wait_until 60 field_eq statusview statusviews "$O1" deliveryStatus Finished
ok $? "A: statusview: delivery Finished"
is "$(pk_row statusview statusviews "$O1" | jq -c '[.orderStatus, .pizzaId, .qty]')" '["Paid",10,1]' \
	"A: statusview: order Paid, pizzaId and qty"
is "$(step_state "$S1" coupon)" succeeded "A: the coupon step ran (deliveryStatus == Finished)"
is "$(jget "$S1" .keys.orderId)" "$O1" "A: the saga's business key orderId is the order id"
is "$(topic_events pizza-delivery-commands "$O1")" Paid "A: Paid went to the delivery over Kafka"

# ---- B: the when branch: not Finished -> no coupon --------------------------------------------
curl -s -X POST -d '{"deliveryStatus":"Delivering"}' "$(kp_url delivery)/_control/next-delivery-status" >/dev/null
S2=$(order 11 2)
O2=$(order_id_of "$S2")
is "$(jget "$S2" .status) $(jget "$S2" .output.deliveryStatus)" "completed Delivering" \
	"B: an order whose delivery did not finish completes (deliveryStatus Delivering)"
is "$(step_state "$S2" coupon)" skipped "B: the coupon step is skipped (when: deliveryStatus == 'Finished')"
wait_until 60 field_eq statusview statusviews "$O2" deliveryStatus Delivering
ok $? "B: statusview: delivery Delivering"
is "$(topic_events pizza-coupon "$O2")" "" "B: nothing was published to the coupon service"
is "$(coupons "$O2")" '[]' "B: coupon service: no coupon for that order"

# ---- C: order cancel (completed order) -------------------------------------------------------
S3=$(order 12 1)
O3=$(order_id_of "$S3")
C3=$(api POST '/v1/flows/pizza-order-cancel/sagas?wait=completion' "{\"orderId\":\"$O3\"}")
is "$(jget "$C3" .status)" completed "C: pizza-order-cancel completed"
is "$(api GET "/v1/sagas/$(jget "$S3" .id)" | jq -r .status)" compensated "C: the order saga is compensated"
is "$(ph_get order "/orders/$O3" | jq -r .status)" OrderCancelled "C: order service: OrderCancelled"
is "$(ph_get payment "/payments/search/findByOrderId?orderId=$O3" | jq -r '._embedded.payments[0].status')" \
	PaymentCancelled "C: payment service: PaymentCancelled (FR5)"
wait_until 60 field_eq delivery deliveries "$O3" deliveryStatus DeliveryCancelled
ok $? "C: delivery service: DeliveryCancelled"
wait_until 60 field_eq statusview statusviews "$O3" orderStatus OrderCancelled
ok $? "C: statusview: OrderCancelled"

# ---- D: order cancel while running -----------------------------------------------------------
# (6 s, under the delivery's 10 s timeout: the cancel comes while the order waits, on a loaded
# machine too)
kp_fault delivery '{"eventType":"Paid","delay_ms":6000}' >/dev/null
S4=$(order 13 1 none)
ID4=$(jget "$S4" .id)
d_waiting() { api GET "/v1/sagas/$ID4" | jq -e '.steps[] | select(.name == "deliver" and .state == "running")' >/dev/null; }
wait_until 60 d_waiting
ok $? "D: the order saga waits for Delivered (delivery held 6 s)"
O4=$(api GET "/v1/sagas/$ID4" | jq -r .keys.orderId)
C4=$(api POST '/v1/flows/pizza-order-cancel/sagas?wait=completion' "{\"orderId\":\"$O4\"}")
is "$(jget "$C4" .status) $(api GET "/v1/sagas/$ID4" | jq -r .status)" "completed compensated" \
	"D: the cancel completed after the running order saga was compensated"
is "$(ph_get payment "/payments/search/findByOrderId?orderId=$O4" | jq -r '._embedded.payments[0].status')" \
	PaymentCancelled "D: payment cancelled"
wait_until 60 field_eq delivery deliveries "$O4" deliveryStatus DeliveryCancelled
ok $? "D: the delivery that finished meanwhile was cancelled too"
is "$(coupons "$O4")" '[]' "D: no coupon for the cancelled order"
kp_clear_faults delivery

# ---- E: the pivot fails ----------------------------------------------------------------------
ph_fault payment '{"method":"POST","path":"/payments","status":500,"times":2}'
S5=$(order 14 1)
O5=$(ph_get order /orders?size=2000 | jq -r '._embedded.orders[-1].id')
is "$(jget "$S5" .status)" compensated "E: payment failing (500 twice): the order saga is compensated"
is "$(ph_get order "/orders/$O5" | jq -r .status)" OrderCancelled "E: order service: OrderCancelled"
is "$(ph_get payment "/payments/search/findByOrderId?orderId=$O5" | jq -c '._embedded.payments')" '[]' \
	"E: payment service: nothing paid"
is "$(topic_events pizza-delivery-commands "$O5")$(topic_events pizza-events "$O5")" "" \
	"E: nothing sent to delivery or the statusview"
ph_clear payment

# ---- F: payment circuit breaker --------------------------------------------------------------
ph_fault payment '{"method":"POST","path":"/payments","status":503,"times":-1}'
order 15 1 >/dev/null
order 15 1 >/dev/null
curl -s -D "$TMP/f.h" -o "$TMP/f.b" -X POST -H 'Content-Type: application/json' \
	--data-binary '{"pizzaId":15,"qty":1}' "$SAGAD_URL/v1/flows/pizza-order/sagas?wait=completion"
is "$(head -1 "$TMP/f.h" | awk '{print $2}') $(jq -r '.code // .error.code // empty' "$TMP/f.b")" "503 EOPEN" \
	"F: payment breaker open: a new order is refused at once (503, EOPEN)"
ok '[ -n "$(header_value "$TMP/f.h" Retry-After)" ]' "F: ... with Retry-After"
ph_clear payment
sleep 3.2
S6=$(order 16 1)
is "$(jget "$S6" .status)" completed "F: after the open period the probe order completes (breaker closed)"

# ---- G: refund -------------------------------------------------------------------------------
R1=$(api POST '/v1/flows/pizza-refund/sagas?wait=completion' "{\"orderId\":$O1,\"reason\":\"delivery error\"}")
RID1=$(jget "$R1" .id)
is "$(jget "$R1" .status)" completed "G: POST pizza-refund (orderId, reason \"delivery error\") completed"
is "$(pk_row delivery deliveries "$O1" | jq -c '[.deliveryStatus, .statusBeforeRefund]')" '["refunded","Finished"]' \
	"G: delivery service: refunded (was Finished)"
is "$(kp_log delivery | jq -r --argjson o "$O1" '[.[] | select(.eventType == "HTTP GET" and .request_body.orderId == $o)][0].request_body.deliveryStatus')" \
	refunded "G: delivery got the seed's GET /deliveries with a JSON body {orderId, deliveryStatus: refunded}"
is "$(ph_get refund "/refunds/search/findByOrderId?orderId=$O1" | jq -c '[._embedded.refunds[] | [.reason, .status]]')" \
	'[["delivery error","Refunded"]]' "G: refund service: the refund with its reason"
wait_until 60 coupons_eq "$O1" '["couponRefunded"]'
ok $? "G: coupon service: the order's coupon is couponRefunded"
wait_until 60 field_eq statusview statusviews "$O1" reason "delivery error"
ok $? "G: statusview: the refund reason (FR12)"
V1=$(api GET "/v1/sagas?key.orderId=$O1")
is "$(jq -r '[.sagas[].flow] | sort | join(",")' <<<"$V1")" "pizza-order,pizza-refund" \
	"G: status view by key: GET /v1/sagas?key.orderId= lists the order and its refund"
is "$(jq -r '.sagas[] | select(.flow == "pizza-refund") | .keys.reason' <<<"$V1")" "delivery error" \
	"G: status view by key: the refund reason is a key of the refund saga"
CTL=$("$SAGACTL" --url "$SAGAD_URL" saga list --key "orderId=$O1" 2>&1)
like "$CTL" "pizza-order.*completed" "G: sagactl saga list --key orderId=: the order ..."
like "$CTL" "pizza-refund.*completed" "G: ... and the refund"

# ---- H: refund before any coupon (compensation before the forward action) --------------------
R2=$(api POST '/v1/flows/pizza-refund/sagas?wait=completion' "{\"orderId\":$O2,\"reason\":\"cold pizza\"}")
is "$(jget "$R2" .status)" completed "H: refund of the order without a coupon completed"
wait_until 60 coupons_eq "$O2" '["couponRefunded"]'
ok $? "H: coupon service: a coupon was created with status couponRefunded"
kafka_produce pizza-coupon "$O2" "{\"eventType\":\"Delivered\",\"orderId\":$O2,\"deliveryStatus\":\"Finished\"}" eventType=Delivered
ktool wait-group-lag --group pizza-coupon --topic pizza-coupon >/dev/null 2>&1
sleep 0.5
is "$(coupons "$O2")" '["couponRefunded"]' "H: a late Delivered (Finished) does not issue a coupon for the refunded order"

# ---- I: refund cancel ------------------------------------------------------------------------
X1=$(api POST '/v1/flows/pizza-refund-cancel/sagas?wait=completion' "{\"orderId\":\"$O1\"}")
is "$(jget "$X1" .status) $(api GET "/v1/sagas/$RID1" | jq -r .status)" "completed compensated" \
	"I: pizza-refund-cancel completed; the refund saga is compensated"
is "$(pk_field delivery deliveries "$O1" deliveryStatus)" Finished "I: delivery status restored (Finished)"
is "$(ph_get refund "/refunds/search/findByOrderId?orderId=$O1" | jq -r '._embedded.refunds[0].status')" \
	RefundCancelled "I: refund service: RefundCancelled"
wait_until 60 coupons_eq "$O1" '["published"]'
ok $? "I: coupon restored to published"
wait_until 60 field_eq statusview statusviews "$O1" refundStatus RefundCancelled
ok $? "I: statusview: RefundCancelled"
api POST '/v1/flows/pizza-refund-cancel/sagas?wait=completion' "{\"orderId\":\"$O2\"}" >/dev/null
wait_until 60 coupons_eq "$O2" '[]'
ok $? "I: cancelling the refund that created the couponRefunded coupon removes it"
is "$(pk_field delivery deliveries "$O2" deliveryStatus)" Delivering "I: ... and restores Delivering"

# ---- J: delivery down -----------------------------------------------------------------------
refunds_before=$(ph_get refund /refunds?size=2000 | jq '.page.totalElements')
coupon_msgs_before=$(kafka_topic_json pizza-coupon | grep -c .)
stop_kafka_participant delivery
R3=$(api POST '/v1/flows/pizza-refund/sagas?wait=completion' "{\"orderId\":$O3,\"reason\":\"late\"}")
is "$(jget "$R3" .status)" compensated "J: delivery down: the refund fails"
api POST '/v1/flows/pizza-refund/sagas?wait=completion' "{\"orderId\":$O3,\"reason\":\"late\"}" >/dev/null
is "$(ph_get refund /refunds?size=2000 | jq '.page.totalElements') $(kafka_topic_json pizza-coupon | grep -c .)" \
	"$refunds_before $coupon_msgs_before" "J: nothing committed (no refund row) or published (no Refunded)"
curl -s -D "$TMP/j.h" -o "$TMP/j.b" -X POST -H 'Content-Type: application/json' \
	--data-binary "{\"orderId\":$O3,\"reason\":\"late\"}" "$SAGAD_URL/v1/flows/pizza-refund/sagas?wait=completion"
is "$(head -1 "$TMP/j.h" | awk '{print $2}')" 503 "J: delivery breaker open: a new refund is refused at once (503)"
ok '[ -n "$(header_value "$TMP/j.h" Retry-After)" ]' "J: ... with Retry-After (ask to refund later)"
pk_start delivery || bail_out "delivery did not restart"
kp_wait_assigned 60 delivery
sleep 3.2
R4=$(api POST '/v1/flows/pizza-refund/sagas?wait=completion' "{\"orderId\":$O1,\"reason\":\"again\"}")
is "$(jget "$R4" .status)" completed "J: delivery back, open period over: refunds accepted again"

# ---- J2: the seed's Hystrix 500 ms: a slow delivery fails the refund, its change is undone -----
S8=$(order 18 1)
O8=$(order_id_of "$S8")
kp_fault delivery '{"eventType":"HTTP GET","delay_ms":900,"times":2}' >/dev/null
R8=$(api POST '/v1/flows/pizza-refund/sagas?wait=completion' "{\"orderId\":$O8,\"reason\":\"slow\"}")
# (libcurl's message gives the time it measured when it noticed the timeout: 500 ms or a little
# more on a loaded machine; under the 900 ms the answer takes)
like "$(jget "$R8" .status) $(jget "$R8" .error)" '^compensated step "refund_delivery" failed.*timed out after [5-8][0-9][0-9] milliseconds' \
	"J2: delivery answering after 900 ms: the refund fails on the 500 ms timeout"
is "$(kp_log delivery | jq -r --argjson o "$O8" '[.[] | select(.eventType | startswith("HTTP")) | select((.request_body.orderId == $o) or (.topic | endswith("orderId=\($o)"))) | "\(.eventType):\(.outcome)"] | join(" ")')" \
	"HTTP GET:applied HTTP GET:replayed HTTP PATCH:applied" \
	"J2: delivery applied the refund (answer too late), replayed the retry, then got the compensation"
is "$(pk_field delivery deliveries "$O8" deliveryStatus)" Finished "J2: the delivery status is restored (Finished)"
is "$(ph_get refund "/refunds/search/findByOrderId?orderId=$O8" | jq -c '._embedded.refunds')$(topic_events pizza-coupon "$O8")" \
	'[]Delivered' "J2: no refund row, no Refunded to the coupon"

# ---- K: coupon down -------------------------------------------------------------------------
stop_kafka_participant coupon
S7=$(order 17 1)
O7=$(order_id_of "$S7")
is "$(jget "$S7" .status)" completed "K: coupon down: orders still complete (NFR 2.1)"
R7=$(api POST '/v1/flows/pizza-refund/sagas?wait=completion' "{\"orderId\":$O7,\"reason\":\"coupon down\"}")
is "$(jget "$R7" .status)" completed "K: coupon down: refunds still accepted (NFR 2.3)"
is "$(topic_events pizza-coupon "$O7")" "Delivered Refunded" "K: Delivered and Refunded wait on the coupon topic"
pk_start coupon || bail_out "coupon did not restart"
wait_until 60 coupons_eq "$O7" '["couponRefunded"]'
ok $? "K: the coupon service caught up after its restart: issued, then refunded"

# ---- L: notifications for every state change ------------------------------------------------
n_life() { lifecycle_events "$ID1" | grep -c .; }
n_notes() { kp_get notification "/messages?sagaId=$ID1" | jq '._embedded.messages | length'; }
notes_match() { [ "$(n_notes)" = "$(n_life)" ] && [ "$(n_life)" -gt 0 ]; }
wait_until 60 notes_match
ok $? "L: the notification service has one message per lifecycle event of the order saga"
is "$(lifecycle_summary "$ID1")" "saga:running step:order:running step:order:succeeded step:pay:running step:pay:succeeded step:paid:succeeded step:deliver:running step:deliver:succeeded step:delivered:succeeded step:coupon:succeeded saga:completed" \
	"L: every saga and step state change of the order was published"

done_testing
