#!/bin/bash
# 39-kafka-oversize.sh -- Kafka records larger than --kafka-max-message (here 4 KiB) are refused
# unread: logged (event=record_refused with topic, partition, offset, size and limit), counted
# (sagad_kafka_records_refused_total), their offset released; nothing else changes.
#   1  an oversized trigger event starts nothing; the next event on the partition starts its
#      saga, and the group's offset reaches the end (the refused record does not stall it)
#   2  an oversized reply, correlated to a waiting step, is ignored: the step keeps waiting and
#      the proper reply that follows completes the saga
# This test plays the delivery service by hand (kafka_tool), so it chooses every reply.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init
LIMIT=4096
TOPIC=class-applications

start_kafka delivery-commands:3 delivery-events:3 saga-events:3 class-events:1 "$TOPIC:1" ||
	bail_out "sagad-kafka-mock did not start"
start_participant class && start_participant payment || bail_out "HTTP participants did not start"
start_sagad_kafka --kafka-max-message 4KiB || bail_out "sagad did not start"
sagad_wait_assigned 60
ok $? "sagad's consumer was assigned its topics"

pad=$(head -c $((LIMIT + 100)) /dev/zero | tr '\0' p)
event() {
	jq -cn --arg n "$1" '{eventType: "ClassApplied", studentName: $n, classId: "2", courseId: 2,
		addr: "SEOUL NAMGU", telephoneInfo: "010-1234-2345", payMethod: "BANK",
		payAccount: "1234-2334-4556-7890"}' | jq -c "${2:-.}"
}
produce() {   # produce TOPIC KEY VALUE [kafka_tool args]: sets OFFSET
	local out topic=$1 key=$2 value=$3
	shift 3
	out=$(ktool produce --topic "$topic" --key "$key" "$@" "$value")
	OFFSET=$(jq -r .offset <<<"$out" 2>/dev/null)
	[ -n "$OFFSET" ]
}
sagas_of_offset() {
	saga_list_all | jq -c --arg k "kafka:$TOPIC:0:$1" '[.[] | select(.idempotency_key == $k)]'
}
saga_of_offset_exists() { [ "$(sagas_of_offset "$1" | jq length)" -ge 1 ]; }

# ---- 1 an oversized trigger event ---------------------------------------------------------------
produce "$TOPIC" big "$(event big "$(printf '.pad = "%s"' "$pad")")"
O1=$OFFSET
wait_until 60 metric_is kafka_records_refused_total 1
ok $? "1: an event of $((LIMIT + 100))+ bytes is refused (sagad_kafka_records_refused_total 1)"
is "$(sagad_log_count "event=record_refused topic=$TOPIC partition=0 offset=$O1 bytes=[0-9]+ limit=$LIMIT")" 1 \
	"1: record_refused is logged with its topic, partition, offset, size and the limit"
produce "$TOPIC" small "$(event after-big)"
O2=$OFFSET
wait_until 60 saga_of_offset_exists "$O2"
ok $? "1: the next event on the partition starts its saga"
is "$(sagas_of_offset "$O1" | jq length)" 0 "1: the refused event started nothing"
lag=$(ktool wait-group-lag --group sagad --topic "$TOPIC" --timeout 60)
is "$(jget "$lag" .lag)" 0 "1: the group's offset is at the end of $TOPIC: the refused record did not stall it"

# ---- 2 an oversized reply ------------------------------------------------------------------------
body=$(api POST '/v1/flows/ship-async/sagas?wait=none' '{"applyId": "big-reply", "addr": "SEOUL"}')
ID=$(jget "$body" .id)
ok '[ -n "$ID" ]' "2: a ship-async saga started"
has_command() {
	kafka_consume delivery-commands | jq -e --arg k "$ID:ship:action" \
		'select(.headers["idempotency-key"] == $k)' >/dev/null 2>&1
}
# (30 s: each look is a kcat read of the whole topic from the beginning, slow on a busy
# machine; CI once missed it within 15 s)
wait_until 60 has_command
ok $? "2: its DeliveryRequested command was produced" ||
	diag "outbox rows for delivery-commands (seq created_at sent_at attempts error): $(sqlite3 \
		"$TMP/sagad.db" "SELECT seq, created_at, sent_at, attempts, last_error FROM outbox WHERE
		topic = 'delivery-commands'" 2>&1 | tr '\n' ' ')"
reply() {   # reply BODY-JQ: a DeliveryStarted reply correlated to the saga's ship step
	produce delivery-events big-reply "$(jq -cn '{eventType: "DeliveryStarted", id: 7, applyId: "big-reply",
		deliveryStatus: "DeliveryStart"}' | jq -c "$1")" --header "correlation-id=$ID:ship:action" \
		--header eventType=DeliveryStarted
}
reply "$(printf '.pad = "%s"' "$pad")"
wait_until 60 metric_is kafka_records_refused_total 2
ok $? "2: a reply of $((LIMIT + 100))+ bytes is refused (sagad_kafka_records_refused_total 2)"
# sagad releases a refused record's offset when it refuses it: once its group has committed
# delivery-events to its end, sagad is done with the oversized reply, which had its chance to
# complete (or fail) the step.
lag=$(ktool wait-group-lag --group sagad --topic delivery-events --timeout 60)
is "$(jget "$lag" .lag)" 0 "2: sagad's group committed delivery-events past the refused reply"
s=$(api GET "/v1/sagas/$ID")
# (retry_wait too: on a slow machine the step's 10 s reply deadline may have passed by now, and it
# waits for the same reply under a retry: still waiting, not completed by the refused record.)
like "$(jget "$s" .status):$(jget "$s" '.steps[0].state')" "^running:(running|retry_wait)$" \
	"2: the saga still waits for its reply"
reply .
s=$(wait_status "$ID" completed 60)
ok $? "2: the proper reply that follows completes it"
is "$(jget "$s" '.output | "\(.deliveryId) \(.deliveryStatus)"')" "7 DeliveryStart" "2: its output is the proper reply's"
lag=$(ktool wait-group-lag --group sagad --topic delivery-events --timeout 60)
is "$(jget "$lag" .lag)" 0 "2: the group's offset is at the end of delivery-events"
is "$(grep -cE 'AddressSanitizer|runtime error|level=fatal' "$TMP/sagad.log")" 0 "no sanitizer report or fatal in sagad's log"
done_testing
