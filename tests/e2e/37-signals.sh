#!/bin/bash
# 37-signals.sh -- SIGTERM under load and SIGHUP with a broken flow file.
#
# SIGTERM: 4 clients keep starting sagas over kept-alive connections (participants answer
# 300 ms late, so calls are in flight); SIGTERM arrives mid-stream.  sagad stops accepting:
# new connections are refused and a start on an open connection gets 503 ESHUTDOWN with
# Retry-After; calls in flight finish within --shutdown-grace (their next steps are parked:
# event=dispatch_parked); it flushes and exits 0 within the grace plus 2 s.  After a restart
# every acknowledged saga completes and no participant applied a key twice.
#
# SIGHUP: a syntax error in a new file, then a broken edit of a loaded flow: the reload fails
# with the file:line:col error in the log (event=reload_failed), the loaded flows stay and
# keep running sagas; a fixed folder then reloads (event=reloaded) and the new flow starts.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init
GRACE_S=3

mkdir -p "$TMP/flows"
cp "$TOP_SRCDIR"/flows/*.yaml "$TMP/flows/"
FLOWS_DIR=$TMP/flows
export FLOWS_DIR
PORT=$(free_port)

plan 20
start_participants || bail_out "participants did not start"
for p in class payment delivery; do
	fault "$p" '{"method":"*","path":"*","status":0,"delay_ms":300,"times":-1}' >/dev/null
done
start_sagad --listen "127.0.0.1:$PORT" --shutdown-grace "${GRACE_S}s" || bail_out "sagad did not start"

# ---- SIGTERM under load ---------------------------------------------------------------------------
# Each client: one kept-alive connection; a start every 30 ms until $TMP/stop exists, then
# one more start on the same connection, then a new connection. One JSON line per request.
python3 - "$PORT" "$TMP/stop" >"$TMP/load.jsonl" 2>"$TMP/load.err" <<'PY' &
import http.client, json, os, sys, threading, time
port, stop = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
body = json.dumps({"studentName": "term", "classId": "2", "courseId": 2, "addr": "SEOUL",
                   "telephoneInfo": "010", "payMethod": "BANK", "payAccount": "1234-1"})
def out(**kv):
    with lock:
        print(json.dumps(kv), flush=True)
def start(c, phase):
    try:
        c.request("POST", "/v1/flows/apply/sagas?wait=none", body=body,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        b = json.loads(r.read() or b"{}")
        out(phase=phase, status=r.status, id=b.get("id"), code=(b.get("error") or {}).get("code"),
            retry_after=r.getheader("Retry-After"))
    except (OSError, http.client.HTTPException, ValueError) as e:
        out(phase=phase, status=0, error=type(e).__name__)
def client():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    end = time.monotonic() + 20
    while not os.path.exists(stop) and time.monotonic() < end:
        start(c, "before")
        time.sleep(0.03)
    time.sleep(0.05)
    start(c, "open-connection")
    start(http.client.HTTPConnection("127.0.0.1", port, timeout=3), "new-connection")
ts = [threading.Thread(target=client) for _ in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
PY
loader=$!
e2e_track_pid "$loader"
# SIGTERM once the clients are under way (8 starts acknowledged; calls are in flight from the
# first one on), however long the loader took to start.
_acked_at_least() { [ "$(jq -r 'select(.status == 202) | .id' "$TMP/load.jsonl" 2>/dev/null | grep -c .)" -ge "$1" ]; }
wait_until 60 _acked_at_least 8
term_ms=$(date +%s%3N)
kill -TERM "$SAGAD_PID"
touch "$TMP/stop"
wait_sagad_exit $((GRACE_S + 5))
took=$(( $(date +%s%3N) - term_ms ))
wait "$loader"
_e2e_untrack_pid "$loader"

is "$SAGAD_EXIT" 0 "SIGTERM under load: sagad exited 0"
ok "[ $took -le $(( (GRACE_S + 2) * 1000 )) ]" "... within the grace (${GRACE_S} s) plus 2 s (${took} ms)"
acked=$(jq -r 'select(.status == 202) | .id' "$TMP/load.jsonl")
n_acked=$(grep -c . <<<"$acked")
ok "[ $n_acked -ge 4 ]" "sagas were acknowledged before the signal ($n_acked)"
is "$(jq -r 'select(.phase == "open-connection") | "\(.status):\(.code // .error)"' "$TMP/load.jsonl" |
	sort -u | tr '\n' ' ')" "503:ESHUTDOWN " "a start on an open connection after SIGTERM: 503 ESHUTDOWN"
is "$(jq -r 'select(.phase == "open-connection") | .retry_after' "$TMP/load.jsonl" | sort -u)" 1 \
	"... with Retry-After: 1"
is "$(jq -r 'select(.phase == "new-connection") | .status' "$TMP/load.jsonl" | sort -u)" 0 \
	"new connections after SIGTERM are refused (the listener is closed)"
in_flight=$(grep 'event=shutdown signal=TERM' "$TMP/sagad.log" | sed -n 's/.*calls_in_flight=\([0-9]*\).*/\1/p' | tail -1)
ok "[ ${in_flight:-0} -ge 1 ]" "calls were in flight when SIGTERM came (${in_flight:-0})"
is "$(sagad_log_count 'not waiting longer')" 0 "they finished within the grace (none abandoned)"
parked=$(sagad_log_count 'event=dispatch_parked')
ok "[ $parked -ge 1 ]" "the steps after them were parked for the restart ($parked)"

start_sagad --listen "127.0.0.1:$PORT" --shutdown-grace "${GRACE_S}s"
ok $? "sagad restarted"
_all_completed() {
	local id
	for id in $acked; do
		[ "$(curl -s --max-time 2 "$SAGAD_URL/v1/sagas/$id" | jq -r .status)" = completed ] || return 1
	done
}
wait_until 60 _all_completed
ok $? "every acknowledged saga ($n_acked) completed after the restart"
is "$(oplog_dup_applied "$(oplog_all)" | tr '\n' ' ')" "" "no participant applied an idempotency key twice"
for p in class payment delivery; do clear_faults "$p"; done

# ---- SIGHUP with broken flow files ----------------------------------------------------------------
flows_now() { api GET /v1/flows | jq -r '[.flows[].name] | sort | join(",")'; }
before=$(flows_now)
reload() {   # waits for the next reload's outcome line; prints it
	local n0
	n0=$(sagad_log_count 'event=reload(ed|_failed)')
	kill -HUP "$SAGAD_PID"
	wait_until 60 _more_reloads "$n0"
	grep -E 'event=reload(ed|_failed)' "$TMP/sagad.log" | tail -1
}
_more_reloads() { [ "$(sagad_log_count 'event=reload(ed|_failed)')" -gt "$1" ]; }

printf 'name: broken\nversion: 1\nsteps: [ {name: a,\n' >"$TMP/flows/broken.yaml"
line=$(reload)
like "$line" 'event=reload_failed' "SIGHUP with a syntax error in a new file: reload_failed"
like "$(grep -E 'broken\.yaml:[0-9]+:[0-9]+' "$TMP/sagad.log" | tail -1)" 'broken\.yaml:[0-9]+:[0-9]+: ' \
	"... the log names the file, line and column"
is "$(flows_now)" "$before" "the flows loaded before stay ($before)"

rm -f "$TMP/flows/broken.yaml"
cp "$TMP/flows/apply.yaml" "$TMP/apply.yaml.good"
sed -i 's/participant: class/participant: klass/' "$TMP/flows/apply.yaml"
line=$(reload)
like "$line" 'event=reload_failed' "SIGHUP with a broken edit of apply.yaml (unknown participant): reload_failed"
like "$(grep -E 'apply\.yaml:[0-9]+:[0-9]+: .*klass' "$TMP/sagad.log" | tail -1)" 'klass' \
	"... the error names the unknown participant"
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "after-hup"')")
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "the old apply flow still runs sagas"

cp "$TMP/apply.yaml.good" "$TMP/flows/apply.yaml"
sed -e 's/^name: pay$/name: pay2/' "$TMP/flows/pay.yaml" >"$TMP/flows/pay2.yaml"
line=$(reload)
like "$line" 'event=reloaded' "SIGHUP after the fix: reloaded"
body=$(api POST '/v1/flows/pay2/sagas?wait=completion' \
	"$(jq -cn '{applyId: "hup-1", payMethod: "BANK", payAccount: "1234-1"}')")
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "the new flow pay2 runs"
done_testing
