#!/bin/bash
# 24-crash.sh -- kill -9 of sagad mid-saga, then a restart on the same database.
#
# Part 1: SAGAD_CRASHPOINT (engine.h) kills sagad the n-th time it passes after_commit,
# before_dispatch, after_dispatch, before_reply_commit or after_reply_commit.  Sagas are
# started one after the other (wait=none), each run to its end before the next, so the n-th
# pass is a known step: a paid apply saga passes each point 3 times (apply, pay, ship), a
# saga whose delivery is refused ("comp": ship fails for good, pay and apply are compensated)
# 5 times, a declined payment ("dec", 0000...) 3 times.  after_reply_commit counts the commit
# after a reply (one per reply; the last one ends the saga).  One more scenario crashes a
# batch of concurrent sagas.
# Part 2: kill -9 at a random moment under load (30 concurrent starts), twice: paid sagas and
# compensating ones.  Soaks (scripts/soak.sh): CRASH_LOAD_ROUNDS=N repeats part 2 N times (each
# with its own random moment), CRASH_LOAD_ONLY=1 skips part 1.
#
# After every restart:
#   G1  every saga acknowledged (202) exists and reaches its final state; so does every saga
#       in the store (a start can be committed and the crash come before its 202);
#   G2  every step was applied exactly once, under its stable key <saga>:<step>:action or
#       :compensation, and one business entity per saga exists (nothing was re-sent under
#       another key);
#   G3  compensations ran after the failure, in reverse order (merged logs sorted by mono_ns);
#   G4  a re-sent call was replayed by its participant, never applied twice, and every replay
#       matches a `redispatched` row in that saga's history;
#   the history shows `redispatched` at the crash's step; PRAGMA integrity_check is ok.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init
command -v sqlite3 >/dev/null 2>&1 || skip_all "sqlite3 is not installed"

FINAL_WAIT=${FINAL_WAIT:-60}     # seconds a recovered saga may take to reach its final state
PAID=1234-2334-4556-7890
DECLINED=0000-1111-2222-3333
SEEN_REPLAYS=0                   # replayed entries already counted (logs accumulate)
REPLAY_REPORT=""

input_json() {   # NAME ACCOUNT
	jq -cn --arg n "$1" --arg a "$2" '{studentName: $n, classId: "2", courseId: 2,
		addr: "SEOUL NAMGU", telephoneInfo: "010-1234-2345", payMethod: "BANK", payAccount: $a}'
}

set_delivery_refuses() {   # on|off: POST /deliveries answers 400 (ship fails for good)
	clear_faults delivery
	[ "$1" = on ] &&
		fault delivery '{"method":"POST","path":"/deliveries","status":400,"times":-1}' >/dev/null
}

_saga_status() {   # ID -> prints the status (empty when no answer)
	curl -s --max-time 2 "$SAGAD_URL/v1/sagas/$1" 2>/dev/null | jq -r '.status // empty' 2>/dev/null
}

_saga_done_or_sagad_dead() {   # ID
	sagad_alive || return 0
	case "$(_saga_status "$1")" in completed | compensated | failed) return 0 ;; esac
	return 1
}

sagas_all_final() {   # every saga in the store is completed or compensated
	local l
	l=$(saga_list_all) || return 1
	[ "$(jq '[.[] | select(.status != "completed" and .status != "compensated")] | length' \
		<<<"$l")" = 0 ]
}

_acked_final() {   # TAG: every acknowledged saga of TAG has its final status
	local l
	l=$(saga_list_all) || return 1
	jq -e --slurpfile e "$TMP/$1.expect.json" '(map({key: .id, value: .status}) | from_entries) as $st
		| all($e[0][]; $st[.id] == .want)' <<<"$l" >/dev/null
}

# saga_details IDS...: the saga objects (with history) as one JSON array, one curl for all.
saga_details() {
	local urls=() id
	for id in "$@"; do urls+=("$SAGAD_URL/v1/sagas/$id"); done
	[ ${#urls[@]} -gt 0 ] || { echo '[]'; return; }
	curl -s --max-time 30 "${urls[@]}" | jq -s .
}

# The per-saga checks of G2 and G3, over the merged operations log ($log), the saga list
# ($all) and the expectations ($e: id, kind, name).  Prints "CATEGORY detail" lines.
# shellcheck disable=SC2016
CHECK_JQ='
. as $log
| def first_mono($k): [$log[] | select(.idempotency_key == $k and .outcome != "read")][0].mono_ns;
  def before($a; $b): first_mono($a) as $x | first_mono($b) as $y
	| $x != null and $y != null and $x < $y;
  def applied($s; $k): [$log[] | select(.service == $s and .idempotency_key == $k and .applied == 1)] | length;
  def created($s; f): [$log[] | select(.service == $s and .method == "POST" and .changed == 1 and f)] | length;
  def child($p; $f): [$all[] | select(.parent_id == $p and .flow == $f)][0].id // "none";
$e[0][]
| .id as $id | .kind as $kind | .name as $name
| child($id; "pay") as $pid | child($id; "ship") as $sid
| ([$log[] | select(.service == "class" and .idempotency_key == ($id + ":apply:action")
	and .applied == 1)][0].response_body.id // "none" | tostring) as $aid
| [created("class"; .request_body.studentName == $name),
   created("payment"; .request_body.applyId == $aid),
   created("delivery"; .request_body.applyId == $aid)] as $n
| ({ok: [1,1,1], dec: [1,0,0], comp: [1,1,0]}[$kind]) as $want_n
| ({ok: [["class", $id + ":apply:action"], ["payment", $pid + ":pay:action"],
	 ["delivery", $sid + ":ship:action"]],
   dec: [["class", $id + ":apply:action"], ["payment", $pid + ":pay:action"],
	 ["class", $id + ":apply:compensation"]],
   comp: [["class", $id + ":apply:action"], ["payment", $pid + ":pay:action"],
	  ["payment", $pid + ":pay:compensation"], ["class", $id + ":apply:compensation"]]}[$kind]) as $keys
| (if $n != $want_n then "ent \($id):\($n | map(tostring) | join("/"))" else empty end),
  ($keys[] | select(applied(.[0]; .[1]) != 1) | "key \(.[1])=\(applied(.[0]; .[1]))"),
  (if $kind == "ok" then
	(if first_mono($id + ":apply:compensation") != null or first_mono($pid + ":pay:compensation") != null
	 then "order \($id):completed-but-compensated" else empty end)
   elif $kind == "dec" then
	(if before($pid + ":pay:action"; $id + ":apply:compensation") then empty else "order \($id)" end)
   else
	(if before($sid + ":ship:action"; $pid + ":pay:compensation")
	    and before($pid + ":pay:compensation"; $id + ":apply:compensation")
	 then empty else "order \($id)" end)
   end)
'

# check_invariants TAG: $TMP/TAG.expect has one "ID KIND NAME" line per acknowledged saga
# (KIND ok, comp or dec).  Sets RD (the redispatched rows of this scenario's sagas:
# "flow/step/phase saga:step:phase") and NEW_REPLAYS.
check_invariants() {
	local tag=$1 all log res n_ack wrong unmatched="" r integ details
	jq -R 'split(" ") | {id: .[0], kind: .[1], name: .[2],
		want: (if .[1] == "ok" then "completed" else "compensated" end)}' "$TMP/$tag.expect" |
		jq -s . >"$TMP/$tag.expect.json"
	n_ack=$(jq length "$TMP/$tag.expect.json")

	wait_until "$FINAL_WAIT" _acked_final "$tag"
	all=$(saga_list_all)
	wrong=$(jq -r --slurpfile e "$TMP/$tag.expect.json" '(map({key: .id, value: .status}) | from_entries) as $st
		| $e[0][] | select($st[.id] != .want) | "\(.id):\($st[.id] // "missing")(want:\(.want))"' <<<"$all" | tr '\n' ' ')
	is "$wrong" "" "$tag: all $n_ack acknowledged sagas exist and reached their final status"
	wait_until "$FINAL_WAIT" sagas_all_final
	ok $? "$tag: every saga in the store (unacknowledged starts and children too) is final"

	all=$(saga_list_all)
	log=$(oplog_all)
	is "$(oplog_dup_applied "$log" | tr '\n' ' ')" "" "$tag: no participant applied an idempotency key twice"
	res=$(jq -r --argjson all "$all" --slurpfile e "$TMP/$tag.expect.json" "$CHECK_JQ" <<<"$log" 2>&1 ||
		echo "jq-failed")
	ok '! grep -q "jq-failed\|^jq: " <<<"$res" && jq -e "length > 0" <<<"$log"' \
		"$tag: the operations logs were read and the per-saga checks ran" || diag "$res"
	is "$(grep '^ent ' <<<"$res" | cut -d' ' -f2- | tr '\n' ' ')" "" \
		"$tag: one class / payment / delivery per saga (nothing applied twice under another key)"
	is "$(grep '^key ' <<<"$res" | cut -d' ' -f2- | tr '\n' ' ')" "" \
		"$tag: every step and compensation applied exactly once under its stable key"
	is "$(grep '^order ' <<<"$res" | cut -d' ' -f2- | tr '\n' ' ')" "" \
		"$tag: compensations after the failure, in reverse order (payment, then class)"

	# G4: each replay answers a call sagad re-sent after the restart (history: redispatched).
	# shellcheck disable=SC2046
	details=$(saga_details $(jq -r --arg since "$SCEN_START_ID" '.[] | select(.id >= $since) | .id' <<<"$all"))
	RD=$(jq -r '.[] | . as $s | .history[] | select(.event == "redispatched")
		| "\($s.flow)/\(.step)/\(.phase) \($s.id):\(.step):\(.phase)"' <<<"$details" | sort)
	for r in $(jq -r --argjson skip "$SEEN_REPLAYS" '[.[] | select(.outcome == "replayed")]
			| sort_by(.mono_ns) | .[$skip:][] | .idempotency_key' <<<"$log"); do
		grep -q " $r\$" <<<"$RD" || unmatched="$unmatched $r"
	done
	is "$unmatched" "" "$tag: every replayed call matches a redispatched row in its saga's history"
	NEW_REPLAYS=$(( $(jq '[.[] | select(.outcome == "replayed")] | length' <<<"$log") - SEEN_REPLAYS ))
	SEEN_REPLAYS=$((SEEN_REPLAYS + NEW_REPLAYS))
	REPLAY_REPORT="$REPLAY_REPORT $tag=$NEW_REPLAYS"

	integ=$(sqlite3 "$TMP/sagad.db" 'PRAGMA integrity_check' 2>&1)
	is "$integ" ok "$tag: PRAGMA integrity_check"
}

# _crashed TAG CP: sagad died by SIGKILL at crash point CP (one more event=crashpoint line).
_crashed() {
	local tag=$1 point=${2%%:*}
	wait_sagad_exit 60
	is "$SAGAD_EXIT" 137 "$tag: sagad died by SIGKILL"
	is "$(($(sagad_log_count "event=crashpoint point=$point ") - CRASH_LINES))" 1 \
		"$tag: ... at $point (event=crashpoint in the log)"
}

_begin() {   # TAG CP: start sagad with the crash point
	SCEN_T0=$(date +%s%N)
	: >"$TMP/$1.expect"
	CRASH_LINES=$(sagad_log_count "event=crashpoint point=${2%%:*} ")
	LOG_LINES=$({ wc -l <"$TMP/sagad.log"; } 2>/dev/null || echo 0)
	SAGAD_CRASHPOINT=$2 start_sagad
	ok $? "$1: sagad started with SAGAD_CRASHPOINT=$2"
	# ULIDs sort by time: sagas of this scenario have ids >= this one's prefix
	SCEN_START_ID=$(ulid_floor)
}

# ulid_floor: the smallest ULID of the current millisecond (10 chars of time, then zeros).
ulid_floor() {
	python3 -c 'import time
t = int(time.time() * 1000)
a = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
s = ""
for _ in range(10):
    s = a[t % 32] + s
    t //= 32
print(s + "0" * 16)'
}

_end() {   # TAG EXPECTED_RD EXPECTED_REPLAYS: the restart and every check
	local tag=$1 want_rd=$2 want_replays=$3 got m
	start_sagad
	ok $? "$tag: sagad restarted on the same database, without the crash point"
	check_invariants "$tag"
	got=$(cut -d' ' -f1 <<<"$RD" | tr '\n' ' ' | sed 's/ $//')
	# the history agrees with the log lines event=recovered ... redispatched=M of the restarts
	m=$(tail -n +"$((LOG_LINES + 1))" "$TMP/sagad.log" | grep 'event=recovered ' |
		sed -n 's/.* redispatched=\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
	is "$(grep -c . <<<"$RD")" "$m" "$tag: one redispatched history row per call re-sent at recovery ($m)"
	if [ "$want_rd" != any ]; then
		is "$got" "$want_rd" "$tag: redispatched exactly where the outcome was unknown"
	fi
	if [ "$want_replays" = any ]; then
		pass "$tag: $NEW_REPLAYS replays"
	else
		is "$NEW_REPLAYS" "$want_replays" "$tag: replays of the re-sent call (0: it had never left; 1: it had been applied)"
	fi
	diag "$tag: acked $(wc -l <"$TMP/$tag.expect"), redispatched [$(cut -d' ' -f1 <<<"$RD" | uniq -c | awk 'NF > 1 {printf "%s%s x%s", (n++ ? ", " : ""), $2, $1}')], replays $NEW_REPLAYS, $(( ($(date +%s%N) - SCEN_T0) / 1000000 )) ms"
	stop_sagad
	clear_faults class
	clear_faults payment
	set_delivery_refuses off
}

# seq_scenario TAG CP EXPECTED_RD EXPECTED_REPLAYS KIND...: starts one saga of each KIND (ok,
# comp, dec) in turn, each run to its end, until sagad dies at CP.
seq_scenario() {
	local tag=$1 cp=$2 want_rd=$3 want_replays=$4 kind i=0 acct body id
	shift 4
	_begin "$tag" "$cp"
	for kind in "$@"; do
		i=$((i + 1))
		acct=$PAID
		[ "$kind" = dec ] && acct=$DECLINED
		if [ "$kind" = comp ]; then set_delivery_refuses on; else set_delivery_refuses off; fi
		body=$(API_MAX_TIME=10 api POST '/v1/flows/apply/sagas?wait=none' "$(input_json "$tag-$i" "$acct")")
		[ "$HTTP_STATUS" = 202 ] || break   # the crash came before the answer
		id=$(jget "$body" .id)
		echo "$id $kind $tag-$i" >>"$TMP/$tag.expect"
		wait_until 60 _saga_done_or_sagad_dead "$id"
		sagad_alive || break
	done
	_crashed "$tag" "$cp"
	_end "$tag" "$want_rd" "$want_replays"
}

_acks_at_least() {   # TAG K: at least K starts of TAG were answered 202
	local f c k=0
	for f in "$TMP/$1".*.code; do
		[ -e "$f" ] || continue
		read -r c <"$f" 2>/dev/null
		[ "$c" = 202 ] && k=$((k + 1))
	done
	[ "$k" -ge "$2" ]
}

# load_scenario TAG MODE N: N starts at once, kill -9 at a random moment, restart.
load_scenario() {
	local tag=$1 mode=$2 n=$3 i acct inputs=() code id delay killer acked=0
	SCEN_T0=$(date +%s%N)
	: >"$TMP/$tag.expect"
	[ "$mode" = comp ] && set_delivery_refuses on
	for i in $(seq 1 "$n"); do
		acct=$PAID
		[ "$mode" = ok ] && [ $((i % 5)) = 0 ] && acct=$DECLINED
		inputs[i]=$(input_json "$tag-$i" "$acct")
	done
	# every call takes 50 ms (applied at once, answered late): many calls are in flight
	fault class '{"method":"*","path":"*","status":0,"delay_ms":50,"times":-1}' >/dev/null
	fault payment '{"method":"*","path":"*","status":0,"delay_ms":50,"times":-1}' >/dev/null
	fault delivery '{"method":"*","path":"*","status":0,"delay_ms":50,"times":-1}' >/dev/null
	LOG_LINES=$({ wc -l <"$TMP/sagad.log"; } 2>/dev/null || echo 0)
	start_sagad
	ok $? "$tag: sagad started"
	SCEN_START_ID=$(ulid_floor)
	# The kill comes from a timer while the starts still stream in (one every ~10 ms): a random
	# moment once a quarter of them were acknowledged (so that there is something to check).
	delay=$((RANDOM % 250))
	( trap - DEBUG; wait_until 60 _acks_at_least "$tag" $((n / 4))
	  sleep "$(printf '0.%03d' "$delay")"; kill -KILL "$SAGAD_PID" ) >/dev/null 2>&1 &
	killer=$!
	for i in $(seq 1 "$n"); do
		api_bg "$TMP/$tag.$i" POST '/v1/flows/apply/sagas?wait=none' "${inputs[i]}"
		sleep 0.01
	done
	wait "$killer"
	wait_sagad_exit 60
	is "$SAGAD_EXIT" 137 "$tag: kill -9 under load (${delay} ms after a quarter was acknowledged)"
	wait_bg
	for i in $(seq 1 "$n"); do
		read -r code <"$TMP/$tag.$i.code" 2>/dev/null
		[ "$code" = 202 ] || continue
		acked=$((acked + 1))
		id=$(jq -r .id "$TMP/$tag.$i")
		if [ "$mode" = comp ]; then
			echo "$id comp $tag-$i"
		elif [ $((i % 5)) = 0 ]; then
			echo "$id dec $tag-$i"
		else
			echo "$id ok $tag-$i"
		fi >>"$TMP/$tag.expect"
	done
	diag "$tag: $acked of $n starts acknowledged before the kill"
	_end "$tag" any any
}

start_participants || bail_out "participants did not start"

# ---- part 1: crash points -----------------------------------------------------------------
if [ "${CRASH_LOAD_ONLY:-0}" != 1 ]; then   # (not indented: the whole of part 1)
# Passes per saga kind (see the header): ok 3, comp 5, dec 3; after_reply_commit: the same.
seq_scenario ac1 after_commit:1 "apply/apply/action" 0 ok ok                 # before the 1st 202
seq_scenario ac3 after_commit:3 "ship/ship/action" 0 ok ok                   # sub-flow ship
seq_scenario ac7 after_commit:7 "pay/pay/compensation" 0 ok comp            # compensation in pay
seq_scenario bd2 before_dispatch:2 "pay/pay/action" 0 ok ok                  # sub-flow pay
seq_scenario bd8 before_dispatch:8 "apply/apply/compensation" 0 ok comp     # apply's compensation
seq_scenario ad3 after_dispatch:3 "ship/ship/action" 1 ok ok
seq_scenario ad7 after_dispatch:7 "pay/pay/compensation" 1 ok comp
seq_scenario brc2 before_reply_commit:2 "pay/pay/action" 1 ok ok
seq_scenario brc6 before_reply_commit:6 "apply/apply/compensation" 1 ok dec ok   # declined payment
seq_scenario arc2 after_reply_commit:2 "ship/ship/action" 0 ok ok
seq_scenario arc6 after_reply_commit:6 "pay/pay/compensation" 0 ok comp     # after ship's failure
seq_scenario arc7 after_reply_commit:7 "apply/apply/compensation" 0 ok comp
seq_scenario arc3 after_reply_commit:3 "" 0 ok ok                            # the final commit

# A batch of concurrent sagas: the 5th reply of 8 sagas in flight together (grouped commits).
_begin brcb before_reply_commit:5
for i in 1 2 3 4 5 6 7 8; do
	acct=$PAID
	[ "$i" = 8 ] && acct=$DECLINED
	inp[i]=$(input_json "brcb-$i" "$acct")
done
for i in 1 2 3 4 5 6 7 8; do
	api_bg "$TMP/brcb.$i" POST '/v1/flows/apply/sagas?wait=none' "${inp[i]}"
done
wait_bg
for i in 1 2 3 4 5 6 7 8; do
	[ "$(cat "$TMP/brcb.$i.code")" = 202 ] || continue
	k=ok
	[ "$i" = 8 ] && k=dec
	echo "$(jq -r .id "$TMP/brcb.$i") $k brcb-$i" >>"$TMP/brcb.expect"
done
_crashed brcb before_reply_commit:5
_end brcb any any

# Twice: pay's reply is lost (after_dispatch:2); the restart re-sends it and dies again on its
# reply (the participant answers 3 s late, after /readyz, on a loaded machine too); the second
# restart re-sends it once more.  One key, applied once, replayed twice.
_begin tw after_dispatch:2
API_MAX_TIME=10 api POST '/v1/flows/apply/sagas?wait=none' "$(input_json tw-1 "$PAID")" >"$TMP/tw.1"
[ "$HTTP_STATUS" = 202 ] && echo "$(jq -r .id "$TMP/tw.1") ok tw-1" >>"$TMP/tw.expect"
_crashed tw after_dispatch:2
fault payment '{"method":"POST","path":"/payments","status":0,"delay_ms":3000,"times":1}' >/dev/null
CRASH_LINES=$(sagad_log_count "event=crashpoint point=after_dispatch ")
SAGAD_CRASHPOINT=after_dispatch:1 start_sagad
ok $? "tw: restarted with SAGAD_CRASHPOINT=after_dispatch:1"
_crashed tw after_dispatch:1
_end tw "pay/pay/action pay/pay/action" 2

fi   # part 1

# ---- part 2: kill -9 at a random moment under load ----------------------------------------
for r in $(seq 1 "${CRASH_LOAD_ROUNDS:-1}"); do
	sfx=""; [ "$r" = 1 ] || sfx=$r
	load_scenario "load$sfx" ok 30
	load_scenario "loadc$sfx" comp 30
done

diag "replays per scenario:$REPLAY_REPORT"
done_testing
