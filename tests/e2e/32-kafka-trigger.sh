#!/bin/bash
# 32-kafka-trigger.sh -- sagas started by Kafka events (flows/apply-event.yaml: a ClassApplied
# event on class-applications starts apply-event, which runs apply-async as a sub-flow: class
# and payment over HTTP, the delivery over Kafka, ClassRegisted published to class-events).
#
#   1  a ClassApplied event starts one saga: its input made from the event (source =
#      topic/partition/offset), its idempotency key kafka:<topic>:<partition>:<offset>; the
#      participants' records and the published ClassRegisted
#   2  filters: another eventType, a ClassApplied without a required field, a value that is not
#      JSON start nothing, and the consumer moves on (group lag 0, the next event starts a saga)
#   3  a trigger event redelivered after a crash (SAGAD_CRASHPOINT=after_commit: the saga's start
#      committed, the offset not) starts one saga (sagad_trigger_duplicates_total)
#   4  kill -9 right after the triggered saga appears: still exactly one saga for the record
#   5  the same payload produced again (another offset) starts a second saga
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init
command -v sqlite3 >/dev/null 2>&1 || skip_all "sqlite3 is not installed"
T0=$(date +%s)
TOPIC=class-applications

start_kafka delivery-commands:3 delivery-events:3 saga-events:3 class-events:1 "$TOPIC:1" ||
	bail_out "sagad-kafka-mock did not start"
start_participant class && start_participant payment || bail_out "HTTP participants did not start"
start_kafka_participant delivery delivery || bail_out "delivery (Kafka) did not start"
start_sagad_kafka || bail_out "sagad did not start"
kp_wait_assigned 60 delivery
sagad_wait_assigned 60
ok $? "sagad's consumer was assigned $TOPIC"

# event NAME [JQ]: a ClassApplied event (the contract in flows/apply-event.yaml), compact JSON.
event() {
	jq -cn --arg n "$1" '{eventType: "ClassApplied", studentName: $n, classId: "2", courseId: 2,
		addr: "SEOUL NAMGU", telephoneInfo: "010-1234-2345", payMethod: "BANK",
		payAccount: "1234-2334-4556-7890"}' | jq -c "${2:-.}"
}

# produce KEY VALUE: produces to $TOPIC with kafka_tool (idempotent producer, waits for the ack)
# and sets OFFSET.
produce() {
	local out
	out=$(ktool produce --topic "$TOPIC" --key "$1" "$2")
	OFFSET=$(jq -r .offset <<<"$out" 2>/dev/null)
	[ -n "$OFFSET" ]
}

# sagas_of_offset OFFSET: the apply-event sagas started by that record, as a JSON array.
sagas_of_offset() {
	saga_list_all | jq -c --arg k "kafka:$TOPIC:0:$1" '[.[] | select(.flow == "apply-event" and .idempotency_key == $k)]'
}
n_sagas_of_offset() { sagas_of_offset "$1" | jq length; }
saga_of_offset_exists() { [ "$(n_sagas_of_offset "$1")" -ge 1 ]; }

# applied NAME: how many class entities the class service created for that student
applied_classes() {
	participant_log class | jq --arg n "$1" '[.[] | select(.method == "POST" and .applied == 1
		and .request_body.studentName == $n)] | length'
}
registered_events() {   # NAME: ClassRegisted events for that student on class-events
	kafka_consume class-events | jq -r --arg n "$1" 'select((.payload | fromjson | .studentName) == $n) | .offset' | grep -c .
}

# ---- 1: an event starts a saga ----------------------------------------------------------------------
produce stu-1 "$(event trig-1)"
ok $? "1: ClassApplied produced to $TOPIC (offset $OFFSET)"
O1=$OFFSET
wait_until 60 saga_of_offset_exists "$O1"
S1=$(sagas_of_offset "$O1" | jq -r '.[0].id // empty')
ok '[ -n "$S1" ]' "1: an apply-event saga was started by the record"
s=$(wait_status "$S1" completed 60)
is "$(jget "$s" .status)" completed "1: it completed"
is "$(jget "$s" '.idempotency_key')" "kafka:$TOPIC:0:$O1" "1: its idempotency key is kafka:<topic>:<partition>:<offset>"
is "$(jget "$s" '.input')" "$(event trig-1 "del(.eventType) + {source: \"$TOPIC/0/$O1\"}" | jq .)" \
	"1: its input is made from the event, source = topic/partition/offset"
APPLY1=$(jget "$s" .output.applyId)
is "$(jget "$s" '.output | "\(.applyStatus) \(.deliveryStatus)"')" "ApplyRequest DeliveryStart" \
	"1: its output is apply-async's (the application registered and shipped)"
is "$(applied_classes trig-1)" 1 "1: the class service registered the application once"
is "$(kp_get delivery "/deliveries?applyId=$APPLY1" | jq -c '[._embedded.deliveries[].deliveryStatus]')" \
	'["DeliveryStart"]' "1: the delivery service shipped it once"
wait_until 60 eval '[ "$(registered_events trig-1)" -ge 1 ]'
is "$(registered_events trig-1)" 1 "1: one ClassRegisted on class-events"
is "$(sagad_metric triggered_total) $(sagad_metric trigger_duplicates_total)" "1 0" \
	"1: sagad_triggered_total 1, sagad_trigger_duplicates_total 0"

# ---- 2: filters --------------------------------------------------------------------------------------
produce stu-2 "$(event filt-other '.eventType = "ClassCancelled"')"
O2a=$OFFSET
produce stu-2 "$(event filt-missing 'del(.payMethod)')"
O2b=$OFFSET
produce stu-2 'not json {'
O2c=$OFFSET
produce stu-2 "$(event filt-ok)"
O2d=$OFFSET
wait_until 60 saga_of_offset_exists "$O2d"
ok $? "2: the valid event after them started a saga (the consumer moved on)"
is "$(n_sagas_of_offset "$O2a") $(n_sagas_of_offset "$O2b") $(n_sagas_of_offset "$O2c")" "0 0 0" \
	"2: another eventType, a missing required field, a value that is not JSON: no saga"
is "$(saga_list_all | jq '[.[] | select(.flow == "apply-event")] | length')" 2 "2: two apply-event sagas in all"
is "$(applied_classes filt-other) $(applied_classes filt-missing)" "0 0" "2: the class service saw none of the filtered events"
ok '[ "$(sagad_log_count "offset=$O2b event=trigger_rejected|event=trigger_rejected.* offset=$O2b ")" -ge 1 ]' \
	"2: the event without payMethod is logged as trigger_rejected"
is "$(sagad_metric triggered_total)" 2 "2: sagad_triggered_total 2"
lag=$(ktool wait-group-lag --group sagad --topic "$TOPIC" --timeout 60)
is "$(jget "$lag" .lag)" 0 "2: sagad's group committed $TOPIC to its end (filtered records too)"
wait_status "$(sagas_of_offset "$O2d" | jq -r '.[0].id')" completed 30 >/dev/null
ok $? "2: the filt-ok saga completed"

# ---- 3: redelivery after a crash between the saga's commit and the offset commit -------------------
stop_sagad
SAGAD_CRASHPOINT=after_commit start_sagad_kafka
ok $? "3: sagad restarted with SAGAD_CRASHPOINT=after_commit"
sagad_wait_assigned 60
produce stu-3 "$(event crash-1)"
O3=$OFFSET
P3=$(event crash-1)
wait_sagad_exit 60
is "$SAGAD_EXIT" 137 "3: sagad killed itself after committing the triggered saga's start"
ok '[ "$(sagad_log_count "event=crashpoint point=after_commit")" -ge 1 ]' "3: event=crashpoint point=after_commit logged"
is "$(sqlite3 "$TMP/sagad.db" "SELECT count(*) FROM sagas WHERE idempotency_key = 'kafka:$TOPIC:0:$O3'" 2>&1)" 1 \
	"3: the saga's start is in the database"
# (sagad is dead: the lag cannot go down. A look of 1 s may find no answer on a loaded machine:
# look again until one answers.)
lag_now() { lag=$(ktool wait-group-lag --group sagad --topic "$TOPIC" --timeout 1 2>/dev/null); [ "$(jget "$lag" .lag)" -ge 0 ] 2>/dev/null; }
wait_until 60 lag_now
ok '[ "$(jget "$lag" .lag)" -ge 1 ]' "3: the record's offset was not committed (lag $(jget "$lag" .lag)): it will be redelivered"
start_sagad_kafka
ok $? "3: sagad restarted without the crash point"
wait_until 60 metric_is trigger_duplicates_total 1
is "$(sagad_metric trigger_duplicates_total) $(sagad_metric triggered_total)" "1 0" \
	"3: the redelivered record found its saga (sagad_trigger_duplicates_total 1) and started none"
S3=$(sagas_of_offset "$O3" | jq -r '.[0].id // empty')
s=$(wait_status "$S3" completed 60)
is "$(jget "$s" .status) $(n_sagas_of_offset "$O3")" "completed 1" "3: exactly one saga for the record, completed"
is "$(applied_classes crash-1)" 1 "3: the class service registered that application once"
wait_until 60 eval '[ "$(registered_events crash-1)" -ge 1 ]'
is "$(registered_events crash-1)" 1 "3: one ClassRegisted for it"
lag=$(ktool wait-group-lag --group sagad --topic "$TOPIC" --timeout 60)
is "$(jget "$lag" .lag)" 0 "3: the redelivered record's offset is committed now"

# ---- 4: kill -9 right after the saga appears ----------------------------------------------------------
produce stu-4 "$(event kill-1)"
O4=$OFFSET
wait_until 60 saga_of_offset_exists "$O4"
kill9_sagad
is "$SAGAD_EXIT" 137 "4: sagad killed with SIGKILL right after the triggered saga appeared"
start_sagad_kafka
ok $? "4: sagad restarted"
sagad_wait_assigned 60
S4=$(sagas_of_offset "$O4" | jq -r '.[0].id // empty')
s=$(wait_status "$S4" completed 60)
# A redelivery of the record (when its offset was not committed before the kill) is handled
# before sagad stores and commits the offset past it: once sagad's group has committed $TOPIC
# to its end, a redelivery has had its chance to start a second saga.
lag=$(ktool wait-group-lag --group sagad --topic "$TOPIC" --timeout 60)
is "$(jget "$lag" .lag)" 0 "4: sagad's group committed $TOPIC to its end: a redelivery, if any, was handled"
is "$(jget "$s" .status) $(n_sagas_of_offset "$O4")" "completed 1" "4: exactly one saga for the record, completed"
is "$(applied_classes kill-1)" 1 "4: the class service registered that application once"
diag "4: redelivered after the kill: $(sagad_metric trigger_duplicates_total) (0 when the offset was committed before the kill)"

# ---- 5: the same payload again, at another offset ------------------------------------------------------
produce stu-3 "$P3"
O5=$OFFSET
wait_until 60 saga_of_offset_exists "$O5"
S5=$(sagas_of_offset "$O5" | jq -r '.[0].id // empty')
ok '[ -n "$S5" ] && [ "$S5" != "$S3" ]' "5: the same payload at offset $O5 started a second saga"
s=$(wait_status "$S5" completed 60)
is "$(jget "$s" '"\(.status) \(.input.source)"')" "completed $TOPIC/0/$O5" "5: it completed, its source names the new offset"
is "$(applied_classes crash-1)" 2 "5: the class service now has two applications of crash-1 (one per record)"
is "$(saga_list_all | jq '[.[] | select(.flow == "apply-event")] | length')" 5 \
	"5: five apply-event sagas in all: one per accepted record (trig-1, filt-ok, crash-1 twice, kill-1)"
diag "32-kafka-trigger: $(( $(date +%s) - T0 )) s"
done_testing
