#!/bin/bash
# 27-restart.sh -- what must survive a restart of sagad (G5, and G1 extras):
#   1. a retry backoff timer: payment answers 503 once, the pay step waits 2 s (flow copy,
#      jitter 0); kill -9 during the wait; after the restart the retry comes when the 2 s are
#      up -- not at once, not never -- and the saga completes;
#   2. a saga deadline (flow copy apply_dl, deadline 5s) while the delivery is slow: kill -9
#      before the deadline; after the restart the saga compensates once the deadline passed,
#      exactly once, in reverse order;
#   3. an idempotent start (Idempotency-Key) repeated after a kill -9 returns the same saga;
#   4. SIGTERM with a call in flight: sagad exits 0 promptly (--shutdown-grace); after the
#      restart the call is re-sent with the same key, the participant replays it (applied
#      once), and the saga completes.
# Timing is measured on the participants' clocks: the operations log's mono_ns
# (CLOCK_MONOTONIC, shared by all processes) and wall_time.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

BACKOFF_MS=2000
INPUT='{"studentName":"NAME","classId":"2","courseId":2,"addr":"SEOUL NAMGU","telephoneInfo":"010-1234-2345","payMethod":"BANK","payAccount":"1234-2334-4556-7890"}'
input_for() { echo "${INPUT/NAME/$1}"; }

# Flow copies: pay retries after exactly 2 s; apply_dl is apply with a 5 s deadline (long
# enough for the saga to reach its ship call and be killed before it, on a slow machine too).
mkdir -p "$TMP/flows"
cp "$TOP_SRCDIR"/flows/*.yaml "$TMP/flows/"
sed -i -e 's/initial_backoff: 100ms/initial_backoff: 2s\n      jitter: 0/' \
	-e 's/max_backoff: 1s/max_backoff: 4s/' "$TMP/flows/pay.yaml"
sed -e 's/^name: apply$/name: apply_dl/' -e 's/^version: 1$/version: 1\ndeadline: 5s/' \
	"$TOP_SRCDIR/flows/apply.yaml" >"$TMP/flows/apply_dl.yaml"
# apply's compensation retries after 2 s (not 200 ms): 3c must see it waiting to retry, and
# kill sagad then, on a loaded machine too.
sed -i 's/retry: { max_attempts: 10, initial_backoff: 200ms, max_backoff: 30s }/retry: { max_attempts: 10, initial_backoff: 2s, max_backoff: 30s }/' \
	"$TMP/flows/apply.yaml"
grep -q 'initial_backoff: 2s, max_backoff: 30s' "$TMP/flows/apply.yaml" || bail_out "cannot edit the apply flow copy"
FLOWS_DIR=$TMP/flows
export FLOWS_DIR

# child_of PARENT FLOW: prints the id of the sub-flow saga (empty while none)
child_of() {
	api GET '/v1/sagas?limit=1000' | jq -r --arg p "$1" --arg f "$2" \
		'[.sagas[] | select(.parent_id == $p and .flow == $f)][0].id // empty'
}

step_state() {   # SAGA_ID STEP_INDEX -> state
	api GET "/v1/sagas/$1" | jq -r ".steps[$2].state // empty"
}

_is_state() { [ "$(step_state "$1" "$2")" = "$3" ]; }
_has_child() { [ -n "$(child_of "$1" "$2")" ]; }
_logged() {   # SERVICE KEY: the participant logged a request with that key
	[ "$(participant_log "$1" | jq --arg k "$2" '[.[] | select(.idempotency_key == $k)] | length')" -gt 0 ]
}

key_entries() {   # SERVICE KEY -> the log entries with that key (JSON array)
	participant_log "$1" | jq -c --arg k "$2" '[.[] | select(.idempotency_key == $k)]'
}

mono_now() {   # CLOCK_MONOTONIC in ns, as in the operations logs
	python3 -c 'import time; print(time.monotonic_ns())'
}

iso_ms() {   # ISO-8601 time -> ms since the epoch
	python3 -c 'import sys, datetime
s = sys.argv[1].replace("Z", "+00:00")
print(int(datetime.datetime.fromisoformat(s).timestamp() * 1000))' "$1"
}

plan 64
start_participants || bail_out "participants did not start"
start_sagad
ok $? "sagad started on the flow copies (pay: 2 s backoff; apply_dl: 5 s deadline)"
body=$(api GET /v1/flows/apply_dl)
is "$HTTP_STATUS" 200 "the flow apply_dl is loaded"

# ---- 1. a retry timer survives kill -9 ------------------------------------------------------
fault payment '{"method":"POST","path":"/payments","status":503,"times":1}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=none' "$(input_for retry-1)")
is "$HTTP_STATUS" 202 "timer: saga started (202)"
id=$(jget "$body" .id)
wait_until 60 _has_child "$id" pay
pid=$(child_of "$id" pay)
wait_until 60 _is_state "$pid" 0 retry_wait
ok $? "timer: the payment answered 503, the pay step is in retry_wait"
due=$(sqlite3 "$TMP/sagad.db" "SELECT due_at FROM timers WHERE saga_id = '$pid' AND kind = 'retry'" 2>/dev/null)
sleep 0.5
kill9_sagad
is "$SAGAD_EXIT" 137 "timer: kill -9 during the backoff"
restart_ns=$(mono_now)
start_sagad
ok $? "timer: sagad restarted"
body=$(wait_status "$id" completed 60)
ok $? "timer: the saga completed after the restart"
e=$(key_entries payment "$pid:pay:action")
f=$(jq '[.[] | select(.outcome == "fault")][0].mono_ns // 0' <<<"$e")
r=$(jq '[.[] | select(.outcome == "applied")][0].mono_ns // 0' <<<"$e")
gap=$(( (r - f) / 1000000 ))
diag "timer: 503 -> retry ${gap} ms (backoff ${BACKOFF_MS} ms, jitter 0; durable due_at ${due:-?})"
is "$(jq -c 'map(.outcome)' <<<"$e")" '["fault","applied"]' "timer: exactly one retry, applied once"
ok "[ $gap -ge $((BACKOFF_MS * 9 / 10)) ]" "timer: the retry was not sent at once on restart (${gap} ms >= $((BACKOFF_MS * 9 / 10)))"
# The retry comes when the durable due time came, or at once at the restart if sagad took
# longer than that to come back (a loaded machine): at max(503 + backoff, restart) plus
# BACKOFF_MS * 3/4 at most. Restarting the backoff from the restart would give restart +
# BACKOFF_MS or later, past that bound.
at_ms=$(( ((f + BACKOFF_MS * 1000000) > restart_ns ? (f + BACKOFF_MS * 1000000) : restart_ns) / 1000000 ))
late=$(( r / 1000000 - at_ms ))
ok "[ $late -le $((BACKOFF_MS * 3 / 4)) ]" "timer: ... but when the durable due time came (${gap} ms; ${late} ms after max(due, restart) <= $((BACKOFF_MS * 3 / 4)))"
hist=$(api GET "/v1/sagas/$pid" | jq -c '[.history[] | select(.step != null) | "\(.phase):\(.attempt):\(.event)"]')
is "$hist" '["action:1:failed","action:2:succeeded"]' "timer: pay history: attempt 1 failed, attempt 2 succeeded (no re-send of a waiting step)"

# ---- 1b. a retry timer that came due while sagad was down fires at the restart ------------
fault payment '{"method":"POST","path":"/payments","status":503,"times":1}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=none' "$(input_for retry-2)")
id=$(jget "$body" .id)
wait_until 60 _has_child "$id" pay
pid=$(child_of "$id" pay)
wait_until 60 _is_state "$pid" 0 retry_wait
ok $? "timer due while down: the pay step is in retry_wait"
kill9_sagad
sleep $((BACKOFF_MS / 1000)).3
restart_ns=$(mono_now)
start_sagad
ok $? "timer due while down: sagad restarted after the due time"
wait_status "$id" completed 60 >/dev/null
ok $? "timer due while down: the saga completed"
e=$(key_entries payment "$pid:pay:action")
r=$(jq '[.[] | select(.outcome == "applied")][0].mono_ns // 0' <<<"$e")
is "$(jq -c 'map(.outcome)' <<<"$e")" '["fault","applied"]' "timer due while down: exactly one retry, applied once"
# "At once": within BACKOFF_MS * 3/4 of the start (sagad's start-up included); a backoff
# restarted at the restart would come BACKOFF_MS after it.
ok "[ $r -gt $restart_ns ] && [ $(( (r - restart_ns) / 1000000 )) -le $((BACKOFF_MS * 3 / 4)) ]" \
	"timer due while down: retried at once on restart ($(( (r - restart_ns) / 1000000 )) ms after the start)"

# ---- 2. a deadline survives kill -9 ---------------------------------------------------------
# The delivery applies at once but answers after 10 s: ship stays in flight past the deadline.
fault delivery '{"method":"POST","path":"/deliveries","status":0,"delay_ms":10000,"times":-1}' >/dev/null
body=$(api POST '/v1/flows/apply_dl/sagas?wait=none' "$(input_for deadline-1)")
is "$HTTP_STATUS" 202 "deadline: saga started (202)"
id=$(jget "$body" .id)
deadline=$(jget "$body" .deadline_at)
ok '[ -n "$deadline" ]' "deadline: deadline_at is set ($deadline)"
wait_until 60 _has_child "$id" ship
sid=$(child_of "$id" ship)
pid=$(child_of "$id" pay)
wait_until 60 _logged delivery "$sid:ship:action"
ok $? "deadline: the delivery call is in flight"
kill9_sagad
kill_ms=$(date +%s%3N)
start_sagad
ok $? "deadline: sagad restarted"
ready_ms=$(date +%s%3N)
dl_ms=$(iso_ms "$deadline")
ok "[ $kill_ms -lt $dl_ms ]" "deadline: the kill came before the deadline ($((dl_ms - kill_ms)) ms left)"
body=$(wait_status "$id" compensated 60)
ok $? "deadline: the saga compensated after the restart"
saga_ev=$(jq -c '[.history[] | select(.phase == "saga") | .event]' <<<"$body")
diag "deadline: saga events $saga_ev; error: $(jget "$body" .error)"
is "$(jq '[.history[] | select(.phase == "saga" and (.event | test("compensating")))] | length' <<<"$body")" 1 \
	"deadline: the saga turned compensating exactly once"
like "$(jget "$body" .error)$saga_ev" 'deadline' "deadline: the reason is the deadline"
ev=$(jq -r '[.history[] | select(.event == "deadline_exceeded") | .started_at] | join(" ")' <<<"$body")
is "$(wc -w <<<"$ev")" 1 "deadline: one deadline_exceeded event"
ev_ms=$(iso_ms "${ev%% *}" 2>/dev/null)
# Within 1 s of the deadline, or of the restart if sagad came back after it (a loaded machine).
fire_ms=$(( dl_ms > ready_ms ? dl_ms : ready_ms ))
ok "[ ${ev_ms:-0} -ge $dl_ms ] && [ ${ev_ms:-0} -le $((fire_ms + 1000)) ]" \
	"deadline: it fired when the durable deadline passed ($(( ${ev_ms:-0} - dl_ms )) ms after deadline_at, sagad ready $((ready_ms - dl_ms)) ms after it)"
log=$(oplog_all)
comp=$(jq -c --arg a "$id:apply:compensation" --arg p "$pid:pay:compensation" --arg s "$sid:ship:compensation" '
	[.[] | select(.idempotency_key == $a or .idempotency_key == $p or .idempotency_key == $s)
	 | select(.applied == 1)]' <<<"$log")
is "$(jq -c 'map(.service)' <<<"$comp")" '["delivery","payment","class"]' \
	"deadline: delivery, payment, class each undone once, in reverse order"
first_ms=$(iso_ms "$(jq -r '.[0].wall_time // empty' <<<"$comp")" 2>/dev/null)
ok "[ ${first_ms:-0} -ge $dl_ms ]" "deadline: no compensation before the deadline (first $(( ${first_ms:-0} - dl_ms )) ms after it)"
ok "[ ${first_ms:-0} -le $((dl_ms + 8000)) ]" "deadline: ... and it came once the deadline passed (within 8 s: the call in flight is awaited)"
is "$(jq --arg k "$sid:ship:action" '[.[] | select(.idempotency_key == $k and .applied == 1)] | length' <<<"$log")" 1 \
	"deadline: the delivery was applied once under its key"
is "$(oplog_dup_applied "$log")" "" "deadline: no key applied twice"
clear_faults delivery

# ---- 2b. a deadline that passed while sagad was down fires at the restart --------------------
# The delivery answers 503 (ship keeps retrying; nothing applied); sagad is down when the
# deadline passes.
fault delivery '{"method":"POST","path":"/deliveries","status":503,"times":-1}' >/dev/null
body=$(api POST '/v1/flows/apply_dl/sagas?wait=none' "$(input_for deadline-2)")
id=$(jget "$body" .id)
dl_ms=$(iso_ms "$(jget "$body" .deadline_at)")
wait_until 60 _has_child "$id" ship
sid=$(child_of "$id" ship)
pid=$(child_of "$id" pay)
wait_until 60 _logged delivery "$sid:ship:action"
kill9_sagad
now_ms=$(date +%s%3N)
ok "[ $now_ms -lt $dl_ms ]" "deadline while down: killed $((dl_ms - now_ms)) ms before the deadline"
sleep "$(awk -v d=$((dl_ms - now_ms + 300)) 'BEGIN { printf "%.3f", (d > 0 ? d : 0) / 1000 }')"
restart_ms=$(date +%s%3N)
start_sagad
ok $? "deadline while down: sagad restarted after the deadline"
body=$(wait_status "$id" compensated 60)
ok $? "deadline while down: the saga compensated"
ev=$(jq -r '[.history[] | select(.event == "deadline_exceeded") | .started_at] | join(" ")' <<<"$body")
is "$(wc -w <<<"$ev")" 1 "deadline while down: one deadline_exceeded event"
ev_ms=$(iso_ms "${ev%% *}" 2>/dev/null)
# At the restart: within 3 s of it (sagad's start-up included); a deadline measured again from
# the restart would come 5 s after it.
ok "[ ${ev_ms:-0} -ge $restart_ms ] && [ ${ev_ms:-0} -le $((restart_ms + 3000)) ]" \
	"deadline while down: it fired at the restart ($(( ${ev_ms:-0} - restart_ms )) ms after)"
log=$(oplog_all)
comp=$(jq -c --arg a "$id:apply:compensation" --arg p "$pid:pay:compensation" --arg s "$sid:ship:compensation" '
	[.[] | select(.idempotency_key == $a or .idempotency_key == $p or .idempotency_key == $s)
	 | select(.applied == 1) | .service]' <<<"$log")
is "$comp" '["payment","class"]' "deadline while down: payment then class undone once (the refused delivery is not)"
clear_faults delivery

# ---- 3. an idempotent start survives kill -9 -------------------------------------------------
b1=$(api POST '/v1/flows/apply/sagas?wait=none' "$(input_for idem-1)" -H 'Idempotency-Key: restart-idem-1')
is "$HTTP_STATUS" 202 "idempotent start: first start acknowledged (202)"
id1=$(jget "$b1" .id)
kill9_sagad
start_sagad
ok $? "idempotent start: sagad restarted after kill -9"
b2=$(api POST '/v1/flows/apply/sagas?wait=none' "$(input_for idem-1)" -H 'Idempotency-Key: restart-idem-1' \
	-D "$TMP/idem.headers")
like "$HTTP_STATUS" '^20[02]$' "idempotent start: the repeat is answered ($HTTP_STATUS)"
is "$(jget "$b2" .id)" "$id1" "idempotent start: the repeat returns the same saga"
ok 'grep -qi "^Idempotent-Replayed: *true" "$TMP/idem.headers"' "idempotent start: Idempotent-Replayed: true"
wait_status "$id1" completed 60 >/dev/null
ok $? "idempotent start: the saga completed"
is "$(api GET '/v1/sagas?flow=apply&limit=1000' | jq '[.sagas[] | select(.idempotency_key == "restart-idem-1")] | length')" 1 \
	"idempotent start: one saga with that key"
is "$(participant_log class | jq '[.[] | select(.method == "POST" and .applied == 1 and .request_body.studentName == "idem-1")] | length')" 1 \
	"idempotent start: one class application created"

# ---- 3b. the answer was lost to a crash (after_commit:1: committed, no 202): the client's
# retry with the same Idempotency-Key gets the saga that was committed, not a second one.
stop_sagad
SAGAD_CRASHPOINT=after_commit:1 start_sagad
ok $? "lost answer: sagad started with SAGAD_CRASHPOINT=after_commit:1"
API_MAX_TIME=10 api POST '/v1/flows/apply/sagas?wait=none' "$(input_for idem-2)" -H 'Idempotency-Key: restart-idem-2' >/dev/null
is "$HTTP_STATUS" 000 "lost answer: sagad died before answering the start"
wait_sagad_exit 60
is "$SAGAD_EXIT" 137 "lost answer: ... by SIGKILL at after_commit"
start_sagad
b2=$(api POST '/v1/flows/apply/sagas?wait=none' "$(input_for idem-2)" -H 'Idempotency-Key: restart-idem-2' \
	-D "$TMP/idem2.headers")
id2=$(jget "$b2" .id)
ok 'grep -qi "^Idempotent-Replayed: *true" "$TMP/idem2.headers"' "lost answer: the retry is answered with the committed saga (Idempotent-Replayed: true)"
wait_status "$id2" completed 60 >/dev/null
ok $? "lost answer: that saga completed"
is "$(api GET '/v1/sagas?flow=apply&limit=1000' | jq '[.sagas[] | select(.idempotency_key == "restart-idem-2")] | length')" 1 \
	"lost answer: one saga with that key"
is "$(participant_log class | jq '[.[] | select(.method == "POST" and .applied == 1 and .request_body.studentName == "idem-2")] | length')" 1 \
	"lost answer: one class application created"

# ---- 3c. a compensation's retry timer survives kill -9 --------------------------------------
# A declined payment compensates apply; the class answers the cancel 503 twice.
fault class '{"method":"PATCH","path":"/classes/*","status":503,"times":2}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=none' "$(input_for comp-retry-1 | sed 's/"1234-2334-4556-7890"/"0000-1111"/')")
id=$(jget "$body" .id)
wait_until 60 _is_state "$id" 0 compensation_wait
ok $? "compensation timer: apply's compensation is waiting to retry (compensation_wait)"
kill9_sagad
start_sagad
body=$(wait_status "$id" compensated 60)
ok $? "compensation timer: the saga compensated after the restart"
e=$(key_entries class "$id:apply:compensation")
is "$(jq -c 'map(.outcome)' <<<"$e")" '["fault","fault","applied"]' \
	"compensation timer: two refusals, then the cancel applied once"
clear_faults class

# ---- 4. SIGTERM with a call in flight ---------------------------------------------------------
stop_sagad
start_sagad --shutdown-grace 500ms
ok $? "sigterm: sagad started with --shutdown-grace 500ms"
fault delivery '{"method":"POST","path":"/deliveries","status":0,"delay_ms":4000,"times":1}' >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=none' "$(input_for term-1)")
id=$(jget "$body" .id)
wait_until 60 _has_child "$id" ship
sid=$(child_of "$id" ship)
wait_until 60 _logged delivery "$sid:ship:action"
ok $? "sigterm: the delivery call is in flight"
t0=$(date +%s%N)
stop_sagad 10
stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$SAGAD_EXIT" 0 "sigterm: sagad exited 0"
ok "[ $stop_ms -lt 2500 ]" "sigterm: ... promptly (${stop_ms} ms; grace 500 ms, the call needed 4 s)"
like "$(grep 'event=shutdown' "$TMP/sagad.log" | tail -n 1)" 'calls_in_flight=1' "sigterm: the log says one call was in flight"
start_sagad
ok $? "sigterm: sagad restarted"
body=$(wait_status "$id" completed 60)
ok $? "sigterm: the saga completed after the restart"
e=$(key_entries delivery "$sid:ship:action")
is "$(jq -c 'map(.outcome)' <<<"$e")" '["applied","replayed"]' "sigterm: the call was re-sent with the same key and replayed (applied once)"
is "$(api GET "/v1/sagas/$sid" | jq '[.history[] | select(.event == "redispatched")] | length')" 1 \
	"sigterm: the ship history shows the re-send (redispatched)"

done_testing
