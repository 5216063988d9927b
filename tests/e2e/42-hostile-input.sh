#!/bin/bash
# 42-hostile-input.sh -- hostile input, each refused with a clear error and nothing lost
# (docs/reliability.md, "Hostile input and fuzzing"):
#   1  flow files: truncated, huge, deeply nested, not UTF-8, alias bomb, unknown keys: sagad
#      --check names file:line:col; --flow-limit raises a limit; a SIGHUP reload with such a file
#      keeps the loaded flows
#   2  API bodies: truncated, not UTF-8, nested deeper than the JSON parser allows, duplicate
#      keys, NUL escapes: 400 with line and column; unknown fields under strict_input: 422;
#      bodies over --max-body, with or without Content-Length: 413 in JSON; a path that is not
#      UTF-8 (the crash fuzz-api found): 404 in JSON
#   3  a participant answering more than --max-response: the step fails with the limit in its
#      error, the saga compensates what was done; an answer whose history summary is cut inside
#      a UTF-8 character stays visible in the API
#   4  templates that read missing data (an input left out, a response field the participant
#      did not send): the step fails with the path in its error, the saga compensates
# and after all of it sagad still serves, and a normal saga completes.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

MAX_BODY=65536
MAX_RESPONSE=8192
FLOWS_DIR=$TMP/flows
mkdir -p "$FLOWS_DIR"
cp "$TOP_SRCDIR"/flows/*.yaml "$FLOWS_DIR"/

# A flow whose later step reads data that may be missing at run time (statically fine: the
# input is declared, apply keeps its whole response).
cat >"$FLOWS_DIR/probe.yaml" <<'EOF'
name: probe
version: 1
strict_input: true
input:
  studentName: { type: string, required: true }
  nick: string
participants:
  class: { url: "${default(env.CLASS_URL, 'http://127.0.0.1:8081')}", timeout: 5s }
steps:
  - name: apply
    participant: class
    action:
      method: POST
      path: /classes
      body: { studentName: "${input.studentName}", applyStatus: ApplyRequest }
      success: { status: [201] }
    compensation:
      method: PATCH
      path: "/classes/${steps.apply.response.body.id}"
      body: { applyStatus: CLASS_CANCELED }
      success: { status: [200, 404] }
  - name: label
    participant: class
    action:
      method: PATCH
      path: "/classes/${steps.apply.response.body.id}"
      body: { nick: "${input.nick}", teacher: "${steps.apply.response.body.teacher.name}" }
EOF

# ---- 1 flow files ---------------------------------------------------------------------------
# check_flow NAME REGEX DESC [sagad args]: $TMP/bad/NAME.yaml alone in a folder fails --check
# with exit 1 and an error matching REGEX.
check_flow() {
	local name=$1 re=$2 desc=$3 out rc
	shift 3
	rm -rf "$TMP/one" && mkdir -p "$TMP/one" && cp "$TMP/bad/$name.yaml" "$TMP/one/"
	out=$(timeout 20 "$SAGAD" --check --flows "$TMP/one" "$@" 2>&1)
	rc=$?
	is "$rc" 1 "$desc: --check exits 1"
	like "$out" "$re" "$desc: the error names the place and the problem"
}
mkdir -p "$TMP/bad"
head -c 1500 "$TOP_SRCDIR/flows/apply.yaml" >"$TMP/bad/truncated.yaml"
check_flow truncated "truncated\.yaml:[0-9]+:[0-9]+: " "truncated flow file (cut at 1500 bytes)"

# 2 MiB: a valid flow with a long comment.
{ sed -n '/^name:/,$p' "$TOP_SRCDIR/flows/ship.yaml" | sed 's/^name: ship$/name: huge/';
  printf '# %s\n' "$(head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' d)"; } \
	>"$TMP/bad/huge.yaml"
check_flow huge "huge\.yaml: the file has [0-9]+ bytes \(limit max_file_bytes 1048576\)" "2 MiB flow file"
out=$(timeout 20 "$SAGAD" --check --flows "$TMP/one" --flow-limit max_file_bytes=4MiB 2>&1)
is "$?:$out" "0:1 flows ok in $TMP/one" "--flow-limit max_file_bytes=4MiB: the same file loads"

python3 -c "print('name: deep\nversion: 1\nx: ' + '[' * 100000 + ']' * 100000)" >"$TMP/bad/deep.yaml"
check_flow deep "deep\.yaml:3:[0-9]+: nesting deeper than 64 levels \(limit max_depth\)" \
	"100,000 nested lists"
printf 'name: caf\xe9\nversion: 1\n' >"$TMP/bad/latin1.yaml"
check_flow latin1 "latin1\.yaml:1:[0-9]+: the file is not valid UTF-8" "a Latin-1 flow file"
{ echo 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
  for l in b c d e f g h i; do
	p=$(printf '%s' "$l" | tr 'b-i' 'a-h')
	echo "$l: &$l [*$p,*$p,*$p,*$p,*$p,*$p,*$p,*$p,*$p]"
  done
  echo 'name: bomb'; echo 'version: 1'; } >"$TMP/bad/bomb.yaml"
check_flow bomb "bomb\.yaml:[0-9]+:[0-9]+: too many alias expansions \(more than 100" "billion laughs"
sed 's/^    retry:/    retires:/' "$TOP_SRCDIR/flows/ship.yaml" >"$TMP/bad/unknown.yaml"
check_flow unknown 'unknown\.yaml:[0-9]+:5: unknown key "retires" in step "ship"; did you mean "retry"\?' \
	"an unknown key"
out=$(timeout 20 "$SAGAD" --check --flows "$TOP_SRCDIR/flows" --flow-limit max_step=3 2>&1)
is "$?" 2 "--flow-limit with an unknown name: exit 2"
like "$out" 'unknown flow limit "max_step" \(known: max_file_bytes, max_depth, max_aliases, max_nodes, max_steps\)' \
	"... and the message lists the known limits"

start_participants || bail_out "participants did not start"
start_sagad --max-body "$MAX_BODY" --max-response "$MAX_RESPONSE" || bail_out "sagad did not start"
flows_before=$(api GET /v1/flows | jq -c '[.flows[].name] | sort')
cp "$TMP/bad/bomb.yaml" "$FLOWS_DIR/"
kill -HUP "$SAGAD_PID"
reload_failed() { [ "$(sagad_log_count 'event=reload_failed')" -ge 1 ]; }
wait_until 60 reload_failed
ok $? "SIGHUP with an alias bomb in the folder: reload_failed is logged"
is "$(sagad_log_count 'bomb\.yaml:[0-9]+:[0-9]+: too many alias expansions')" 1 "... with the file's error"
is "$(api GET /v1/flows | jq -c '[.flows[].name] | sort')" "$flows_before" "... and the loaded flows stay"
rm -f "$FLOWS_DIR/bomb.yaml"

# ---- 2 API bodies ---------------------------------------------------------------------------
START=/v1/flows/apply/sagas?wait=none
n_sagas() { saga_list_all | jq length; }
before=$(n_sagas)

post "$START" '{"studentName": "kim", "payMethod": "BA'
is_error 400 EINVAL 'not valid JSON: line 1, column [0-9]+: premature end of input' "truncated JSON"
post "$START" "$(printf '{"studentName": "k\xffm"}')"
is_error 400 EINVAL 'not valid JSON: line 1, column [0-9]+: unable to decode byte 0xff' "JSON that is not UTF-8"
post "$START" "{\"studentName\": \"k\", \"d\": $(printf '%*s' 5000 '' | tr ' ' '[')$(printf '%*s' 5000 '' | tr ' ' ']')}"
is_error 400 EINVAL 'not valid JSON: line 1, column [0-9]+: maximum parsing depth reached' \
	"JSON nested 5,000 deep"
post "$START" '{"studentName": "a", "studentName": "b"}'
is_error 400 EINVAL 'not valid JSON: line 1, column [0-9]+: duplicate object key' "duplicate keys"
post "$START" '{"studentName": "a\u0000b"}'
is_error 400 EINVAL 'not valid JSON: line 1, column [0-9]+: \\u0000 is not allowed' "a NUL escape"
post /v1/flows/probe/sagas?wait=none '{"studentName": "a", "studentNmae": "b"}'
is_error 422 EINPUT 'input\.studentNmae: unknown field' "unknown field under strict_input"
head -c $((MAX_BODY + 1)) /dev/zero | tr '\0' ' ' >"$TMP/big.json"
api POST "$START" '' -H 'Content-Type: application/json' --data-binary @"$TMP/big.json" >/dev/null
is_error 413 ETOOBIG "request body exceeds $MAX_BODY bytes; send a smaller body or raise --max-body" \
	"body of $((MAX_BODY + 1)) bytes with Content-Length"
api POST "$START" '' -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' \
	--data-binary @"$TMP/big.json" >/dev/null
is_error 413 ETOOBIG "exceeds $MAX_BODY bytes" "the same body chunked, without Content-Length"
api POST "$START" '' -H 'Content-Type: application/json' -H 'Expect: 100-continue' \
	--data-binary @"$TMP/big.json" >/dev/null
is_error 413 ETOOBIG "exceeds $MAX_BODY bytes" "the same body after Expect: 100-continue"
api GET /v1/sagas/%AE%ED%A0%80%F4%90%80%80 >/dev/null
is_error 404 ENOSAGA 'no saga with id "\?+"' "a saga id that is not UTF-8 (found by fuzz-api)"
api GET /v1/flows/caf%E9 >/dev/null
is_error 404 ENOFLOW 'no flow named "caf\?"' "a flow name that is not UTF-8"
is "$(n_sagas)" "$before" "none of these started a saga"
is "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Big: $(head -c 100000 /dev/zero | tr '\0' a)" \
	"$SAGAD_URL/livez")" 431 "a 100 kB header: 431 from the HTTP layer"
# the limit is the connection memory (orchestrator/httpd.c, HTTPD_CONNECTION_MEMORY): about
# 15.8 kB of request head; docs/api.md promises that much
is "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Big: $(head -c 15000 /dev/zero | tr '\0' a)" \
	"$SAGAD_URL/livez")" 200 "a 15 kB header is accepted"
is "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Big: $(head -c 16500 /dev/zero | tr '\0' a)" \
	"$SAGAD_URL/livez")" 431 "a 16.5 kB header: 431"

# ---- 3 a participant answers more than --max-response -----------------------------------------
big=$(head -c $((MAX_RESPONSE * 4)) /dev/zero | tr '\0' z)
fault delivery "$(jq -cn --arg b "$big" '{method: "POST", path: "/deliveries", status: 201,
	body: {id: 1, deliveryStatus: "DeliveryStart", blob: $b}, times: -1}')" >/dev/null
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "big-answer"')")
clear_faults delivery
is "$HTTP_STATUS:$(jget "$body" .status)" "200:compensated" "an oversized answer: the saga compensates"
child=$(api GET "/v1/sagas/$(child_saga "$body" ship)")
is "$(jget "$child" '.steps[0].state')" compensated \
	"... its ship step (outcome unknown: it may have been applied) is compensated too"
like "$(jget "$child" '[.history[] | select(.step == "ship" and .phase == "action") | .error] | join(" ")')" \
	"response too large: response body exceeds $MAX_RESPONSE bytes" "... its attempt's error names the limit"
is "$(jget "$body" '.steps | map("\(.name)=\(.state)") | join(",")')" "apply=compensated,pay=compensated,ship=failed" \
	"... the parent undid apply and pay (its ship step: the sub-flow that compensated)"
is "$(participant_log delivery | jq -r '[.[] | select(.method == "PATCH") | .idempotency_key | split(":")[2]] | join(",")')" \
	compensation "... the delivery participant got the cancel"
is "$(participant_log class | jq '[.[] | select(.method == "PATCH" and .request_body.applyStatus == "CLASS_CANCELED")] | length')" 1 \
	"... the class participant got the cancel"

# A long answer in Korean: the history keeps its first 512 bytes, a cut inside a character.
# The cut is sanitized, so the attempt stays visible in the API (before, json_pack() refused
# the row and GET /v1/sagas/ID silently left it out).
fault payment "$(jq -cn --arg b "$(printf '학%.0s' $(seq 1 300))" '{method: "POST", path: "/payments",
	status: 503, body: $b, times: 1}')" >/dev/null
body=$(api POST '/v1/flows/pay/sagas?wait=completion' '{"applyId": "korean-1"}')
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "a 503 with 900 bytes of Korean, then success: completed"
is "$(jget "$body" '[.history[] | select(.step == "pay" and .phase == "action" and .event != "dispatched") | .attempt] | join(",")')" \
	"1,2" "... both attempts are in the history the API shows"
like "$(jget "$body" '.history[] | select(.step == "pay" and .attempt == 1 and .event == "failed") | .response')" \
	'^학+\?*\.\.\.$' "... the first one's answer cut at 512 bytes, the split character shown as '?'"

# ---- 4 templates that read missing data -------------------------------------------------------
body=$(api POST '/v1/flows/probe/sagas?wait=completion' '{"studentName": "no-nick"}')
is "$HTTP_STATUS:$(jget "$body" .status)" "200:compensated" "input.nick left out: the saga compensates"
is "$(jget "$body" '.steps | map("\(.name)=\(.state)") | join(",")')" "apply=compensated,label=failed" \
	"... apply undone, label failed without being sent"
like "$(jget "$body" '.steps[1].error')" 'action of step "label" cannot be rendered: .*input\.nick' \
	"... its error names the missing input"
body=$(api POST '/v1/flows/probe/sagas?wait=completion' '{"studentName": "nick", "nick": "n"}')
is "$HTTP_STATUS:$(jget "$body" .status)" "200:compensated" "a response field the participant did not send: compensated"
like "$(jget "$body" '.steps[1].error')" 'cannot be rendered: .*steps\.apply\.response\.body\.teacher' \
	"... the error names the missing response field"
is "$(participant_log class | jq '[.[] | select(.method == "PATCH" and .request_body.nick != null)] | length')" 0 \
	"the unrenderable request never reached the participant"

# ---- nothing lost ---------------------------------------------------------------------------
ok "$(sagad_alive && echo 0 || echo 1)" "sagad is still running"
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$(seed_input '.studentName = "after-all"')")
is "$HTTP_STATUS:$(jget "$body" .status)" "200:completed" "a normal saga still completes"
is "$(grep -cE 'AddressSanitizer|runtime error|level=fatal' "$TMP/sagad.log")" 0 "no sanitizer report or fatal in sagad's log"
done_testing
