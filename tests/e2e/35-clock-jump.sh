#!/bin/bash
# 35-clock-jump.sh -- G5 under wall-clock jumps of +1 h and -1 h (libfaketime): retry backoffs
# and deadlines keep their durations (they are measured on the monotonic clock while sagad
# runs; only their durable copies are wall-clock times), and a deadline fires exactly once.
#
# Injection: sagad runs with libfaketimeMT preloaded, FAKETIME_TIMESTAMP_FILE=$TMP/faketime
# (re-read at every clock read: FAKETIME_NO_CACHE=1) and FAKETIME_DONT_FAKE_MONOTONIC=1.
# Writing "+3600" into the file moves sagad's wall clock one hour ahead at once; writing
# "+0" afterwards moves it back by one hour.  The participants keep the real clock; the
# gaps are measured on their operations logs (mono_ns, CLOCK_MONOTONIC) and by the test.
#
#   +1 h  saga X (pay, backoff 6 s) and saga Y (pay, backoff 2 s) wait to retry, saga D1 (3 s
#         deadline) waits for a slow delivery; the clock jumps.  Y retries after 2 s, X after
#         6 s (not when Y's timer wakes the loop), D1 compensates 3 s after its start.
#   -1 h  saga Z (backoff 6 s) and saga D2 (3 s deadline) likewise: Z retries after 6 s, D2
#         compensates after 3 s (not an hour later).
#   After a restart (the clock still moved) no deadline fires a second time.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init
FAKETIME_LIB=${FAKETIME_LIB:-/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1}
[ -f "$FAKETIME_LIB" ] || bail_out "libfaketime is not installed ($FAKETIME_LIB; apt-get install libfaketime)"

# Flow copies: pay retries after exactly 2 s, payslow after 6 s; apply_dl has a 3 s deadline.
mkdir -p "$TMP/flows"
cp "$TOP_SRCDIR"/flows/*.yaml "$TMP/flows/"
sed -i -e 's/initial_backoff: 100ms/initial_backoff: 2s\n      jitter: 0/' \
	-e 's/max_backoff: 1s/max_backoff: 8s/' "$TMP/flows/pay.yaml"
sed -e 's/^name: pay$/name: payslow/' -e 's/initial_backoff: 2s/initial_backoff: 6s/' \
	"$TMP/flows/pay.yaml" >"$TMP/flows/payslow.yaml"
sed -e 's/^name: apply$/name: apply_dl/' -e 's/^version: 1$/version: 1\ndeadline: 3s/' \
	"$TOP_SRCDIR/flows/apply.yaml" >"$TMP/flows/apply_dl.yaml"
FLOWS_DIR=$TMP/flows
export FLOWS_DIR

CLOCK=$TMP/faketime
echo "+0" >"$CLOCK"
SAGAD=$(sagad_wrapper sagad-faketime LD_PRELOAD="$FAKETIME_LIB" FAKETIME_TIMESTAMP_FILE="$CLOCK" \
	FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1)
export SAGAD

pay_input() { jq -cn --arg a "$1" '{applyId: $a, payMethod: "BANK", payAccount: "1234-5678"}'; }
now_ms() { date +%s%3N; }
_retry_wait() { [ "$(api GET "/v1/sagas/$1" | jq -r '.steps[0].state')" = retry_wait ]; }
_delivering() {   # APPLY_DL_ID: its delivery call reached the participant
	local sid
	sid=$(api GET '/v1/sagas?limit=1000' | jq -r --arg p "$1" \
		'[.sagas[] | select(.parent_id == $p and .flow == "ship")][0].id // empty')
	[ -n "$sid" ] && participant_log delivery | jq -e --arg k "$sid:ship:action" \
		'any(.[]; .idempotency_key == $k)' >/dev/null
}
# retry_gap SAGA: ms between the 503 and the retry of pay (participant's CLOCK_MONOTONIC)
retry_gap() {
	participant_log payment | jq --arg k "$1:pay:action" '[.[] | select(.idempotency_key == $k)]
		| ((map(select(.outcome == "applied"))[0].mono_ns // 0)
		   - (map(select(.outcome == "fault"))[0].mono_ns // 0)) / 1000000 | floor'
}
# compensating_after ID T0_MS LIMIT_S: polls until the saga is compensating (or further);
# prints the real ms since T0_MS, or "never".
compensating_after() {
	local end=$(( $(now_ms) + $3 * 1000 )) st
	while [ "$(now_ms)" -lt "$end" ]; do
		st=$(curl -s --max-time 1 "$SAGAD_URL/v1/sagas/$1" | jq -r '.status // empty')
		case $st in compensating | compensated | failed)
			echo $(( $(now_ms) - $2 )); return ;;
		esac
		sleep 0.05
	done
	echo never
}
deadline_events() {   # ID: how many deadline_exceeded rows its history has
	api GET "/v1/sagas/$1" | jq '[.history[] | select(.event == "deadline_exceeded")] | length'
}
between() { [ "$1" != never ] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

plan 17
start_participants || bail_out "participants did not start"
start_sagad || bail_out "sagad did not start with libfaketime"

# ---- +1 h -------------------------------------------------------------------------------------
fault payment '{"method":"POST","path":"/payments","status":503,"times":2}' >/dev/null
fault delivery '{"method":"POST","path":"/deliveries","status":0,"delay_ms":4000,"times":-1}' >/dev/null
x=$(jget "$(api POST '/v1/flows/payslow/sagas?wait=none' "$(pay_input clock-x)")" .id)
y=$(jget "$(api POST '/v1/flows/pay/sagas?wait=none' "$(pay_input clock-y)")" .id)
t0=$(now_ms)
d1=$(jget "$(api POST '/v1/flows/apply_dl/sagas?wait=none' "$(seed_input '.studentName = "clock-d1"')")" .id)
wait_until 60 _retry_wait "$x" && wait_until 60 _retry_wait "$y" && wait_until 60 _delivering "$d1"
ok $? "+1h: X and Y wait to retry, D1 waits for its delivery"
echo "+3600" >"$CLOCK"
sleep 0.2
body=$(api POST '/v1/flows/pay/sagas?wait=completion' "$(pay_input clock-probe)")
created=$(python3 -c 'import sys, datetime; print(int(datetime.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")).timestamp()))' "$(jget "$body" .created_at)")
ok "[ $((created - $(date +%s))) -ge 3500 ]" "+1h: sagad's wall clock jumped (a new saga's created_at is $((created - $(date +%s))) s ahead)"
dl=$(compensating_after "$d1" "$t0" 10)
ok "between '$dl' 2800 5000" "+1h: D1 compensates 3 s after its start, deadline measured on the monotonic clock (${dl} ms)"
wait_status "$y" completed 60 >/dev/null && wait_status "$x" completed 60 >/dev/null
ok $? "+1h: X and Y completed"
gy=$(retry_gap "$y")
gx=$(retry_gap "$x")
ok "between $gy 1800 3000" "+1h: Y retried after its 2 s backoff (${gy} ms)"
ok "between $gx 5600 7500" "+1h: X retried after its 6 s backoff, not when Y's timer fired (${gx} ms)"
wait_status "$d1" compensated 60 >/dev/null
ok $? "+1h: D1 compensated"
is "$(deadline_events "$d1")" 1 "+1h: D1's deadline fired once"

# ---- -1 h -------------------------------------------------------------------------------------
# Z waits 6 s (payslow): the clock must move back while Z still waits, and D2's start and its
# delivery can take seconds on a loaded machine (Z on pay's 2 s backoff could retry before).
fault payment '{"method":"POST","path":"/payments","status":503,"times":1}' >/dev/null
z=$(jget "$(api POST '/v1/flows/payslow/sagas?wait=none' "$(pay_input clock-z)")" .id)
t0=$(now_ms)
d2=$(jget "$(api POST '/v1/flows/apply_dl/sagas?wait=none' "$(seed_input '.studentName = "clock-d2"')")" .id)
wait_until 60 _retry_wait "$z" && wait_until 60 _delivering "$d2"
ok $? "-1h: Z waits to retry, D2 waits for its delivery"
echo "+0" >"$CLOCK"
dl=$(compensating_after "$d2" "$t0" 10)
ok "between '$dl' 2800 5000" "-1h: D2 compensates 3 s after its start, not an hour later (${dl} ms)"
wait_status "$z" completed 60 >/dev/null
ok $? "-1h: Z completed"
gz=$(retry_gap "$z")
ok "between $gz 5600 7500" "-1h: Z retried after its 6 s backoff, not an hour later (${gz} ms)"
wait_status "$d2" compensated 60 >/dev/null
ok $? "-1h: D2 compensated"
is "$(deadline_events "$d2")" 1 "-1h: D2's deadline fired once"

# ---- restart ----------------------------------------------------------------------------------
clear_faults delivery
stop_sagad
start_sagad
ok $? "sagad restarted (clock still moved)"
sleep 1
is "$(deadline_events "$d1") $(deadline_events "$d2")" "1 1" "after the restart no deadline fired again"
is "$(oplog_dup_applied "$(oplog_all)" | tr '\n' ' ')" "" "no participant applied an idempotency key twice"
done_testing
