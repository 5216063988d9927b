#!/bin/bash
# 30-kafka-steps.sh -- Kafka steps end to end on the mock cluster (sagad-kafka-mock), with the
# Kafka delivery participant (examples/participants/kafka_participant.py delivery), the
# notification participant on the lifecycle topic, and the HTTP class and payment participants.
#
#   A  happy path through a Kafka step (ship-async): the saga, the participant's delivery row and
#      op log, the command and the reply on the topics; the command's headers (docs/kafka.md)
#   B  publish: apply-async publishes ClassRegisted to class-events exactly as documented; one
#      trace across the saga, its sub-flows and every participant
#   C  lifecycle events on saga-events (schema, order, key, unique event_id) and the
#      notification participant's records of them
#   D  a failure reply (DeliveryFailed) compensates apply-async (class and payment undone,
#      nothing published)
#   E  a missed reply deadline: retried with the same idempotency key, then compensated
#      (ship-fast: a copy of ship-async with 1 s deadlines and 2 attempts)
#   F  a duplicate reply changes nothing and is counted (sagad_kafka_replies_unmatched_total)
#   G  late replies (during and after compensation) and a foreign reply change nothing and are
#      counted; an event of another type for a waiting step is "not mine"
#      (sagad_kafka_replies_ignored_total)
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init
T0=$(date +%s)

TRACEPARENT_RE='^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'

# ---- setup ------------------------------------------------------------------------------------
start_kafka delivery-commands:3 delivery-events:3 saga-events:3 class-events:1 \
	class-applications:1 || bail_out "sagad-kafka-mock did not start"
copy_flows "$TMP/flows"
sed -e 's/^name: ship-async$/name: ship-fast/' -e 's/timeout: 10s/timeout: 1s/' \
	-e 's/max_attempts: 8$/max_attempts: 2/' "$TOP_SRCDIR/flows/ship-async.yaml" \
	>"$TMP/flows/ship-fast.yaml"
start_participant class && start_participant payment || bail_out "HTTP participants did not start"
start_kafka_participant delivery delivery || bail_out "delivery (Kafka) did not start"
start_kafka_participant notification notification || bail_out "notification did not start"
FLOWS_DIR=$TMP/flows start_sagad_kafka || bail_out "sagad did not start"
kp_wait_assigned 60 delivery notification
ok $? "the Kafka participants joined their groups"
sagad_wait_assigned 60
ok $? "sagad's consumer was assigned its reply and trigger partitions"

# metric deltas
declare -A M0
metrics_mark() { local m; for m in kafka_replies_total kafka_replies_unmatched_total \
	kafka_replies_ignored_total; do M0[$m]=$(sagad_metric "$m"); done; }
metric_delta() { echo $(( $(sagad_metric "$1") - ${M0[$1]:-0} )); }
# replies on delivery-events whose correlation-id belongs to saga $1
replies_of() { kafka_consume delivery-events | jq -c --arg p "$1:" \
	'select((.headers["correlation-id"] // "") | startswith($p))'; }
commands_of() { kafka_consume delivery-commands | jq -c --arg id "$1" \
	'select(.headers["saga-id"] == $id) | . + {value: (.payload | fromjson)}'; }
oplog_of() { kp_log delivery | jq -c --arg p "$1:" '[.[] | select(.idempotency_key | startswith($p))]'; }
trace_of() { cut -d- -f2 <<<"$1"; }

# ---- A: happy path ----------------------------------------------------------------------------
metrics_mark
body=$(api POST '/v1/flows/ship-async/sagas?wait=completion' \
	'{"applyId":"A-1","addr":"SEOUL NAMGU","name":"학생2","telelephoneInfo":"010-1234-2345"}')
ID1=$(jget "$body" .id)
is "$HTTP_STATUS $(jget "$body" .status)" "200 completed" "A: ship-async through Kafka completed"
dlv=$(kp_get delivery '/deliveries?applyId=A-1')
is "$(jq -c '[._embedded.deliveries[] | {id, applyId, deliveryStatus, name, addr}]' <<<"$dlv")" \
	"[{\"id\":$(jget "$body" .output.deliveryId),\"applyId\":\"A-1\",\"deliveryStatus\":\"DeliveryStart\",\"name\":\"학생2\",\"addr\":\"SEOUL NAMGU\"}]" \
	"A: the delivery service holds one delivery, DeliveryStart, the id in the saga's output"
ol=$(oplog_of "$ID1")
is "$(jq -c '[.[] | [.idempotency_key, .correlation_id, .saga_id, .outcome, .applied, .reply_eventType]]' <<<"$ol")" \
	"[[\"$ID1:ship:action\",\"$ID1:ship:action\",\"$ID1\",\"applied\",1,\"DeliveryStarted\"]]" \
	"A: its op log: the command applied once under <saga>:ship:action, DeliveryStarted sent"
is "$(jget "$body" '.steps[0] | "\(.state) \(.attempt) \(.response.type) \(.response.body.deliveryStatus)"')" \
	"succeeded 1 DeliveryStarted DeliveryStart" "A: the step's response is the reply (type, kept body)"
cmds=$(commands_of "$ID1")
is "$(grep -c . <<<"$cmds")" 1 "A: one command on delivery-commands"
cmd=$(head -n 1 <<<"$cmds")
is "$(jq -c '[.key, .value]' <<<"$cmd")" \
	'["A-1",{"eventType":"DeliveryRequested","applyId":"A-1","addr":"SEOUL NAMGU","name":"학생2","telelephoneInfo":"010-1234-2345"}]' \
	"A: command key = applyId, value = the documented DeliveryRequested body"
h=$(jq -c .headers <<<"$cmd")
is "$(jq -c '{"correlation-id", "idempotency-key", "saga-id", "saga-step", "saga-attempt",
	"reply-to", source, eventType}' <<<"$h")" \
	"{\"correlation-id\":\"$ID1:ship:action\",\"idempotency-key\":\"$ID1:ship:action\",\"saga-id\":\"$ID1\",\"saga-step\":\"ship\",\"saga-attempt\":\"1\",\"reply-to\":\"delivery-events\",\"source\":\"sagad\",\"eventType\":\"DeliveryRequested\"}" \
	"A: headers correlation-id, idempotency-key, saga-id, saga-step, saga-attempt, reply-to, + the flow's"
TP1=$(jget "$h" '.traceparent')
like "$TP1" "$TRACEPARENT_RE" "A: header traceparent is W3C trace context"
is "$(jget "$ol" '.[0].traceparent')" "$TP1" "A: the participant received that traceparent"
rep=$(replies_of "$ID1")
is "$(jq -r '"\(.headers["correlation-id"]) \(.headers.eventType) \(.key)"' <<<"$rep" | tr '\n' ' ')" \
	"$ID1:ship:action DeliveryStarted A-1 " "A: one reply on delivery-events, correlation-id echoed"
is "$(metric_delta kafka_replies_total) $(metric_delta kafka_replies_unmatched_total)" "1 0" \
	"A: metrics: one reply matched, none unmatched"

# ---- B: publish (apply-async) -------------------------------------------------------------------
body=$(api POST '/v1/flows/apply-async/sagas?wait=completion' "$(seed_input)")
ID2=$(jget "$body" .id)
is "$HTTP_STATUS $(jget "$body" .status)" "200 completed" "B: apply-async completed"
APPLY2=$(jget "$body" .output.applyId)
SHIP2=$(child_saga "$body" ship)
PAY2=$(child_saga "$body" pay)
wait_until 60 eval '[ "$(kafka_consume class-events | jq -r --arg id "$ID2" "select(.headers[\"saga-id\"] == \$id) | .offset" | grep -c .)" -ge 1 ]'
ev=$(kafka_consume class-events | jq -c --arg id "$ID2" 'select(.headers["saga-id"] == $id) | . + {value: (.payload | fromjson)}')
is "$(grep -c . <<<"$ev")" 1 "B: one event on class-events for the saga"
cls=$(pcall class GET "/classes/$APPLY2")
want=$(jq -c --argjson c "$cls" --arg a "$APPLY2" '{eventType: "ClassRegisted", id: $c.id,
	applyId: $a, studentName, classId, courseId, addr, telephoneInfo, payMethod,
	applyStatus: "ApplyRequest", deliveryStatus: "DeliveryStart"}' <<<"$(seed_input)")
is "$(jq -c '.value | del(.timestamp)' <<<"$ev")" "$want" \
	"B: ClassRegisted carries the class entity's fields as documented (field order too)"
is "$(jq -r '.value.timestamp | type' <<<"$ev")" number "B: timestamp is a number (now_ms)"
is "$(jq -r '"\(.key) \(.headers.eventType)"' <<<"$ev")" "$APPLY2 ClassRegisted" \
	"B: keyed by applyId, header eventType ClassRegisted"
is "$(jq -r '.headers["idempotency-key"]' <<<"$ev")" "$ID2:registered:action" \
	"B: the event carries idempotency-key <saga>:registered:action (consumers deduplicate on it)"
TPE=$(jq -r '.headers.traceparent' <<<"$ev")
like "$TPE" "$TRACEPARENT_RE" "B: the event has a traceparent"
cmd=$(commands_of "$SHIP2")
tr_class=$(participant_log class | jq -r --arg k "$ID2:apply:action" '[.[] | select(.idempotency_key == $k)][0].traceparent')
tr_pay=$(participant_log payment | jq -r --arg k "$PAY2:pay:action" '[.[] | select(.idempotency_key == $k)][0].traceparent')
tr_dlv=$(oplog_of "$SHIP2" | jq -r '.[0].traceparent')
is "$(trace_of "$tr_class") $(trace_of "$tr_pay") $(trace_of "$tr_dlv") $(trace_of "$(jq -r .headers.traceparent <<<"$cmd")")" \
	"$(trace_of "$TPE") $(trace_of "$TPE") $(trace_of "$TPE") $(trace_of "$TPE")" \
	"B: one trace id for the saga and its sub-flows (class, payment, delivery command, ClassRegisted)"
ok '[ "$(trace_of "$TPE")" != "$(trace_of "$TP1")" ]' "B: another top-level saga has another trace id"
is "$(kp_get delivery "/deliveries?applyId=$APPLY2" | jq -c '[._embedded.deliveries[].deliveryStatus]')" \
	'["DeliveryStart"]' "B: the delivery service shipped that application once"

# ---- C: lifecycle events and the notification participant --------------------------------------
wait_until 60 eval '[ "$(lifecycle_summary "$ID1")" = "saga:running step:ship:running step:ship:succeeded saga:completed" ]'
is "$(lifecycle_summary "$ID1")" "saga:running step:ship:running step:ship:succeeded saga:completed" \
	"C: ship-async's events: saga running, step running, step succeeded, saga completed"
lev=$(lifecycle_events "$ID1")
is "$(jq -r '"\(._key == .saga_id) \(._headers["saga-id"] == .saga_id) \(._headers["event-type"] == .type)"' <<<"$lev" | sort -u | tr '\n' ' ')" \
	"true true true " "C: keyed by the saga id, headers saga-id and event-type"
is "$(jq -r ._partition <<<"$lev" | sort -u | grep -c .)" 1 "C: all of one saga's events in one partition"
bad=$(jq -r '(if .type == "saga" then ["event_id","type","saga_id","flow","flow_version","status",
	"parent_id","time","error"] else ["event_id","type","saga_id","flow","flow_version",
	"status","parent_id","time","step","step_index","state","attempt","comp_attempt","error"] end)
	as $want | select((keys - ["_key","_partition","_offset","_headers"] | sort) != ($want | sort)
	or (.event_id | type) != "string" or .flow != "ship-async" or .flow_version != 1
	or .parent_id != null or (.time | test("^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$") | not))
	| "\(._offset):\(keys - ["_key","_partition","_offset","_headers"] | join(","))"' <<<"$lev")
is "$bad" "" "C: every event has the documented fields (saga: ... error; step: step, step_index, state, attempt, comp_attempt)"
is "$(jq -c 'select(.type == "step") | [.step, .step_index, .attempt, .comp_attempt, .status]' <<<"$lev" | sort -u | tr -d '\n')" \
	'["ship",0,1,0,"running"]' "C: step events: step ship, index 0, attempt 1, saga status running"
is "$(jq -c 'select(.type == "saga") | has("input")' <<<"$lev" | sort -u)" "false" \
	"C: saga events carry no input (it may be large or sensitive)"
all_ids=$(kafka_consume saga-events | jq -r '.payload | fromjson | .event_id')
is "$(sort <<<"$all_ids" | uniq -d | tr '\n' ' ')" "" "C: event_id is unique over the whole topic ($(grep -c . <<<"$all_ids") events)"
# (a publish step is done when its event is committed: "running" before "succeeded" is optional)
like "$(lifecycle_summary "$ID2")" \
	'^saga:running step:apply:running step:apply:succeeded step:pay:running step:pay:succeeded step:ship:running step:ship:succeeded (step:registered:running )?step:registered:succeeded saga:completed$' \
	"C: apply-async's events in order, the publish step too"
is "$(lifecycle_events "$SHIP2" | jq -r .parent_id | sort -u)" "$ID2" \
	"C: the ship-async sub-saga's events name their parent"
want_ev=$(jq -r .event_id <<<"$lev" | tr '\n' ' ')
wait_until 60 eval '[ "$(kp_get notification "/messages?sagaId=$ID1" | jq -r "._embedded.messages[].eventId" | tr "\n" " ")" = "$want_ev" ]'
msgs=$(kp_get notification "/messages?sagaId=$ID1")
is "$(jq -r '._embedded.messages[].eventId' <<<"$msgs" | tr '\n' ' ')" "$want_ev" \
	"C: notification recorded one message per lifecycle event, in order"
is "$(jq -r '._embedded.messages[] | "\(.eventType)/\(.status)/\(.step // "-")/\(.stepState // "-")/\(.messageStatus)"' <<<"$msgs" | tr '\n' ' ')" \
	"saga/running/-/-/Message Sended step/running/ship/running/Message Sended step/running/ship/succeeded/Message Sended saga/completed/-/-/Message Sended " \
	"C: the messages: event type, saga status, step, step state, Message Sended"

# ---- D: a failure reply compensates -------------------------------------------------------------
kp_fault delivery '{"eventType":"DeliveryRequested","reply":"DeliveryFailed","times":1}' >/dev/null
metrics_mark
body=$(api POST '/v1/flows/apply-async/sagas?wait=completion' "$(seed_input '.studentName = "fail-1"')")
ID4=$(jget "$body" .id)
SHIP4=$(child_saga "$body" ship)
PAY4=$(child_saga "$body" pay)
APPLY4=$(jget "$body" '.steps[0].response.body.id')
is "$HTTP_STATUS $(jget "$body" .status)" "200 compensated" "D: DeliveryFailed: apply-async compensated"
like "$(jget "$body" .error)" 'type DeliveryFailed' "D: the saga's error names the failure event"
is "$(jget "$body" '[.steps[] | "\(.name)=\(.state)"] | join(" ")')" \
	"apply=compensated pay=compensated ship=failed registered=pending" \
	"D: ship failed (not retried), pay and apply compensated, nothing published"
is "$(oplog_of "$SHIP4" | jq -c '[.[] | [.eventType, .outcome, .applied, .reply_eventType]]')" \
	'[["DeliveryRequested","fault",0,"DeliveryFailed"]]' \
	"D: the delivery service answered DeliveryFailed without applying; no cancel was sent (nothing applied)"
is "$(replies_of "$SHIP4" | jq -r .headers.eventType | tr '\n' ' ')" "DeliveryFailed " \
	"D: the DeliveryFailed reply is on delivery-events"
is "$(pcall class GET "/classes/$APPLY4" | jq -r .applyStatus)" CLASS_CANCELED \
	"D: the class service's application is CLASS_CANCELED"
is "$(pcall payment GET "/payments/search/findByApplyId?applyId=$APPLY4" | jq -r '[._embedded.payments[].payStaus] | join(",")')" \
	PaymentCancelled "D: the payment service's payment is PaymentCancelled"
is "$(kp_get delivery "/deliveries?applyId=$APPLY4" | jq '._embedded.deliveries | length')" 0 \
	"D: no delivery exists for it"
is "$(kafka_consume class-events | jq -r --arg id "$ID4" 'select(.headers["saga-id"] == $id) | .offset' | grep -c .)" 0 \
	"D: no ClassRegisted was published"
is "$(lifecycle_summary "$SHIP4")" "saga:running step:ship:running step:ship:failed saga:compensating saga:compensated" \
	"D: the sub-saga's lifecycle: step failed, saga compensated"
is "$(lifecycle_summary "$ID4" | awk '{print $NF}')" "saga:compensated" "D: the parent's last lifecycle event: compensated"
kp_clear_faults delivery

# ---- E: a missed reply deadline -------------------------------------------------------------------
kp_fault delivery '{"eventType":"DeliveryRequested","drop_reply":true,"times":-1}' >/dev/null
metrics_mark
body=$(api POST '/v1/flows/ship-fast/sagas?wait=completion' '{"applyId":"E-1"}')
ID5=$(jget "$body" .id)
is "$HTTP_STATUS $(jget "$body" .status)" "200 compensated" "E: no reply within the deadline: compensated"
like "$(jget "$body" .error)" 'no reply on delivery-events within 1000ms' "E: the error says which deadline passed"
is "$(jget "$body" '.steps[0] | "\(.state) \(.attempt) \(.comp_attempt)"')" "compensated 2 1" \
	"E: 2 attempts, then the abandoned step was compensated"
cmds=$(commands_of "$ID5")
is "$(jq -r '"\(.value.eventType)/\(.headers["idempotency-key"])/\(.headers["correlation-id"])/\(.headers["saga-attempt"])"' <<<"$cmds" | tr '\n' ' ')" \
	"DeliveryRequested/$ID5:ship:action/$ID5:ship:action/1 DeliveryRequested/$ID5:ship:action/$ID5:ship:action/2 DeliveryCancelRequested/$ID5:ship:compensation/$ID5:ship:compensation/1 " \
	"E: the retry has the same idempotency key and correlation-id, a new saga-attempt; then the cancel"
is "$(oplog_of "$ID5" | jq -r '.[] | "\(.eventType)/\(.outcome)"' | tr '\n' ' ')" \
	"DeliveryRequested/applied+reply-dropped DeliveryRequested/replayed+reply-dropped DeliveryCancelRequested/applied " \
	"E: participant: applied once, the retry replayed (never applied twice), the cancel applied"
is "$(kp_get delivery '/deliveries?applyId=E-1' | jq -c '[._embedded.deliveries[].deliveryStatus]')" \
	'["DELIVERY_CANCEL"]' "E: the delivery that was made is cancelled"
is "$(lifecycle_summary "$ID5")" \
	"saga:running step:ship:running step:ship:retry_wait step:ship:running step:ship:timed_out saga:compensating step:ship:compensating step:ship:compensated saga:compensated" \
	"E: lifecycle: running, retry_wait, running, timed_out, compensating, compensated"
is "$(metric_delta kafka_replies_total) $(metric_delta kafka_replies_unmatched_total)" "1 0" \
	"E: metrics: one reply matched (the cancel's), none unmatched"
kp_clear_faults delivery

# ---- F: a duplicate reply -------------------------------------------------------------------------
kp_fault delivery '{"eventType":"DeliveryRequested","duplicate_reply":true,"times":1}' >/dev/null
metrics_mark
body=$(api POST '/v1/flows/ship-async/sagas?wait=completion' '{"applyId":"F-1"}')
ID6=$(jget "$body" .id)
is "$HTTP_STATUS $(jget "$body" .status)" "200 completed" "F: a saga whose reply is sent twice completes"
is "$(replies_of "$ID6" | jq -r '.headers["correlation-id"]' | tr '\n' ' ')" \
	"$ID6:ship:action $ID6:ship:action " "F: delivery-events holds the reply twice"
wait_until 60 metric_is kafka_replies_unmatched_total $(( M0[kafka_replies_unmatched_total] + 1 ))
is "$(metric_delta kafka_replies_total) $(metric_delta kafka_replies_unmatched_total)" "1 1" \
	"F: the first is matched, the duplicate counted in sagad_kafka_replies_unmatched_total"
s=$(api GET "/v1/sagas/$ID6")
is "$(jget "$s" '"\(.status) \(.steps[0].state) \(.steps[0].attempt) \([.history[] | select(.event == "succeeded")] | length)"')" \
	"completed succeeded 1 1" "F: the duplicate changed nothing (one succeeded in the history)"
is "$(oplog_of "$ID6" | jq -r '.[] | "\(.outcome)/\(.applied)"' | tr '\n' ' ')" "applied+reply-duplicated/1 " \
	"F: the participant applied the command once"

# ---- G: late replies, a foreign reply, an event that is not mine -----------------------------------
# G1: the participant holds the command 4 s; the 1 s deadlines pass twice, the saga compensates
# meanwhile: both DeliveryStarted replies (attempt 1, and the replay for attempt 2) come late.
kp_fault delivery '{"eventType":"DeliveryRequested","delay_ms":4000,"times":1}' >/dev/null
metrics_mark
body=$(api POST '/v1/flows/ship-fast/sagas?wait=completion' '{"applyId":"G-1"}')
ID7=$(jget "$body" .id)
is "$HTTP_STATUS $(jget "$body" .status) $(jget "$body" .steps[0].state)" "200 compensated compensated" \
	"G1: a reply slower than both deadlines: compensated"
wait_until 60 eval '[ "$(oplog_of "$ID7" | jq "[.[] | select(.eventType == \"DeliveryRequested\")] | length")" -ge 2 ]'
late_action_replies() { replies_of "$ID7" | jq -r 'select(.headers["correlation-id"] | endswith(":action")) | .offset' | grep -c .; }
wait_until 60 eval '[ "$(late_action_replies)" -ge 2 ]'   # the second one is produced after the log entry
n_rep=$(replies_of "$ID7" | grep -c .)
n_late=$(late_action_replies)
is "$n_late" 2 "G1: two DeliveryStarted replies to the action arrived after its deadline"
wait_until 60 metric_is kafka_replies_unmatched_total $(( M0[kafka_replies_unmatched_total] + n_rep - $(metric_delta kafka_replies_total) ))
is "$(metric_delta kafka_replies_unmatched_total)" "$(( n_rep - $(metric_delta kafka_replies_total) ))" \
	"G1: every reply of this saga that was not matched ($n_rep on the topic) is counted as unmatched"
s7=$(api GET "/v1/sagas/$ID7")
is "$(jget "$s7" '"\(.status) \(.steps[0].state) \(.output)"')" "compensated compensated null" \
	"G1: the late replies changed nothing"
is "$(kp_get delivery '/deliveries?applyId=G-1' | jq -c '[._embedded.deliveries[].deliveryStatus]')" \
	'["DELIVERY_CANCEL"]' "G1: the participant applied the late command once, then the cancel undid it"
# G2: a reply long after the saga ended, and one for no saga at all.
metrics_mark
kafka_produce delivery-events G-1 '{"eventType":"DeliveryStarted","id":99,"applyId":"G-1","deliveryStatus":"DeliveryStart"}' \
	"correlation-id=$ID7:ship:action" eventType=DeliveryStarted
kafka_produce delivery-events X-1 '{"eventType":"DeliveryStarted","id":98,"deliveryStatus":"DeliveryStart"}' \
	"correlation-id=01NOSUCHSAGA0000000000000:ship:action" eventType=DeliveryStarted
wait_until 60 metric_is kafka_replies_unmatched_total $(( M0[kafka_replies_unmatched_total] + 2 ))
is "$(metric_delta kafka_replies_unmatched_total) $(metric_delta kafka_replies_total)" "2 0" \
	"G2: a reply after compensation and a foreign reply: both unmatched"
s=$(api GET "/v1/sagas/$ID7")
is "$(jget "$s" '"\(.status) \(.updated_at) \(.history | length)"')" \
	"$(jget "$s7" '"\(.status) \(.updated_at) \(.history | length)"')" "G2: the compensated saga did not change"
# G3: an event of another type with a waiting step's correlation-id is not mine.
kp_fault delivery '{"eventType":"DeliveryRequested","delay_ms":2500,"times":1}' >/dev/null
metrics_mark
body=$(api POST '/v1/flows/ship-async/sagas?wait=none' '{"applyId":"G-3"}')
ID8=$(jget "$body" .id)
wait_until 60 eval '[ "$(commands_of "$ID8" | grep -c .)" -ge 1 ]'
kafka_produce delivery-events G-3 '{"eventType":"DeliveryProgress","applyId":"G-3"}' \
	"correlation-id=$ID8:ship:action" eventType=DeliveryProgress
wait_until 60 metric_is kafka_replies_ignored_total $(( M0[kafka_replies_ignored_total] + 1 ))
is "$(metric_delta kafka_replies_ignored_total) $(jget "$(api GET "/v1/sagas/$ID8")" '"\(.status) \(.steps[0].state)"')" \
	"1 running running" "G3: DeliveryProgress for the waiting step: ignored (not mine), the step keeps waiting"
is "$(metric_delta kafka_replies_unmatched_total)" 0 \
	"G3: ... and counted only as ignored, not also as unmatched (it did match a waiting step)"
s=$(wait_status "$ID8" completed 60)
is "$(jget "$s" '"\(.status) \(.steps[0].response.type) \(.steps[0].attempt)"')" \
	"completed DeliveryStarted 1" "G3: then the real reply completes it"
kp_clear_faults delivery

# ---- every command applied at most once ------------------------------------------------------------
is "$(kp_log delivery | jq -r '[.[] | select(.applied == 1)] | group_by(.idempotency_key)
	| map(select(length > 1) | .[0].idempotency_key) | .[]' | tr '\n' ' ')" "" \
	"no idempotency key was applied twice by the delivery service"
is "$(kp_log notification | jq -r '[.[] | select(.applied == 1)] | group_by(.idempotency_key)
	| map(select(length > 1) | .[0].idempotency_key) | .[]' | tr '\n' ' ')" "" \
	"notification recorded no lifecycle event twice"
diag "30-kafka-steps: $(( $(date +%s) - T0 )) s"
done_testing
