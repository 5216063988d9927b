#!/bin/bash
# 61-secrets.sh -- secrets never reach the database, the logs or the API (docs/security.md):
# a participant credential from the environment (an X-Api-Key header resolved at flow load)
# and input fields the flow marks `sensitive: true` (a card number, a PIN).
#
#   A  without --secrets-key a flow with sensitive fields loads but cannot start (503 ENOKEY)
#   B  with the key: the saga runs; the bank (a real process) receives the real values, in
#      the header, the query, the body and a sub-flow's input; the Kafka message published
#      from the outbox carries them too
#   C  the API (the saga from the store and from memory, its history, the echoing step
#      response, the sub-flow's saga, the flow definition) and sagactl show "***" instead
#   D  sagad's log (debug level) and the lifecycle events hold none of them
#   E  the SQLite files (.db, -wal) hold none of them, in clear, JSON- or URL-encoded; the
#      holder's name (not sensitive) is there, so the search works; sealed values are
#   F  kill -9 before a dispatch: a restart without the key refuses to resume the saga (clear
#      error, nothing sent); a restart with the key resumes it and the bank gets the real values
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init
command -v openssl >/dev/null || skip_all "openssl is not installed"

CARD='4929 5555/0101+7777'            # spaces, / and + so its URL-encoded form differs
CARD_URL='4929%205555%2F0101%2B7777'
PIN=73916482
export BANK_API_KEY="sk_live_9f8e7d6c5b4a-ENVSECRET"
HOLDER=holder-visible-kim
SECRETS=("$CARD" "$CARD_URL" "$PIN" "$BANK_API_KEY")
openssl rand -hex 32 >"$TMP/secrets.key"
chmod 600 "$TMP/secrets.key"

# ---- the bank: records what it receives, echoes it back (so responses carry the secrets) ------
cat >"$TMP/bank.py" <<'EOF'
import json, sys, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
record, port_file = sys.argv[1], sys.argv[2]
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"null")
        u = urllib.parse.urlsplit(self.path)
        got = {"path": u.path, "query": dict(urllib.parse.parse_qsl(u.query)),
               "apiKey": self.headers.get("X-Api-Key"), "body": body,
               "key": self.headers.get("Idempotency-Key")}
        with open(record, "a") as f:
            f.write(json.dumps(got) + "\n")
        out = json.dumps({"approved": True, "apiKey": got["apiKey"], "echo": body,
                          "query": got["query"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
open(port_file + ".tmp", "w").write(str(s.server_address[1]))
import os; os.rename(port_file + ".tmp", port_file)
s.serve_forever()
EOF
/usr/bin/python3 "$TMP/bank.py" "$TMP/bank.jsonl" "$TMP/bank.port" >"$TMP/bank.participant.log" 2>&1 &
e2e_track_pid $!
wait_until 60 test -s "$TMP/bank.port" || bail_out "the bank did not start"
export BANK_URL="http://127.0.0.1:$(cat "$TMP/bank.port")"
touch "$TMP/bank.jsonl"

mkdir -p "$TMP/flows"
cat >"$TMP/flows/card.yaml" <<'EOF'
name: card
version: 1
input:
  holder:     { type: string, required: true }
  cardNumber: { type: string, required: true, sensitive: true }
  pin:        { type: integer, required: true, sensitive: true }
participants:
  bank:
    url: "${env.BANK_URL}"
    timeout: 5s
    headers:
      X-Api-Key: "${env.BANK_API_KEY}"
  events:
    type: kafka
    topic: card-events
    headers:
      X-Api-Key: "${env.BANK_API_KEY}"
steps:
  - name: charge
    participant: bank
    action:
      method: POST
      path: /charges
      query: { card: "${input.cardNumber}" }
      body: { holder: "${input.holder}", card: "${input.cardNumber}", pin: "${input.pin}" }
  - name: audit
    flow: card-audit
    input: { holder: "${input.holder}", note: "charged ${input.cardNumber}" }
  - name: announce
    participant: events
    publish:
      key: "${input.holder}"
      body: { holder: "${input.holder}", card: "${input.cardNumber}" }
  - name: confirm
    participant: bank
    action:
      method: POST
      path: /confirm
      body: { holder: "${input.holder}", card: "${input.cardNumber}", pin: "${input.pin}" }
EOF
cat >"$TMP/flows/card-audit.yaml" <<'EOF'
name: card-audit
version: 1
input:
  holder: { type: string, required: true }
  note: string                       # not marked sensitive: carries the parent's secret anyway
participants:
  bank: { url: "${env.BANK_URL}", timeout: 5s }
steps:
  - name: record
    participant: bank
    action: { method: POST, path: /audit, body: { holder: "${input.holder}", note: "${input.note}" } }
EOF
INPUT=$(jq -cn --arg h "$HOLDER" --arg c "$CARD" --argjson p "$PIN" '{holder: $h, cardNumber: $c, pin: $p}')

# no_secret_in TEXT DESC: none of the secrets (in any of our forms) occurs in TEXT
no_secret_in() {
	local s found=""
	for s in "${SECRETS[@]}"; do
		[[ $1 == *"$s"* ]] && found="$found [$s]"
	done
	is "${found:-none}" none "$2"
}
bank_got() {   # bank_got PATH: the records of requests to PATH, one JSON per line
	jq -c --arg p "$1" 'select(.path == $p)' "$TMP/bank.jsonl"
}

start_kafka card-events:1 saga-events:1 || bail_out "sagad-kafka-mock did not start"

# ---- A: no key --------------------------------------------------------------------------------
FLOWS_DIR=$TMP/flows start_sagad_kafka --log-level debug || bail_out "sagad did not start"
like "$(grep 'event=secrets_key_missing flow=card ' "$TMP/sagad.log")" 'input field cardNumber sensitive.*--secrets-key' \
	"A: start-up warns that flow card needs --secrets-key"
api POST '/v1/flows/card/sagas?wait=completion' "$INPUT" >/dev/null
is "$HTTP_STATUS $(jq -r .error.code "$TMP/.http_body")" "503 ENOKEY" "A: without a key, a start is 503 ENOKEY"
like "$(jq -r .error.message "$TMP/.http_body")" 'marks input field cardNumber sensitive.*--secrets-key FILE' \
	"A: ... and the message says what to do"
is "$(wc -l <"$TMP/bank.jsonl")" 0 "A: ... and nothing was sent"
stop_sagad

# ---- B: with the key --------------------------------------------------------------------------
FLOWS_DIR=$TMP/flows start_sagad_kafka --log-level debug --secrets-key "$TMP/secrets.key" ||
	bail_out "sagad did not start"
body=$(api POST '/v1/flows/card/sagas?wait=completion' "$INPUT")
A=$(jget "$body" .id)
is "$HTTP_STATUS $(jget "$body" .status)" "200 completed" "B: the card saga completed"
charge=$(bank_got /charges)
is "$(jq -r .apiKey <<<"$charge")" "$BANK_API_KEY" "B: the bank got the real X-Api-Key from the environment"
is "$(jq -r '.query.card' <<<"$charge")|$(jq -r .body.card <<<"$charge")|$(jq -r .body.pin <<<"$charge")" \
	"$CARD|$CARD|$PIN" "B: ... and the real card number (query and body) and PIN"
is "$(bank_got /audit | jq -r .body.note)" "charged $CARD" "B: the sub-flow sent the real value too"
is "$(bank_got /confirm | jq -r .body.card)" "$CARD" "B: so did the last step"
msg=$(kafka_consume card-events 1 30)
is "$(jq -r '.payload | fromjson | .card' <<<"$msg" 2>/dev/null)" "$CARD" \
	"B: the Kafka message (through the sealed outbox row) carries the real card number"
is "$(jq -r '.headers["X-Api-Key"]' <<<"$msg" 2>/dev/null)" "$BANK_API_KEY" "B: ... and the real header"
body=$(api POST '/v1/flows/card/sagas?wait=none' "$(jq -c '.holder = "holder-two"' <<<"$INPUT")" \
	-H 'Prefer: return=minimal')
is "$HTTP_STATUS" 202 "B: a second saga (answered from memory: Prefer: return=minimal)"
no_secret_in "$body" "C: the answer from memory shows no secret"
is "$(jget "$body" .input.cardNumber)|$(jget "$body" .input.pin)|$(jget "$body" .input.holder)" \
	"***|***|holder-two" "C: ... its input shows *** for the sensitive fields"
B2=$(jget "$body" .id)
wait_status "$B2" completed 60 >/dev/null
ok $? "B: the second saga completed"

# ---- C: the API and sagactl -------------------------------------------------------------------
saga=$(api GET "/v1/sagas/$A")
no_secret_in "$saga" "C: GET /v1/sagas/{id} shows no secret"
is "$(jget "$saga" .input.cardNumber)|$(jget "$saga" .input.pin)|$(jget "$saga" .input.holder)" \
	"***|***|$HOLDER" "C: ... input: *** for cardNumber and pin, the holder in clear"
like "$(jq -r '.history[] | select(.step == "charge" and .event == "succeeded") | .request' <<<"$saga")" \
	'^POST http://127.0.0.1:[0-9]+/charges\?card=\*\*\* \{.*"card":"\*\*\*".*"pin":\*\*\*' \
	"C: the history's request summary has *** where the secrets were"
is "$(jq -r '.steps[] | select(.name == "charge") | .response.body | "\(.apiKey)|\(.echo.card)|\(.query.card)"' <<<"$saga")" \
	'***|***|***' "C: the step's kept response (the bank's echo) is redacted"
like "$(jq -r '.history[] | select(.step == "charge" and .event == "succeeded") | .response' <<<"$saga")" \
	'"apiKey": ?"\*\*\*"' "C: so is the history's response summary"
child=$(child_saga "$saga" audit)
csaga=$(api GET "/v1/sagas/$child")
is "$(jget "$csaga" .flow)" card-audit "C: the sub-flow's saga"
no_secret_in "$csaga" "C: ... shows no secret"
is "$(jget "$csaga" .input.note)" "***" "C: ... its input field carrying the parent's secret is ***"
flow=$(api GET /v1/flows/card)
no_secret_in "$flow" "C: GET /v1/flows/card shows no secret"
is "$(jget "$flow" '.participants.bank.headers["X-Api-Key"]')" "***" "C: ... the environment header is ***"
is "$(jget "$flow" .input.cardNumber.sensitive)" true "C: ... and cardNumber is marked sensitive"
out=$("$SAGACTL" --url "$SAGAD_URL" flow show card 2>&1)
no_secret_in "$out" "C: sagactl flow show card shows no secret"
like "$out" 'cardNumber +string +required, sensitive' "C: ... and lists cardNumber as sensitive"
out=$("$SAGACTL" --url "$SAGAD_URL" saga show "$A" 2>&1; "$SAGACTL" --url "$SAGAD_URL" -o json saga show "$A" 2>&1;
      "$SAGACTL" --url "$SAGAD_URL" saga show "$child" 2>&1; "$SAGACTL" --url "$SAGAD_URL" saga list 2>&1)
no_secret_in "$out" "C: sagactl saga show (table and json) and saga list show no secret"
like "$out" "$HOLDER" "C: ... while showing the saga"

# ---- D: logs and lifecycle events -------------------------------------------------------------
no_secret_in "$(cat "$TMP/sagad.log")" "D: sagad's log (debug level) holds no secret"
like "$(grep -c "saga=$A" "$TMP/sagad.log")" '^[1-9]' "D: ... while it logged the saga"
events=$(kafka_consume saga-events)
like "$events" "$A" "D: the lifecycle events of the saga were published"
no_secret_in "$events" "D: ... and hold no secret"

# ---- E: the database files --------------------------------------------------------------------
db_has() {   # db_has TEXT: true when TEXT occurs in sagad.db or its WAL
	grep -aqF -- "$1" "$TMP"/sagad.db "$TMP"/sagad.db-wal 2>/dev/null
}
db_check() {   # db_check WHEN
	local s found=""
	for s in "${SECRETS[@]}" "$(jq -cn --arg c "$CARD" '$c')"; do
		db_has "$s" && found="$found [$s]"
	done
	is "${found:-none}" none "E: $1: no secret in sagad.db or sagad.db-wal"
	ok 'db_has "$HOLDER"' "E: $1: the holder's name (not sensitive) is there: the search works"
}
ok '[ -s "$TMP/sagad.db-wal" ]' "E: the WAL holds this run's writes"
db_check "while sagad runs"
ok 'db_has "\$sealed\":\"v1:"' "E: sealed values are stored instead"
stop_sagad
db_check "after a clean stop"

# ---- F: a restart needs the key ---------------------------------------------------------------
# Crash right before the third dispatch of this run: charge, audit.record, then confirm.
: >"$TMP/bank.jsonl"
SAGAD_CRASHPOINT=before_dispatch:3 FLOWS_DIR=$TMP/flows start_sagad_kafka --log-level debug \
	--secrets-key "$TMP/secrets.key" || bail_out "sagad did not start"
api_bg "$TMP/f.out" POST '/v1/flows/card/sagas?wait=completion' "$(jq -c '.holder = "holder-f"' <<<"$INPUT")"
wait_sagad_exit 60
is "$SAGAD_EXIT" 137 "F: sagad was killed before dispatching confirm"
wait_bg
F=$(sqlite3 "$TMP/sagad.db" "SELECT id FROM sagas WHERE flow = 'card' AND status = 'running'")
like "$F" '^[0-9A-Z]{26}$' "F: the saga is running in the store"
is "$(bank_got /confirm | wc -l)" 0 "F: confirm was not sent"
FLOWS_DIR=$TMP/flows start_sagad_kafka --log-level debug || bail_out "sagad did not start"
wait_until 60 grep -q "saga=$F .*event=resume_failed" "$TMP/sagad.log"
like "$(grep "saga=$F .*event=resume_failed" "$TMP/sagad.log")" 'sealed and sagad has no secrets key.*--secrets-key' \
	"F: restarted without the key: the saga is not resumed, with a clear error"
sleep 1
is "$(bank_got /confirm | wc -l)" 0 "F: ... and nothing is sent"
stop_sagad
FLOWS_DIR=$TMP/flows start_sagad_kafka --log-level debug --secrets-key "$TMP/secrets.key" ||
	bail_out "sagad did not start"
saga=$(wait_status "$F" completed 60)
ok $? "F: restarted with the key: the saga resumes and completes"
is "$(bank_got /confirm | jq -r '"\(.body.card)|\(.body.pin)|\(.apiKey)"')" "$CARD|$PIN|$BANK_API_KEY" \
	"F: ... and the bank got the real values after the restart (unsealed, not ***)"
no_secret_in "$saga" "F: the resumed saga shows no secret"
no_secret_in "$(cat "$TMP/sagad.log")" "F: the log still holds no secret"
stop_sagad
db_check "after the restarts"

done_testing
