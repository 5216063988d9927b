# shellcheck shell=bash
# shellcheck disable=SC2034  # TMP, SAGAD_EXIT, PARTICIPANT_EXIT ... are for the test scripts
# tests/e2e/lib/common.sh -- helpers for the end-to-end tests (tests/e2e/NN-name.sh).
#
# A test script:
#     #!/bin/bash
#     . "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/e2e/lib/common.sh"
#     e2e_init
#     plan 3
#     start_participants
#     start_sagad
#     body=$(api POST '/v1/flows/apply/sagas?wait=completion' '{"studentName":"s",...}')
#     is "$HTTP_STATUS" 200 "apply answered 200"
#     is "$(jq -r .status <<<"$body")" completed "saga completed"
#     ...
#     done_testing
#
# It prints TAP on stdout (automake's tap-driver.sh reads it).  Environment (from `make check`):
# SAGAD, SAGACTL (binaries), TOP_SRCDIR.  Run one by hand with
#     TOP_SRCDIR=$PWD SAGAD=$PWD/sagad bash tests/e2e/NN-name.sh
# E2E_KEEP=1 keeps the temporary directory; E2E_TIMEOUT (default 600 s) bounds a whole script.
#
# Waits for an eventual state (a process is ready, a saga reached a status, a message arrived)
# use wide windows (E2E_READY_S, 60 s, for readiness): wait_until returns as soon as the
# condition holds, so a wide window costs nothing when the test passes, and CI runs these
# scripts two at a time under ASan (2-3x slower) on 2 cores.  A bound the product promises
# (a timer fires within X, nothing happens during N s) is asserted as such, with its reason.
#
# Notes
# * Start processes (start_participants, start_sagad, ...) directly, never inside $(...): a
#   process started in a subshell is not tracked and the variables it exports are lost.
# * `api` prints the body and sets HTTP_STATUS.  `body=$(api ...)` runs api in a subshell;
#   HTTP_STATUS is still right afterwards because the status also goes to a file that a DEBUG
#   trap (installed by e2e_init, with functrace) reads before every command.  API_BODY is set
#   only when api is not run in a subshell.
# * The library does not `set -e`; assertions never exit the script.
# * Never use a bare `wait`: it waits for the participants and sagad too.  Wait for the pids
#   you started (`wait "${pids[@]}"`).

# ---------------------------------------------------------------------------------------------
# Globals

: "${TOP_SRCDIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}"
export TOP_SRCDIR
PARTICIPANT_PY="$TOP_SRCDIR/examples/participants/participant.py"
PARTICIPANT_NAMES=(class payment delivery)

E2E_TMP=""
TMP=""                       # alias of E2E_TMP for test scripts ($TMP/sagad.log ...)
HTTP_STATUS=""
API_BODY=""
SAGAD_PID=""
SAGAD_URL=""
SAGAD_EXIT=""
PARTICIPANT_EXIT=""
declare -gA E2E_PPID=()       # participant name -> pid
declare -gA E2E_PPORT=()      # participant name -> port (kept across restarts)
E2E_PIDS=()                  # every process started by this library
E2E_WATCHDOG_PID=""
E2E_READY_S=${E2E_READY_S:-60}     # how long a started process may take to be ready

_TAP_N=0
_TAP_FAILED=0
_TAP_PLAN=""

# ---------------------------------------------------------------------------------------------
# Setup and cleanup

e2e_init() {
	local dep
	for dep in curl jq python3; do
		if ! command -v "$dep" >/dev/null 2>&1; then
			echo "1..0 # SKIP $dep is not installed"
			exit 0
		fi
	done
	E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sagad-e2e.XXXXXX") || {
		echo "Bail out! cannot create a temporary directory"; exit 1; }
	TMP=$E2E_TMP
	export E2E_TMP
	trap _e2e_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
	# Keep HTTP_STATUS right even after `body=$(api ...)` (see the notes at the top).
	set -o functrace
	trap '{ read -r HTTP_STATUS < "$E2E_TMP/.http_status"; } 2>/dev/null || :' DEBUG
	# Watchdog: a hung test must not hang `make check`.  Its output goes nowhere, so that no
	# stray process keeps the TAP pipe open.
	local limit=${E2E_TIMEOUT:-600} main=$$
	(
		trap '' DEBUG
		trap 'kill "$sp" 2>/dev/null; exit 0' TERM
		sleep "$limit" & sp=$!
		wait "$sp"
		echo "timeout after ${limit}s" >"$E2E_TMP/.watchdog"
		kill -TERM "$main"
	) >/dev/null 2>&1 &
	E2E_WATCHDOG_PID=$!
	disown "$E2E_WATCHDOG_PID"
}

_e2e_kill_all() {
	local pid n
	for pid in "${E2E_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for n in $(seq 1 50); do
		local alive=0
		for pid in "${E2E_PIDS[@]}"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	for pid in "${E2E_PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	E2E_PIDS=()
}

_e2e_cleanup() {
	local rc=$?
	trap - DEBUG
	set +o functrace
	if [ -n "$E2E_WATCHDOG_PID" ]; then
		kill -TERM "$E2E_WATCHDOG_PID" 2>/dev/null
	fi
	if [ -n "$E2E_TMP" ] && [ -s "$E2E_TMP/.watchdog" ]; then
		diag "e2e watchdog: $(cat "$E2E_TMP/.watchdog") (E2E_TIMEOUT)"
		_TAP_FAILED=$((_TAP_FAILED + 1))
	fi
	_e2e_kill_all
	if [ "$rc" != 0 ] || [ "$_TAP_FAILED" != 0 ]; then
		e2e_dump_logs
	fi
	if [ -n "$E2E_TMP" ] && [ -d "$E2E_TMP" ]; then
		if [ -n "${E2E_KEEP:-}" ]; then
			diag "kept $E2E_TMP"
		else
			rm -rf "$E2E_TMP"
		fi
	fi
	[ "$rc" = 0 ] && [ "$_TAP_FAILED" != 0 ] && rc=1
	exit "$rc"
}

# Prints the tails of sagad's and the participants' logs as TAP diagnostics.
e2e_dump_logs() {
	[ -n "$E2E_TMP" ] || return 0
	local f
	if [ -s "$E2E_TMP/sagad.log" ]; then
		diag "---- tail of sagad.log ----"
		tail -n "${E2E_LOG_LINES:-60}" "$E2E_TMP/sagad.log" | diag_stdin
	fi
	for f in "$E2E_TMP"/*.participant.log; do
		[ -s "$f" ] || continue
		diag "---- tail of $(basename "$f") ----"
		tail -n 15 "$f" | diag_stdin
	done
}

# Remembers a process so that cleanup kills it (for processes a test starts itself).
e2e_track_pid() {
	E2E_PIDS+=("$1")
}

_e2e_untrack_pid() {
	local p keep=()
	for p in "${E2E_PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	E2E_PIDS=("${keep[@]}")
}

# wait_until TIMEOUT_S CMD [ARGS...]: runs CMD every 0.1 s until it succeeds (0) or the time
# is up (1).
wait_until() {
	local timeout=$1; shift
	local end=$(( $(date +%s%N) + ${timeout%.*} * 1000000000 ))
	while :; do
		"$@" && return 0
		[ "$(date +%s%N)" -ge "$end" ] && return 1
		sleep 0.1
	done
}

# _e2e_wait_ready TIMEOUT_S CMD [ARGS...]: wait_until for the readiness checks below, whose CMD
# returns 2 when the process it waits for has exited: then it gives up at once (status 1).
_e2e_wait_ready() {
	local timeout=$1 rc; shift
	local end=$(( $(date +%s%N) + ${timeout%.*} * 1000000000 ))
	while :; do
		"$@"
		rc=$?
		[ "$rc" = 0 ] && return 0
		[ "$rc" = 2 ] && return 1
		[ "$(date +%s%N)" -ge "$end" ] && return 1
		sleep 0.1
	done
}

# Prints a free TCP port on 127.0.0.1 (racy by nature: use soon).
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

_e2e_http_code() {   # URL -> prints the status (000 when no answer)
	curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# Participants (examples/participants/participant.py)

_participant_var() {
	case "$1" in
	class) echo CLASS_URL ;;
	payment) echo PAYMENT_URL ;;
	delivery) echo DELIVERY_URL ;;
	*) return 1 ;;
	esac
}

# Prints a participant's base URL.
participant_url() {
	local var
	var=$(_participant_var "$1") || return 1
	echo "${!var}"
}

# start_participant NAME: starts (or restarts, on the same port and database) one participant
# and waits until /_control/health answers.  Exports CLASS_URL / PAYMENT_URL / DELIVERY_URL.
start_participant() {
	_e2e_launch_participant "$1" && _e2e_await_participant "$1"
}

_e2e_launch_participant() {
	local name=$1 port pid
	_participant_var "$name" >/dev/null || { diag "unknown participant $name"; return 1; }
	if [ -n "${E2E_PPID[$name]:-}" ] && kill -0 "${E2E_PPID[$name]}" 2>/dev/null; then
		diag "participant $name is already running (pid ${E2E_PPID[$name]})"
		return 1
	fi
	port=${E2E_PPORT[$name]:-0}
	rm -f "$E2E_TMP/$name.port"
	echo "=== start_participant $name port=$port $(date +%T.%N)" >>"$E2E_TMP/$name.participant.log"
	python3 "$PARTICIPANT_PY" "$name" --host 127.0.0.1 --port "$port" \
		--db "$E2E_TMP/$name.db" --port-file "$E2E_TMP/$name.port" \
		>>"$E2E_TMP/$name.participant.log" 2>&1 </dev/null &
	pid=$!
	E2E_PPID[$name]=$pid
	e2e_track_pid "$pid"
}

_e2e_await_participant() {
	local name=$1 var port
	var=$(_participant_var "$name") || return 1
	if ! wait_until "$E2E_READY_S" test -s "$E2E_TMP/$name.port"; then
		diag "participant $name did not start (see $name.participant.log)"
		tail -n 5 "$E2E_TMP/$name.participant.log" | diag_stdin
		return 1
	fi
	read -r port <"$E2E_TMP/$name.port"
	E2E_PPORT[$name]=$port
	printf -v "$var" 'http://127.0.0.1:%s' "$port"
	export "${var?}"
	if ! wait_until "$E2E_READY_S" _e2e_healthy "${!var}"; then
		diag "participant $name is not healthy at ${!var}"
		return 1
	fi
}

_e2e_healthy() {
	[ "$(_e2e_http_code "$1/_control/health")" = 200 ]
}

# start_participants: class, payment and delivery, each on a free port with its own database.
start_participants() {
	local n rc=0
	for n in "${PARTICIPANT_NAMES[@]}"; do
		_e2e_launch_participant "$n" || rc=1
	done
	for n in "${PARTICIPANT_NAMES[@]}"; do
		_e2e_await_participant "$n" || rc=1
	done
	return $rc
}

# stop_participant NAME [SIGNAL]: stops it (SIGTERM by default; KILL for a crash) and waits;
# sets PARTICIPANT_EXIT (0 after a clean SIGTERM shutdown, 137 after KILL).
stop_participant() {
	local name=$1 pid
	pid=${E2E_PPID[$name]:-}
	[ -n "$pid" ] || { diag "participant $name was not started"; return 1; }
	_e2e_stop "$pid" "participant $name" 30 "${2:-TERM}"
	PARTICIPANT_EXIT=$E2E_STOP_EXIT
	E2E_PPID[$name]=""
	return 0
}

kill9_participant() {
	stop_participant "$1" KILL
}

# participant_log NAME: prints the participant's operations log (a JSON array).
participant_log() {
	local url
	url=$(participant_url "$1") || return 1
	curl -s --max-time 10 "$url/_control/log"
}

# fault NAME JSON: installs a fault (see examples/participants/README.md); prints the answer.
fault() {
	local url
	url=$(participant_url "$1") || return 1
	curl -s --max-time 10 -X POST -H 'Content-Type: application/json' --data-binary "$2" \
		"$url/_control/faults"
}

# clear_faults NAME
clear_faults() {
	local url
	url=$(participant_url "$1") || return 1
	curl -s --max-time 10 -X DELETE "$url/_control/faults" >/dev/null
}

# pcall NAME METHOD PATH [JSON] [curl args...]: a request to a participant, like api.
pcall() {
	local url
	url=$(participant_url "$1") || return 1
	shift
	_e2e_request "$url" "$@"
}

# ---------------------------------------------------------------------------------------------
# sagad

# start_sagad [extra args]: starts sagad on a free port with the flows of $FLOWS_DIR (default
# $TOP_SRCDIR/flows) and $TMP/sagad.db; waits for the port file and GET /readyz == 200.
# Exports SAGAD_URL.  Environment such as SAGAD_CRASHPOINT can be given as
# `SAGAD_CRASHPOINT=after_dispatch start_sagad`.
start_sagad() {
	local dir=${FLOWS_DIR:-$TOP_SRCDIR/flows} port pid
	if [ -z "${SAGAD:-}" ] || [ ! -x "$SAGAD" ]; then
		diag "SAGAD (${SAGAD:-unset}) is not an executable"
		return 1
	fi
	if [ -n "$SAGAD_PID" ] && kill -0 "$SAGAD_PID" 2>/dev/null; then
		diag "sagad is already running (pid $SAGAD_PID)"
		return 1
	fi
	rm -f "$E2E_TMP/sagad.port"
	echo "=== start_sagad $* ${SAGAD_CRASHPOINT:+SAGAD_CRASHPOINT=$SAGAD_CRASHPOINT} $(date +%T.%N)" \
		>>"$E2E_TMP/sagad.log"
	"$SAGAD" --flows "$dir" --db "$E2E_TMP/sagad.db" --listen 127.0.0.1:0 \
		--port-file "$E2E_TMP/sagad.port" "$@" >>"$E2E_TMP/sagad.log" 2>&1 </dev/null &
	pid=$!
	SAGAD_PID=$pid
	SAGAD_EXIT=""
	e2e_track_pid "$pid"
	if ! _e2e_wait_ready "$E2E_READY_S" _e2e_sagad_port_ready "$pid"; then
		diag "sagad did not write its port file"
		tail -n 20 "$E2E_TMP/sagad.log" | diag_stdin
		return 1
	fi
	read -r port <"$E2E_TMP/sagad.port"
	SAGAD_URL="http://127.0.0.1:$port"
	export SAGAD_URL
	if ! _e2e_wait_ready "$E2E_READY_S" _e2e_sagad_ready "$pid"; then
		diag "sagad is not ready at $SAGAD_URL/readyz"
		tail -n 20 "$E2E_TMP/sagad.log" | diag_stdin
		return 1
	fi
}

_e2e_sagad_port_ready() {
	kill -0 "$1" 2>/dev/null || return 2
	[ -s "$E2E_TMP/sagad.port" ]
}

_e2e_sagad_ready() {
	kill -0 "$1" 2>/dev/null || return 2
	[ "$(_e2e_http_code "$SAGAD_URL/readyz")" = 200 ]
}

# sagad_alive: true while the sagad started last runs.
sagad_alive() {
	[ -n "$SAGAD_PID" ] && kill -0 "$SAGAD_PID" 2>/dev/null
}

# wait_sagad_exit [timeout_s]: waits for sagad to exit by itself (a crashpoint); sets SAGAD_EXIT
# (137 = SIGKILL).  Returns 1 if it is still running after the timeout.
wait_sagad_exit() {
	local timeout=${1:-30}
	[ -n "$SAGAD_PID" ] || return 0
	if ! wait_until "$timeout" _e2e_not_alive "$SAGAD_PID"; then
		diag "sagad (pid $SAGAD_PID) still running after ${timeout}s"
		return 1
	fi
	wait "$SAGAD_PID" 2>/dev/null
	SAGAD_EXIT=$?
	_e2e_untrack_pid "$SAGAD_PID"
	SAGAD_PID=""
}

_e2e_not_alive() {
	! kill -0 "$1" 2>/dev/null
}

# kill9_sagad: SIGKILL (a crash) and reap.
kill9_sagad() {
	[ -n "$SAGAD_PID" ] || return 0
	kill -KILL "$SAGAD_PID" 2>/dev/null
	wait "$SAGAD_PID" 2>/dev/null
	SAGAD_EXIT=$?
	_e2e_untrack_pid "$SAGAD_PID"
	SAGAD_PID=""
}

# _e2e_stop PID LABEL TIMEOUT_S [SIG]: sends SIG (default TERM), waits for the process to end
# (SIGKILL after the timeout, with a diagnostic and status 1), reaps it and stops tracking it.
# Sets E2E_STOP_EXIT to its exit status.
_e2e_stop() {
	local pid=$1 label=$2 timeout=$3 sig=${4:-TERM} rc=0
	kill "-$sig" "$pid" 2>/dev/null
	if ! wait_until "$timeout" _e2e_not_alive "$pid"; then
		diag "$label did not stop within ${timeout}s of SIG$sig; killing it"
		kill -KILL "$pid" 2>/dev/null
		rc=1
	fi
	wait "$pid" 2>/dev/null
	E2E_STOP_EXIT=$?
	_e2e_untrack_pid "$pid"
	return $rc
}

# stop_sagad [timeout_s]: SIGTERM and wait (SIGKILL after the timeout, default 15 s, with a
# diagnostic and status 1).  Sets SAGAD_EXIT.
stop_sagad() {
	local rc
	[ -n "$SAGAD_PID" ] || return 0
	_e2e_stop "$SAGAD_PID" sagad "${1:-15}"
	rc=$?
	SAGAD_EXIT=$E2E_STOP_EXIT
	SAGAD_PID=""
	return $rc
}

# ---------------------------------------------------------------------------------------------
# HTTP

# _e2e_request BASE METHOD PATH [JSON] [curl args...]
_e2e_request() {
	local base=$1 method=$2 path=$3 code
	shift 3
	local data=()
	if [ $# -gt 0 ]; then
		if [ -n "$1" ]; then
			data=(-H 'Content-Type: application/json' --data-binary "$1")
		fi
		shift
	fi
	code=$(curl -s -o "$E2E_TMP/.http_body" -w '%{http_code}' --max-time "${API_MAX_TIME:-60}" \
		-X "$method" "${data[@]}" "$@" "$base$path")
	[ -n "$code" ] || code=000
	echo "$code" >"$E2E_TMP/.http_status.new" && mv -f "$E2E_TMP/.http_status.new" "$E2E_TMP/.http_status"
	HTTP_STATUS=$code
	API_BODY=$(cat "$E2E_TMP/.http_body" 2>/dev/null)
	printf '%s\n' "$API_BODY"
	[ "$code" != 000 ]
}

# api METHOD PATH [JSON] [curl args...]: a request to sagad ($SAGAD_URL); prints the body, sets
# HTTP_STATUS (000 when no answer; then status 1) and API_BODY.  Extra curl args, e.g.
#     api POST /v1/flows/apply/sagas?wait=none "$input" -H 'Idempotency-Key: k1'
api() {
	_e2e_request "$SAGAD_URL" "$@"
}

# http_status: prints the status of the last api/pcall call (works after $(api ...) too).
http_status() {
	cat "$E2E_TMP/.http_status" 2>/dev/null || echo 000
}

# wait_status ID STATUS [timeout_s]: polls GET /v1/sagas/ID until .status == STATUS; prints
# the saga JSON.  Returns 1 on timeout, or at once when the saga reaches another final status
# (completed, compensated, failed), with a diagnostic.
wait_status() {
	local id=$1 want=$2 timeout=${3:-30} body st end
	end=$(( $(date +%s) + ${timeout%.*} ))
	while :; do
		body=$(_e2e_request "$SAGAD_URL" GET "/v1/sagas/$id")
		st=$(jq -r '.status // empty' <<<"$body" 2>/dev/null)
		if [ "$st" = "$want" ]; then
			printf '%s\n' "$body"
			return 0
		fi
		case "$st" in
		completed | compensated | failed)
			diag "saga $id is $st, waited for $want"
			printf '%s\n' "$body"
			return 1 ;;
		esac
		if [ "$(date +%s)" -ge "$end" ]; then
			diag "saga $id: status '${st}' (HTTP $HTTP_STATUS) after ${timeout}s, waited for $want"
			printf '%s\n' "$body"
			return 1
		fi
		sleep 0.1
	done
}

# is_error STATUS CODE MSG-REGEX DESC: the last answer is STATUS with {"error":{code,message}}
is_error() {
	local b=$API_BODY
	[ -n "$b" ] || b=$(cat "$TMP/.http_body")
	is "$HTTP_STATUS $(jq -r '.error | "\(.code) \(.message | type)"' <<<"$b" 2>/dev/null)" "$1 $2 string" "$4: $1 $2"
	like "$(jq -r .error.message <<<"$b" 2>/dev/null)" "$3" "$4: message"
}
post() {   # post PATH BODY [curl args]: POST with a JSON body, in this shell (sets API_BODY)
	local p=$1 b=$2
	shift 2
	api POST "$p" "$b" "$@" >/dev/null
}

# jget JSON FILTER: jq -r FILTER on JSON (prints nothing for null).
jget() {
	jq -r "$2 // empty" <<<"$1" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# TAP

plan() {
	_TAP_PLAN=$1
	echo "1..$1"
}

skip_all() {
	echo "1..0 # SKIP $*"
	exit 0
}

bail_out() {
	echo "Bail out! $*"
	exit 1
}

_tap_result() {   # PASSED(0|1) DESC
	_TAP_N=$((_TAP_N + 1))
	if [ "$1" = 1 ]; then
		echo "ok $_TAP_N - $2"
	else
		echo "not ok $_TAP_N - $2"
		_TAP_FAILED=$((_TAP_FAILED + 1))
	fi
}

# ok COND DESC: COND is either an integer, taken as an exit status (0 = pass: `cmd; ok $? d`),
# or a shell command line that is eval'ed (`ok '[ "$n" -gt 2 ]' "more than two"`).
ok() {
	local cond=$1 desc=${2:-} rc
	if [[ $cond =~ ^-?[0-9]+$ ]]; then
		rc=$cond
	else
		eval "$cond" >/dev/null 2>&1
		rc=$?
	fi
	if [ "$rc" = 0 ]; then
		_tap_result 1 "$desc"
		return 0
	fi
	_tap_result 0 "$desc"
	[[ $cond =~ ^-?[0-9]+$ ]] || diag "  condition: $cond"
	return 1
}

# is GOT EXPECTED DESC
is() {
	if [ "$1" = "$2" ]; then
		_tap_result 1 "${3:-}"
		return 0
	fi
	_tap_result 0 "${3:-}"
	diag "       got: '$1'"
	diag "  expected: '$2'"
	return 1
}

# isnt GOT UNEXPECTED DESC
isnt() {
	if [ "$1" != "$2" ]; then
		_tap_result 1 "${3:-}"
		return 0
	fi
	_tap_result 0 "${3:-}"
	diag "       got: '$1' (should differ)"
	return 1
}

# like GOT REGEX DESC (bash extended regex)
like() {
	if [[ $1 =~ $2 ]]; then
		_tap_result 1 "${3:-}"
		return 0
	fi
	_tap_result 0 "${3:-}"
	diag "       got: '$1'"
	diag "  expected to match: $2"
	return 1
}

# pass DESC / fail DESC
pass() { _tap_result 1 "$1"; }
fail() { _tap_result 0 "$1"; }

# skip N REASON: N skipped tests
skip() {
	local i
	for ((i = 0; i < $1; i++)); do
		_TAP_N=$((_TAP_N + 1))
		echo "ok $_TAP_N # SKIP ${2:-}"
	done
}

# diag MSG: a TAP diagnostic (each line prefixed with "# ", on stdout).
diag() {
	local line
	while IFS= read -r line || [ -n "$line" ]; do
		echo "# $line"
	done <<<"$*"
}

diag_stdin() {
	local line
	while IFS= read -r line || [ -n "$line" ]; do
		echo "# $line"
	done
}

# done_testing: prints the plan if none was given; exits 1 if a test failed or the count does
# not match the plan, else 0 (cleanup runs from the EXIT trap).
done_testing() {
	if [ -z "$_TAP_PLAN" ]; then
		echo "1..$_TAP_N"
	elif [ "$_TAP_PLAN" != "$_TAP_N" ]; then
		diag "planned $_TAP_PLAN tests but ran $_TAP_N"
		_TAP_FAILED=$((_TAP_FAILED + 1))
	fi
	[ "$_TAP_FAILED" = 0 ] && exit 0
	diag "$_TAP_FAILED of $_TAP_N tests failed"
	exit 1
}

# ---------------------------------------------------------------------------------------------
# Fault-injection helpers (24-crash.sh, 27-restart.sh)

E2E_BG_PIDS=()               # background requests started by api_bg

# api_bg OUT METHOD PATH [JSON] [curl args...]: a request to sagad in the background (never
# in $(...)); the body goes to OUT and the status to OUT.code (000 when no answer).  The pid
# is appended to E2E_BG_PIDS; wait_bg waits for them.
api_bg() {
	local out=$1 method=$2 path=$3 data=()
	shift 3
	if [ $# -gt 0 ]; then
		[ -n "$1" ] && data=(-H 'Content-Type: application/json' --data-binary "$1")
		shift
	fi
	(
		trap - DEBUG
		code=$(curl -s -o "$out" -w '%{http_code}' --max-time "${API_MAX_TIME:-60}" \
			-X "$method" "${data[@]}" "$@" "$SAGAD_URL$path" 2>/dev/null)
		echo "${code:-000}" >"$out.code"
	) </dev/null &
	E2E_BG_PIDS+=($!)
	e2e_track_pid "$!"
}

# wait_bg: waits for every request started by api_bg (only those pids).
wait_bg() {
	local p
	for p in "${E2E_BG_PIDS[@]}"; do
		wait "$p" 2>/dev/null
		_e2e_untrack_pid "$p"
	done
	E2E_BG_PIDS=()
}

# oplog_all: the operations logs of class, payment and delivery merged into one JSON array
# sorted by mono_ns (the real order across processes).
oplog_all() {
	{ participant_log class; participant_log payment; participant_log delivery; } |
		jq -s 'add | sort_by(.mono_ns)'
}

# oplog_dup_applied LOG_JSON: prints "service key count" for every idempotency key with more
# than one `applied` entry (nothing when every key was applied at most once).
oplog_dup_applied() {
	jq -r '[.[] | select(.applied == 1 and .idempotency_key != null)]
		| group_by(.service + " " + .idempotency_key)
		| map(select(length > 1) | "\(.[0].service) \(.[0].idempotency_key) \(length)") | .[]' <<<"$1"
}

# saga_list_all: every saga sagad knows (children included), newest first, as a JSON array of
# summaries (pages through GET /v1/sagas).
saga_list_all() {
	local cursor="" page all='[]' next
	while :; do
		page=$(_e2e_request "$SAGAD_URL" GET "/v1/sagas?limit=1000${cursor:+&cursor=$cursor}")
		all=$(jq -c --argjson a "$all" '$a + .sagas' <<<"$page" 2>/dev/null) || return 1
		next=$(jq -r '.next_cursor // empty' <<<"$page")
		[ -n "$next" ] || break
		cursor=$next
	done
	printf '%s\n' "$all"
}

# sagad_log_count REGEX: number of lines of sagad.log matching REGEX (grep -E).
sagad_log_count() {
	grep -cE "$1" "$E2E_TMP/sagad.log" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# Other example services (the seeds' participants)

declare -gA E2E_SVC_PID=()    # service name -> pid
declare -gA E2E_SVC_PORT=()   # service name -> port (kept across restarts)

# start_service NAME VAR SCRIPT SERVICE [args...]: starts (or restarts on the same port and
# database) an example HTTP participant `python3 SCRIPT SERVICE --port --db --port-file ...`,
# exports VAR=http://127.0.0.1:PORT and waits until it answers. Its log: $TMP/NAME.participant.log.
start_service() {
	local name=$1 var=$2 script=$3 svc=$4 port
	shift 4
	rm -f "$E2E_TMP/$name.port"
	python3 "$script" "$svc" --port "${E2E_SVC_PORT[$name]:-0}" --db "$E2E_TMP/$name.db" \
		--port-file "$E2E_TMP/$name.port" "$@" >>"$E2E_TMP/$name.participant.log" 2>&1 </dev/null &
	E2E_SVC_PID[$name]=$!
	e2e_track_pid "$!"
	wait_until "$E2E_READY_S" test -s "$E2E_TMP/$name.port" || return 1
	read -r port <"$E2E_TMP/$name.port"
	E2E_SVC_PORT[$name]=$port
	printf -v "$var" 'http://127.0.0.1:%s' "$port"
	export "${var?}"
	wait_until "$E2E_READY_S" _e2e_healthy "${!var}"
}

# stop_service NAME [timeout_s]: SIGTERM and wait (SIGKILL after the timeout, default 15 s).
stop_service() { _e2e_stop "${E2E_SVC_PID[$1]}" "$1" "${2:-15}"; }

# ---------------------------------------------------------------------------------------------
# Seed 000 helpers (added for the saga tests 20-26; only additions below this line)

# seed_input [JQ-FILTER]: the seed's httpie application (studentName="학생2" classId="2" ...) as
# the apply flow's input, compact JSON, optionally changed by a jq filter:
#     seed_input '.payAccount = "0000-1111"'
seed_input() {
	jq -cn '{studentName: "학생2", classId: "2", courseId: 2, addr: "SEOUL NAMGU",
		telephoneInfo: "010-1234-2345", payMethod: "BANK", payAccount: "1234-2334-4556-7890"}' |
		jq -c "${1:-.}"
}

# merged_log: the operations logs of class, payment and delivery as one JSON array sorted by
# mono_ns (the real order of events across the three processes).
merged_log() {
	{ participant_log class; participant_log payment; participant_log delivery; } |
		jq -s -c 'add | sort_by(.mono_ns)'
}

# child_saga JSON STEP: prints the child saga id of sub-flow step STEP in a saga object.
# (From the step's response, else from the history row that dispatched it.)
child_saga() {
	jq -r --arg s "$2" '([.steps[] | select(.name == $s) | .response.saga // empty] +
		[.history[] | select(.step == $s and .phase == "action" and .event == "dispatched")
			| .request]) | first // empty' <<<"$1" 2>/dev/null
}

# copy_flows DIR: copies the shipped flows/*.yaml into DIR (then edit them and start sagad with
# FLOWS_DIR=DIR).
copy_flows() {
	mkdir -p "$1" && cp "$TOP_SRCDIR"/flows/*.yaml "$1"/
}

# header_value FILE NAME: prints the value of header NAME from a `curl -D FILE` dump (last
# answer, case-insensitive name, CR removed).
header_value() {
	tr -d '\r' <"$1" | awk -v n="$(tr '[:upper:]' '[:lower:]' <<<"$2")" '
		/^HTTP\// { v = "" }
		{ i = index($0, ":"); if (i && tolower(substr($0, 1, i - 1)) == n) { v = substr($0, i + 1); sub(/^[ \t]+/, "", v) } }
		END { print v }'
}

# ---------------------------------------------------------------------------------------------
# Kafka: sagad-kafka-mock (tools/kafka-mock.c, librdkafka's mock cluster in its own process)
# and kcat.  Only additions below this line.
#
#     start_kafka --brokers 3 orders replies:3     # topics NAME[:PARTITIONS[:RF]]
#     kafka_produce orders k1 '{"a":1}' traceparent=00-...
#     msg=$(kafka_consume replies 1 10)            # waits up to 10 s for 1 message
#     kafka_ctl POST /brokers/2/down
#
# Exports KAFKA_BOOTSTRAP (host:port,...) and KAFKA_CONTROL (http://127.0.0.1:port, the mock's
# control API, see docs/kafka.md).  The mock's stdout and stderr go to $TMP/kafka.log.
# Topics a producer names are auto-created with 4 partitions (the mock's default).

KAFKA_PID=""
KAFKA_BOOTSTRAP=""
KAFKA_CONTROL=""
KAFKA_EXIT=""

# start_kafka [--brokers N] [--debug] [TOPIC[:PARTITIONS[:RF]]...]: starts sagad-kafka-mock
# (${SAGAD_KAFKA_MOCK:-$TOP_SRCDIR/sagad-kafka-mock}) in the background, waits for its
# bootstrap file and exports KAFKA_BOOTSTRAP and KAFKA_CONTROL.
start_kafka() {
	local bin=${SAGAD_KAFKA_MOCK:-$TOP_SRCDIR/sagad-kafka-mock} args=() pid
	while [ $# -gt 0 ]; do
		case $1 in
		--brokers) args+=(--brokers "$2"); shift 2 ;;
		--brokers=*) args+=(--brokers "${1#--brokers=}"); shift ;;
		--debug) args+=(--debug); shift ;;
		*) args+=(--topic "$1"); shift ;;
		esac
	done
	if [ ! -x "$bin" ]; then
		diag "sagad-kafka-mock ($bin) is not an executable (set SAGAD_KAFKA_MOCK or run make)"
		return 1
	fi
	if ! command -v kcat >/dev/null 2>&1; then
		diag "kcat is not installed (the Kafka helpers need it)"
		return 1
	fi
	if [ -n "$KAFKA_PID" ] && kill -0 "$KAFKA_PID" 2>/dev/null; then
		diag "sagad-kafka-mock is already running (pid $KAFKA_PID)"
		return 1
	fi
	rm -f "$E2E_TMP/kafka.bootstrap" "$E2E_TMP/kafka.control"
	echo "=== start_kafka ${args[*]} $(date +%T.%N)" >>"$E2E_TMP/kafka.log"
	"$bin" "${args[@]}" --bootstrap-file "$E2E_TMP/kafka.bootstrap" \
		--control-file "$E2E_TMP/kafka.control" >>"$E2E_TMP/kafka.log" 2>&1 </dev/null &
	pid=$!
	KAFKA_PID=$pid
	KAFKA_EXIT=""
	e2e_track_pid "$pid"
	if ! _e2e_wait_ready "$E2E_READY_S" _e2e_kafka_ready "$pid"; then
		diag "sagad-kafka-mock did not write its bootstrap file"
		tail -n 20 "$E2E_TMP/kafka.log" | diag_stdin
		return 1
	fi
	read -r KAFKA_BOOTSTRAP <"$E2E_TMP/kafka.bootstrap"
	read -r KAFKA_CONTROL <"$E2E_TMP/kafka.control"
	export KAFKA_BOOTSTRAP KAFKA_CONTROL
}

_e2e_kafka_ready() {
	kill -0 "$1" 2>/dev/null || return 2
	[ -s "$E2E_TMP/kafka.bootstrap" ] && [ -s "$E2E_TMP/kafka.control" ]
}

# stop_kafka [timeout_s]: SIGTERM and wait (SIGKILL after the timeout, default 10 s, status 1).
# Sets KAFKA_EXIT (0 after a clean shutdown).
stop_kafka() {
	local rc
	[ -n "$KAFKA_PID" ] || return 0
	_e2e_stop "$KAFKA_PID" sagad-kafka-mock "${1:-10}"
	rc=$?
	KAFKA_EXIT=$E2E_STOP_EXIT
	KAFKA_PID=""
	return $rc
}

# kafka_ctl METHOD PATH [JSON]: a request to the mock's control API, like api (prints the body,
# sets HTTP_STATUS):  kafka_ctl POST /errors '{"api":"Produce","errors":["NOT_LEADER_FOR_PARTITION"]}'
kafka_ctl() {
	_e2e_request "$KAFKA_CONTROL" "$@"
}

# kafka_create_topic NAME [PARTITIONS]: creates a topic (replication factor 1); status 0 when
# the mock answered 200 (409 if it exists).
kafka_create_topic() {
	local body
	body=$(jq -cn --arg n "$1" --argjson p "${2:-1}" '{name: $n, partitions: $p}')
	kafka_ctl POST /topics "$body" >/dev/null
	[ "$HTTP_STATUS" = 200 ]
}

# kafka_produce [-p PARTITION] [-X prop=val]... TOPIC KEY VALUE [header=value...]: produces one
# message (VALUE byte for byte, newlines included) with kcat and waits for its delivery
# report; status 0 when delivered, kcat's status otherwise (its error goes to stderr).
# message.timeout.ms defaults to 10000 (kcat's own default is 300 s).
kafka_produce() {
	local opts=(-X message.timeout.ms=10000) hdrs=() topic key value h f rc
	while [ $# -gt 0 ]; do
		case $1 in
		-p | -X) opts+=("$1" "$2"); shift 2 ;;
		*) break ;;
		esac
	done
	topic=$1 key=$2 value=$3
	shift 3
	for h in "$@"; do
		hdrs+=(-H "$h")
	done
	f=$(mktemp "$E2E_TMP/.kafka-value.XXXXXX") || return 1
	printf '%s' "$value" >"$f"
	# A file argument is sent as one message (stdin would be split at newlines).
	kcat -b "$KAFKA_BOOTSTRAP" -P -t "$topic" -k "$key" "${hdrs[@]}" "${opts[@]}" "$f"
	rc=$?
	rm -f "$f"
	return $rc
}

# kafka_consume [-X prop=val]... TOPIC [N] [timeout_s]: prints the topic's messages from the
# beginning, one JSON line each, as kcat -J writes them but with "headers" as an object
# ({"traceparent":"00-..."}, absent when there are none):
#     {"topic":"t","partition":0,"offset":0,"tstype":"create","ts":...,"broker":1,
#      "headers":{"h":"v"},"key":"k","payload":"v"}
# Without N: what is there now (kcat -e).  With N: waits until N messages were read or
# timeout_s (default 30) passed; status 1 if fewer than N arrived.
kafka_consume() {
	local opts=() topic n t out rc
	while [ $# -gt 0 ]; do
		case $1 in
		-X) opts+=("$1" "$2"); shift 2 ;;
		*) break ;;
		esac
	done
	topic=$1 n=${2:-} t=${3:-30}
	if [ -n "$n" ]; then
		opts+=(-c "$n")
	else
		opts+=(-e)
	fi
	out=$(timeout "$t" kcat -q -b "$KAFKA_BOOTSTRAP" -C -t "$topic" -o beginning -J "${opts[@]}")
	rc=$?
	[ -n "$out" ] && jq -c 'if .headers then .headers |= ([range(0; length; 2) as $i
		| {key: .[$i], value: .[$i + 1]}] | from_entries) else . end' <<<"$out"
	if [ -n "$n" ] && [ "$(grep -c . <<<"$out")" -lt "$n" ]; then
		return 1
	fi
	return $rc
}

# kafka_leader TOPIC PARTITION: prints the partition's leader broker id (from kcat -L).
kafka_leader() {
	timeout 30 kcat -b "$KAFKA_BOOTSTRAP" -L -J -t "$1" 2>/dev/null |
		jq -r --argjson p "$2" '.topics[0].partitions[] | select(.partition == $p) | .leader'
}

# kafka_partitions TOPIC: prints the topic's partition count (from kcat -L; asking for the
# metadata of an unknown topic auto-creates it with 4 partitions).
kafka_partitions() {
	timeout 30 kcat -b "$KAFKA_BOOTSTRAP" -L -J -t "$1" 2>/dev/null | jq -r '.topics[0].partitions | length'
}

# ---------------------------------------------------------------------------------------------
# Kafka participants (examples/participants/kafka_participant.py) and sagad on Kafka, for the
# tests 30-32.  Only additions below this line.
#
#     start_kafka delivery-commands:3 delivery-events:3 saga-events:3
#     start_kafka_participant delivery delivery           # NAME SERVICE [kafka_participant args]
#     start_kafka_participant delivery2 delivery          # a replica: same group, same --db
#     start_kafka_participant notification notification
#     start_sagad_kafka                                   # + --lifecycle-topic saga-events
#     kp_fault delivery '{"eventType":"DeliveryRequested","reply":"DeliveryFailed"}'
#     kp_log delivery | jq ...                            # the participant's op log
#
# NAME is an instance (its log is $TMP/NAME.participant.log, its control port is kept across
# restarts); SERVICE is delivery or notification.  Replicas of one SERVICE share its database
# ($TMP/SERVICE.kafka.db) and its group (the service name); --db / --group in the extra args
# override both.  Every participant gets the mock's client settings (docs/kafka.md).

KAFKA_PY=/usr/bin/python3    # Debian's python3 with confluent_kafka (not a pyenv shim)
KAFKA_PARTICIPANT_PY="$TOP_SRCDIR/examples/participants/kafka_participant.py"
KAFKA_TOOL_PY="$TOP_SRCDIR/tests/e2e/lib/kafka_tool.py"
SAGAD_KAFKA_ARGS=(-X fetch.wait.max.ms=10 -X session.timeout.ms=6000 -X heartbeat.interval.ms=500)
declare -gA E2E_KPID=()       # kafka participant name -> pid
declare -gA E2E_KPORT=()      # kafka participant name -> control port (kept across restarts)
declare -gA E2E_KSVC=()       # kafka participant name -> service
declare -gA E2E_KARGS=()      # kafka participant name -> extra args of its first start

# start_kafka_participant NAME SERVICE [args...]: starts (or restarts, on the same control port,
# database and group) a Kafka participant and waits until its /_control/health answers.  A
# restart without args reuses the args of the first start.
start_kafka_participant() {
	local name=$1 svc=$2 port pid
	shift 2
	if [ -n "${E2E_KPID[$name]:-}" ] && kill -0 "${E2E_KPID[$name]}" 2>/dev/null; then
		diag "kafka participant $name is already running (pid ${E2E_KPID[$name]})"
		return 1
	fi
	if [ -z "$KAFKA_BOOTSTRAP" ]; then
		diag "start_kafka first"
		return 1
	fi
	if [ $# -gt 0 ]; then
		E2E_KARGS[$name]=$(printf '%q ' "$@")
	fi
	local extra=()
	[ -n "${E2E_KARGS[$name]:-}" ] && eval "extra=(${E2E_KARGS[$name]})"
	E2E_KSVC[$name]=$svc
	port=${E2E_KPORT[$name]:-0}
	rm -f "$E2E_TMP/$name.kport"
	echo "=== start_kafka_participant $name $svc port=$port ${extra[*]} $(date +%T.%N)" \
		>>"$E2E_TMP/$name.kafka.participant.log"
	"$KAFKA_PY" "$KAFKA_PARTICIPANT_PY" "$svc" --bootstrap "$KAFKA_BOOTSTRAP" \
		--db "$E2E_TMP/$svc.kafka.db" --control-port "$port" \
		--control-port-file "$E2E_TMP/$name.kport" --config fetch.wait.max.ms=10 \
		"${extra[@]}" >>"$E2E_TMP/$name.kafka.participant.log" 2>&1 </dev/null &
	pid=$!
	E2E_KPID[$name]=$pid
	e2e_track_pid "$pid"
	if ! _e2e_wait_ready "$E2E_READY_S" _e2e_kport_ready "$name" "$pid"; then
		diag "kafka participant $name did not start (see $name.kafka.participant.log)"
		tail -n 5 "$E2E_TMP/$name.kafka.participant.log" | diag_stdin
		return 1
	fi
	read -r port <"$E2E_TMP/$name.kport"
	E2E_KPORT[$name]=$port
	if ! wait_until "$E2E_READY_S" _e2e_healthy "http://127.0.0.1:$port"; then
		diag "kafka participant $name is not healthy on port $port"
		return 1
	fi
}

_e2e_kport_ready() {
	kill -0 "$2" 2>/dev/null || return 2
	[ -s "$E2E_TMP/$1.kport" ]
}

# stop_kafka_participant NAME [SIGNAL]: SIGTERM (a clean stop: it finishes the current record
# and leaves the group) or KILL; waits and sets PARTICIPANT_EXIT.
stop_kafka_participant() {
	local name=$1 pid
	pid=${E2E_KPID[$name]:-}
	[ -n "$pid" ] || { diag "kafka participant $name was not started"; return 1; }
	_e2e_stop "$pid" "kafka participant $name" 30 "${2:-TERM}"
	PARTICIPANT_EXIT=$E2E_STOP_EXIT
	E2E_KPID[$name]=""
	return 0
}

# kp_url NAME: the participant's control URL.
kp_url() {
	[ -n "${E2E_KPORT[$1]:-}" ] || return 1
	echo "http://127.0.0.1:${E2E_KPORT[$1]}"
}

# kp_get NAME PATH: GET on the participant's control server (prints the body).
kp_get() {
	local url
	url=$(kp_url "$1") || return 1
	curl -s --max-time 10 "$url$2"
}

# kp_log NAME: the participant's op log (a JSON array; shared by the replicas of one --db).
kp_log() {
	kp_get "$1" /_control/log
}

# kp_health NAME: its health answer (assigned partitions, processed count, pid).
kp_health() {
	kp_get "$1" /_control/health
}

# kp_fault NAME JSON: installs a fault (an object or an array; see
# examples/participants/README.md, "Kafka participants"); prints the answer.
kp_fault() {
	local url
	url=$(kp_url "$1") || return 1
	curl -s --max-time 10 -X POST -H 'Content-Type: application/json' --data-binary "$2" \
		"$url/_control/faults"
}

# kp_clear_faults NAME
kp_clear_faults() {
	local url
	url=$(kp_url "$1") || return 1
	curl -s --max-time 10 -X DELETE "$url/_control/faults" >/dev/null
}

# kp_assigned NAME: prints its assigned partitions, one per line ("delivery-commands[0]").
kp_assigned() {
	kp_health "$1" | jq -r '.assigned[]?' 2>/dev/null
}

# kp_wait_assigned TIMEOUT NAME...: waits until every named participant has partitions.
kp_wait_assigned() {
	local timeout=$1
	shift
	wait_until "$timeout" _e2e_kp_all_assigned "$@"
}

_e2e_kp_all_assigned() {
	local n
	for n in "$@"; do
		[ -n "$(kp_assigned "$n")" ] || return 1
	done
}

# start_sagad_kafka [args...]: start_sagad with the Kafka flags for the mock
# (--kafka-brokers $KAFKA_BOOTSTRAP, fetch.wait.max.ms=10, session.timeout.ms=6000,
# heartbeat.interval.ms=500) and --lifecycle-topic saga-events.
start_sagad_kafka() {
	start_sagad --kafka-brokers "$KAFKA_BOOTSTRAP" "${SAGAD_KAFKA_ARGS[@]}" \
		--lifecycle-topic saga-events "$@"
}

# sagad_metric NAME: prints the value of sagad_NAME from GET /metrics (empty when absent).
sagad_metric() {
	curl -s --max-time 5 "$SAGAD_URL/metrics" 2>/dev/null |
		awk -v n="sagad_$1" '$1 == n { print $2; exit }'
}

# metric_is NAME VALUE: true when sagad_NAME == VALUE (for wait_until).
metric_is() {
	[ "$(sagad_metric "$1")" = "$2" ]
}

# ktool ARGS...: tests/e2e/lib/kafka_tool.py with --bootstrap $KAFKA_BOOTSTRAP after the command:
#     ktool wait-group-lag --group sagad --topic delivery-events
ktool() {
	local cmd=$1
	shift
	"$KAFKA_PY" "$KAFKA_TOOL_PY" "$cmd" --bootstrap "$KAFKA_BOOTSTRAP" "$@"
}

# kafka_topic_json TOPIC: every message of TOPIC now (from the beginning, to the end), one JSON
# object per line as kafka_consume prints them, plus "value": the payload parsed as JSON (null
# when it is not JSON).
kafka_topic_json() {
	kafka_consume "$1" | jq -c '. + {value: (try (.payload | fromjson) catch null)}'
}

# saga_ids_of_flow FLOW: the ids of every saga of FLOW in the store, one per line.
saga_ids_of_flow() {
	saga_list_all | jq -r --arg f "$1" '.[] | select(.flow == $f) | .id'
}

# sagad_wait_assigned [timeout_s]: waits until the sagad started last logged its consumer's
# partition assignment (component=kafka event=assigned): replies and triggers are read from then.
sagad_wait_assigned() {
	wait_until "${1:-20}" _e2e_sagad_assigned
}

_e2e_sagad_assigned() {
	awk '/^=== start_sagad/ { a = 0 } /component=kafka event=assigned/ { a = 1 } END { exit !a }' \
		"$E2E_TMP/sagad.log" 2>/dev/null
}

# lifecycle_events SAGA_ID: the saga's lifecycle events from the saga-events topic, in offset
# order, one compact JSON line each: the event's value plus "_key", "_partition", "_offset" and
# "_headers".
lifecycle_events() {
	kafka_consume saga-events | jq -c --arg id "$1" 'select(.key == $id)
		| (.payload | fromjson) + {_key: .key, _partition: .partition, _offset: .offset,
			_headers: (.headers // {})}' | jq -s -c 'sort_by(._partition, ._offset) | .[]'
}

# lifecycle_summary SAGA_ID: one word per event: saga:STATUS or step:STEP:STATE (space separated).
lifecycle_summary() {
	lifecycle_events "$1" | jq -r 'if .type == "saga" then "saga:\(.status)"
		else "step:\(.step):\(.state)" end' | tr '\n' ' ' | sed 's/ $//'
}

# ---------------------------------------------------------------------------------------------
# Fault injection into sagad's process (tests 33-39; docs/reliability.md).  Only additions below
# this line.
#
#     SAGAD=$(sagad_wrapper pl LD_PRELOAD="$FAULTVFS_SO" FAULTVFS_UNDO_DIR="$TMP/undo") start_sagad
#
# The wrapper execs the real sagad (same pid) with the variables set for it alone: curl, jq and
# the participants started by the test never see them.

: "${FAULTVFS_SO:=$TOP_SRCDIR/tests/fault/faultvfs.so}"
: "${FAULTVFS_REVERT:=$TOP_SRCDIR/tests/fault/faultvfs-revert}"
SAGAD_REAL=${SAGAD:-}

# sagad_wrapper NAME VAR=VALUE...: writes $TMP/NAME, an executable that runs the real sagad
# ($SAGAD_REAL) with those variables, and prints its path.  A preloaded library in an
# ASan build needs verify_asan_link_order=0 (added to ASAN_OPTIONS).
sagad_wrapper() {
	local name=$1 f=$E2E_TMP/$1 kv
	shift
	{
		echo '#!/bin/sh'
		printf 'ASAN_OPTIONS=%q; export ASAN_OPTIONS\n' \
			"${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
		printf 'exec env'
		for kv in "$@"; do printf ' %q' "$kv"; done
		printf ' %q "$@"\n' "$SAGAD_REAL"
	} >"$f"
	chmod +x "$f"
	echo "$f"
}

# sagad_sanitized: true when $SAGAD_REAL is an ASan build (./configure --enable-sanitizers),
# which runs 2-3x slower: tests that assert a latency bound scale it for such a build.
sagad_sanitized() {
	ldd "$SAGAD_REAL" 2>/dev/null | grep -q 'libasan'
}

# need_faultvfs: skips the whole script when the shim is not built (make check builds it).
need_faultvfs() {
	[ -f "$FAULTVFS_SO" ] && [ -x "$FAULTVFS_REVERT" ] ||
		bail_out "tests/fault/faultvfs.so or faultvfs-revert is missing: run make check (or make tests/fault/faultvfs.so tests/fault/faultvfs-revert)"
}

# integrity DB: prints PRAGMA integrity_check of DB (read with the sqlite3 CLI, no shim).
integrity() {
	sqlite3 "$1" 'PRAGMA integrity_check' 2>&1 | tr '\n' ' ' | sed 's/ $//'
}
