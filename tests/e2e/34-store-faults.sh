#!/bin/bash
# 34-store-faults.sh -- a store that cannot be written (disk full, I/O errors, a lock held by
# another writer) pauses sagad instead of stopping it, and sagad resumes when the condition
# clears (engine.h: engine_paused()).
#
# Injection: tests/fault/faultvfs.so preloaded into sagad with FAULTVFS_CONTROL=$TMP/fault;
# writing "full", "ioerr" or "busy" there makes every SQLite write fail with SQLITE_FULL,
# SQLITE_IOERR_WRITE (and syncs with SQLITE_IOERR_FSYNC), or the WAL write lock SQLITE_BUSY;
# "syncerr" makes only the fsyncs fail (the commits succeed, the WAL sync thread cannot make
# them durable); removing the file clears the fault.
#
# For each fault, saga A is mid-flight (its delivery is applied and answered 5 s late) when the
# fault starts:
#   * the commit that fails is rolled back and sagad keeps running (no exit); the start whose
#     commit failed gets 503 and does not exist afterwards (full, ioerr); with syncerr the
#     start's commit succeeded but its sync did not: it gets 503 too (never acknowledged), and
#     as its rows stayed in the WAL it runs to its end after the resume (at least once);
#   * GET /readyz answers 503 with the reason; new starts get 503 at once, with a JSON error
#     and Retry-After;
#   * A's delivery answer arrives during the pause and is ignored (late_reply);
#   * once the fault is cleared, /readyz is 200 again, A is resent its delivery call with the
#     same Idempotency-Key (the participant replays it: applied once) and completes; a new
#     saga completes; PRAGMA integrity_check is ok.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init
command -v sqlite3 >/dev/null 2>&1 || skip_all "sqlite3 is not installed"
need_faultvfs

CONTROL=$TMP/fault
rm -f "$CONTROL"
start_participants || bail_out "participants did not start"
SAGAD=$(sagad_wrapper sagad-faults LD_PRELOAD="$FAULTVFS_SO" FAULTVFS_CONTROL="$CONTROL") \
	start_sagad || bail_out "sagad did not start with the fault shim"

_ready_is() { [ "$(_e2e_http_code "$SAGAD_URL/readyz")" = "$1" ]; }
_logged() { [ "$(sagad_log_count "$1")" -gt "$2" ]; }
_delivery_has() {   # KEY-PREFIX: the delivery participant has applied a key of this saga
	participant_log delivery | jq -e --arg p "$1" \
		'any(.[]; (.idempotency_key // "") | startswith($p))' >/dev/null
}
_child_ship() { [ -n "$(child_saga "$(api GET "/v1/sagas/$1")" ship)" ]; }
_status_is() { [ "$(jget "$(api GET "/v1/sagas/$1")" .status)" = "$2" ]; }
_status_is_input() {   # TEXT STATUS: the saga whose input holds TEXT has STATUS (in the store)
	[ "$(sqlite3 "$TMP/sagad.db" "SELECT status FROM sagas WHERE parent_id IS NULL AND input LIKE '%$1%'" 2>/dev/null)" = "$2" ]
}

# scenario FAULT CODE REASON: one pause and resume.
scenario() {
	local f=$1 code=$2 reason=$3 a b body pauses resumes late ship key
	pauses=$(sagad_log_count 'event=store_paused ')
	resumes=$(sagad_log_count 'event=store_resumed ')
	late=$(sagad_log_count 'event=late_reply ')
	fault delivery '{"method":"POST","path":"/deliveries","status":0,"delay_ms":5000,"times":1}' >/dev/null
	body=$(api POST '/v1/flows/apply/sagas?wait=none' "$(seed_input ".studentName = \"$f-a\"")")
	a=$(jget "$body" .id)
	is "$HTTP_STATUS" 202 "$f: saga A started"
	# A's delivery call has reached the participant (applied, answer held for 2 s)
	wait_until 60 _child_ship "$a"
	ship=$(child_saga "$(api GET "/v1/sagas/$a")" ship)
	wait_until 60 _delivery_has "$ship:"
	ok $? "$f: A's delivery was applied; its answer is late"

	echo "$f" >"$CONTROL"
	if [ "$f" = busy ]; then
		# The next write waits for the lock up to busy_timeout (5 s), then the engine pauses.
		wait_until 60 _logged 'event=store_paused ' "$pauses"
		ok $? "$f: the engine paused (event=store_paused)"
	else
		b=$(API_MAX_TIME=10 api POST '/v1/flows/apply/sagas?wait=none' \
			"$(seed_input ".studentName = \"$f-b\"")")
		is "$HTTP_STATUS:$(jget "$b" .error.code)" "503:ESTORE" \
			"$f: the start whose commit failed got 503 (not recorded)"
		ok '[ "$(sagad_log_count "event=store_paused ")" -gt '"$pauses"' ]' \
			"$f: the engine paused (event=store_paused)"
	fi
	ok sagad_alive "$f: sagad is still running"
	body=$(api GET /readyz)
	is "$HTTP_STATUS" 503 "$f: /readyz is 503 while paused"
	like "$(jget "$body" .reason)" "$reason" "$f: /readyz gives the reason"
	api POST '/v1/flows/apply/sagas?wait=none' "$(seed_input ".studentName = \"$f-c\"")" \
		-D "$TMP/$f.hdr" >"$TMP/$f.c"
	is "$HTTP_STATUS:$(jq -r .error.code "$TMP/$f.c")" "503:$code" "$f: a new start gets 503 $code at once"
	is "$(header_value "$TMP/$f.hdr" Retry-After)" 1 "$f: ... with Retry-After: 1"
	like "$(jq -r .error.message "$TMP/$f.c")" "retry later" "$f: ... and a message saying so"
	if [ "$f" != busy ]; then   # (busy: that answer's own write is what waited and failed)
		wait_until 60 _logged 'event=late_reply ' "$late"
		ok $? "$f: A's delivery answer, arriving during the pause, was ignored (late_reply)"
	fi

	rm -f "$CONTROL"
	wait_until 60 _ready_is 200
	ok $? "$f: /readyz is 200 again once the fault is gone"
	ok '[ "$(sagad_log_count "event=store_resumed ")" -gt '"$resumes"' ]' "$f: event=store_resumed"
	wait_until 60 _status_is "$a" completed
	ok $? "$f: saga A completed after the pause"
	key="$ship:ship:action"
	is "$(participant_log delivery | jq -r --arg k "$key" \
		'[.[] | select(.idempotency_key == $k) | .outcome] | join(",")')" "applied,replayed" \
		"$f: A's delivery: applied once, then re-sent with the same key and replayed"
	if [ "$f" = syncerr ]; then
		wait_until 60 _status_is_input "$f-b" completed
		ok $? "$f: the start that got 503 was committed (not durable, never acknowledged) and ran to its end after the resume"
	elif [ "$f" != busy ]; then
		is "$(sqlite3 "$TMP/sagad.db" "SELECT count(*) FROM sagas WHERE input LIKE '%$f-b%'")" 0 \
			"$f: the start that got 503 was not recorded"
	fi
	body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input ".studentName = \"$f-d\"")")
	is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "$f: a new saga completes"
}

scenario full EFULL 'disk full'
scenario ioerr EIO 'input/output error'
scenario busy EBUSY 'store busy'
scenario syncerr EIO 'input/output error'

is "$(oplog_dup_applied "$(oplog_all)" | tr '\n' ' ')" "" "no participant applied an idempotency key twice"
stop_sagad
is "$SAGAD_EXIT" 0 "sagad stopped cleanly (exit 0) after four pauses"
is "$(integrity "$TMP/sagad.db")" ok "PRAGMA integrity_check"
done_testing
