#!/bin/bash
# 26-sagactl.sh -- the CLI against a real sagad (docs/sagactl.md): flow validate (offline,
# file:line:col errors, exit 0/1/2), flow list/show, saga start/list/show/cancel/retry in table
# and JSON output, SAGAD_URL vs --url, an unreachable daemon, usage errors.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

[ -x "${SAGACTL:-}" ] || SAGACTL=$TOP_SRCDIR/sagactl
[ -x "$SAGACTL" ] || skip_all "SAGACTL is not an executable"

# ctl ARGS...: runs sagactl; sets RC, OUT (stdout) and ERR (stderr).
ctl() {
	"$SAGACTL" "$@" >"$TMP/ctl.out" 2>"$TMP/ctl.err" </dev/null
	RC=$?
	OUT=$(cat "$TMP/ctl.out")
	ERR=$(cat "$TMP/ctl.err")
}
# col FILE LINE WORD: the 1-based column of WORD on line LINE of FILE
col() { sed -n "${2}p" "$1" | awk -v w="$3" '{ print index($0, w) }'; }

# ---- flow validate: offline ---------------------------------------------------------------------
(cd "$TOP_SRCDIR" && "$SAGACTL" flow validate flows/*.yaml) >"$TMP/v.out" 2>"$TMP/v.err"
is "$?" 0 "flow validate flows/*.yaml: exit 0"
SEED000='^flows/(apply|apply-async|apply-event|cancel|pay|ship|ship-async)\.yaml:'
is "$(grep -E "$SEED000" "$TMP/v.out")" "flows/apply-async.yaml: ok (flow apply-async version 1, 4 steps)
flows/apply-event.yaml: ok (flow apply-event version 1, 1 step)
flows/apply.yaml: ok (flow apply version 1, 3 steps)
flows/cancel.yaml: ok (flow cancel version 1, 3 steps)
flows/pay.yaml: ok (flow pay version 1, 1 step)
flows/ship-async.yaml: ok (flow ship-async version 1, 1 step)
flows/ship.yaml: ok (flow ship version 1, 1 step)" "... one ok line per file (the seed-000 files shown)"
is "$(grep -c ': ok (flow ' "$TMP/v.out")" "$(ls "$TOP_SRCDIR"/flows/*.yaml | wc -l)" "... every file of flows/ has its ok line"
is "$(cat "$TMP/v.err")" "" "... nothing on stderr"

# broken copies, each in its own folder with the other (valid) flows
mkdir -p "$TMP/b1" "$TMP/b2" "$TMP/b3"
for d in b1 b2 b3; do cp "$TOP_SRCDIR"/flows/*.yaml "$TMP/$d/"; done
sed -i 's/^    retry:$/    retires:/' "$TMP/b1/pay.yaml"
sed -i 's/^    participant: delivery$/    participant: delivry/' "$TMP/b2/ship.yaml"
sed -i 's/^    flow: pay$/    flow: pai/' "$TMP/b3/apply.yaml"
l1=$(grep -n '^    retires:' "$TMP/b1/pay.yaml" | cut -d: -f1)
l2=$(grep -n 'participant: delivry' "$TMP/b2/ship.yaml" | cut -d: -f1)
c2=$(col "$TMP/b2/ship.yaml" "$l2" delivry)
cd "$TMP/b1" || bail_out "cd"
ctl flow validate pay.yaml
is "$RC" 1 "unknown key: exit 1"
is "$ERR" "pay.yaml:$l1:5: unknown key \"retires\" in step \"pay\"; did you mean \"retry\"?" \
	"unknown key: file:line:col and 'did you mean \"retry\"'"
is "$OUT" "" "... nothing on stdout"
ctl -o json flow validate pay.yaml
is "$RC:$(jq -c '.[0] | [.valid, .errors[0].line, .errors[0].col]' <<<"$OUT" 2>/dev/null)" "1:[false,$l1,5]" \
	"-o json: valid false, the error's line and col"
cd "$TMP/b2" || bail_out "cd"
ctl flow validate ship.yaml
is "$RC" 1 "unknown participant: exit 1"
is "$ERR" "ship.yaml:$l2:$c2: step \"ship\": unknown participant \"delivry\" (known: delivery); did you mean \"delivery\"?" \
	"unknown participant: file:line:col, the known ones, did you mean"
ctl flow validate ship.yaml pay.yaml cancel.yaml
is "$RC" 1 "a broken file among valid ones: exit 1"
is "$OUT" "pay.yaml: ok (flow pay version 1, 1 step)
cancel.yaml: ok (flow cancel version 1, 3 steps)" "... the valid ones are reported ok on stdout"
cd "$TMP/b3" || bail_out "cd"
ctl flow validate apply.yaml
is "$RC" 1 "unknown sub-flow: exit 1"
like "$ERR" '^apply\.yaml:[0-9]+:[0-9]+: step "pay": unknown flow "pai"' \
	"unknown sub-flow: reported as file:line:col like every other problem"
cd "$TOP_SRCDIR" || bail_out "cd"
ctl flow validate
is "$RC:$OUT" "2:" "flow validate without FILE: exit 2"
like "$ERR" 'missing FILE.*Usage: sagactl flow validate' "... with the usage on stderr"
ctl flow validate "$TMP/nope.yaml"
is "$RC" 1 "a missing file: exit 1"
like "$ERR" 'nope.yaml: No such file' "... named on stderr"

# ---- unreachable daemon, usage errors (no sagad yet) --------------------------------------------
dead="http://127.0.0.1:$(free_port)"
ctl --url "$dead" saga list
is "$RC" 1 "unreachable daemon: exit 1"
is "$OUT" "" "... nothing on stdout"
like "$ERR" "cannot reach sagad at $dead.*is it running\\? set --url or SAGAD_URL" "... a hint on stderr"
ctl bogus
is "$RC:$OUT" "2:" "unknown command: exit 2, nothing on stdout"
like "$ERR" 'unknown command "bogus"' "... named on stderr"
ctl saga show
is "$RC" 2 "saga show without ID: exit 2"
ctl -o yaml flow list
is "$RC" 2 "unknown output format: exit 2"
ctl help saga start
is "$RC" 0 "help saga start: exit 0"
like "$OUT" '^Usage: sagactl saga start FLOW' "... prints its usage"

# ---- against sagad -------------------------------------------------------------------------------
start_participants || bail_out "participants did not start"
start_sagad || bail_out "sagad did not start"
url=$SAGAD_URL
export SAGAD_URL

ctl flow list
is "$RC" 0 "flow list: exit 0 (SAGAD_URL from the environment)"
S0='^(apply|apply-async|apply-event|cancel|pay|ship|ship-async)$'
is "$(awk 'NR > 1 { print $1 }' <<<"$OUT" | grep -E "$S0" | paste -sd,)" "apply-async,apply-event,apply,cancel,pay,ship-async,ship" "flow list: the seed-000 flows (HTTP and Kafka)"
like "$OUT" 'apply +1 +apply,pay,ship' "flow list: apply, version 1, its steps"
ctl -o json flow list
is "$(jq -r '.flows[].name' <<<"$OUT" | grep -E "$S0" | paste -sd,)" "apply-async,apply-event,apply,cancel,pay,ship-async,ship" "-o json flow list parses with jq"
ctl flow show apply
is "$RC" 0 "flow show apply: exit 0"
like "$OUT" "class +$CLASS_URL +5s" "flow show: the participant's URL and timeout"
like "$OUT" 'pay \(pivot\) +flow pay' "flow show: pay is a sub-flow and the pivot"
like "$OUT" 'PATCH /classes/\$\{steps\.apply\.response\.body\.id\}' "flow show: the compensation template"
ctl flow show nope
is "$RC:$OUT" "1:" "flow show of an unknown flow: exit 1"
like "$ERR" 'no flow named "nope"' "... the daemon's message on stderr"

# saga start
seed_input '.studentName = "ctl1"' >"$TMP/in.json"
ctl saga start apply --input "@$TMP/in.json" --wait completion
is "$RC" 0 "saga start apply --input @file --wait completion: exit 0"
id=$(awk '$1 == "Saga" { print $2 }' <<<"$OUT")
like "$id" '^[0-9A-Z]{26}$' "the table shows the saga id"
like "$OUT" $'Status +completed' "the table shows status completed"
like "$OUT" 'Output +\{"applyId":"[0-9]+"' "... and the output"
like "$OUT" 'apply +succeeded.*pay +succeeded.*ship +succeeded' "... and the steps"
like "$ERR" "sagactl saga show $id" "stderr says how to see the timeline"
is "$(jget "$(api GET "/v1/sagas/$id")" .status)" completed "the API agrees"
ctl -o json saga start apply --input "$(seed_input '.payAccount = "0000-7"')"
is "$RC" 0 "-o json saga start of a declined payment: exit 0 (accepted)"
is "$(jq -r '.status' <<<"$OUT" 2>/dev/null)" compensated "... its JSON parses and says compensated"
cid=$(jq -r .id <<<"$OUT")
seed_input '.studentName = "ctl-stdin"' | "$SAGACTL" -o json saga start apply --input @- >"$TMP/o" 2>"$TMP/e"
is "$?:$(jq -r .status "$TMP/o" 2>/dev/null)" "0:completed" "--input @- reads standard input"
ctl saga start apply --input '{"payMethod":"BANK"}'
is "$RC:$OUT" "1:" "input rejected by sagad: exit 1, nothing on stdout"
like "$ERR" 'input\.studentName: required field missing' "... sagad's message on stderr"
ctl saga start apply --input '[1,2]'
is "$RC" 2 "--input that is not an object: exit 2"
ctl saga start nope --input '{}'
is "$RC" 1 "unknown flow: exit 1"
ctl -o json saga start apply --input "@$TMP/in.json" --idempotency-key "ctl-k1"
k1=$(jq -r .id <<<"$OUT")
ctl -o json saga start apply --input "@$TMP/in.json" --idempotency-key "ctl-k1"
is "$RC:$(jq -r .id <<<"$OUT")" "0:$k1" "--idempotency-key twice: the same saga"
like "$ERR" 'used before' "... and sagactl says so on stderr"

# saga list
ctl saga list --flow apply --status completed
is "$RC" 0 "saga list --flow apply --status completed: exit 0"
like "$(head -n1 <<<"$OUT")" '^ID +FLOW +STATUS +CREATED +UPDATED' "saga list: header"
is "$(awk 'NR > 1 { print $2 "/" $3 }' <<<"$OUT" | sort -u)" "apply@1/completed" "... only completed apply sagas"
like "$OUT" "$id" "... including the first one"
ok "! grep -q '$cid' '$TMP/ctl.out'" "... not the compensated one"
ctl -o json saga list --flow apply --status compensated
is "$(jq -r '[.sagas[].id] | join(",")' <<<"$OUT")" "$cid" "-o json saga list --status compensated: the declined one"
ctl saga list --limit 1
is "$(awk 'NR > 1' <<<"$OUT" | wc -l)" 1 "--limit 1: one row"
like "$ERR" 'next: sagactl saga list .*--cursor [0-9A-Z]{26}' "... and the command for the next page on stderr"
ctl saga list --status done
is "$RC" 1 "a bad --status: exit 1"
like "$ERR" 'status: expected running, compensating' "... sagad's message"

# saga show: the timeline
ctl saga show "$id"
is "$RC" 0 "saga show ID: exit 0"
like "$OUT" "Saga +$id" "saga show: header with the id"
like "$OUT" 'Flow +apply@1' "saga show: flow@version"
like "$OUT" 'Steps:.*apply +succeeded +1.*pay +succeeded.*ship +succeeded' "saga show: the steps"
like "$OUT" 'History:' "saga show: the history"
like "$OUT" "apply +action +1 +succeeded +POST $CLASS_URL/classes +201" "saga show: the apply attempt, request and status"
like "$OUT" 'pay +action +1 +succeeded' "saga show: the pay event"
like "$OUT" 'saga +0 +started.*saga +0 +completed' "saga show: started ... completed"
ctl saga show "$cid"
like "$OUT" 'apply +compensated +1 \(compensation 1\)' "saga show of the declined one: apply compensated"
like "$OUT" "apply +compensation +1 +succeeded +PATCH $CLASS_URL/classes/[0-9]+ +200" \
	"saga show: the compensation row"
ctl -o json saga show "$id"
is "$(jq -r '.history | map(.event) | first + "," + last' <<<"$OUT" 2>/dev/null)" "started,completed" \
	"-o json saga show: the API's JSON"
ctl saga show 01ZZZZZZZZZZZZZZZZZZZZZZZZ
is "$RC:$OUT" "1:" "saga show of an unknown id: exit 1"
like "$ERR" '^sagactl: no saga with id' "... 'sagactl: MESSAGE' on stderr"

# saga cancel / retry
# (4 s: ship is still running when the cancel comes, on a loaded machine too)
fault delivery '{"method":"POST","path":"/deliveries","status":0,"delay_ms":4000,"times":1}' >/dev/null
ctl -o json saga start apply --input "$(seed_input '.studentName = "ctl-cancel"')" --wait step:pay
sid=$(jq -r .id <<<"$OUT")
is "$RC:$(jq -r '.steps | map(.state) | join(",")' <<<"$OUT")" "0:succeeded,succeeded,running" \
	"--wait step:pay returns while ship runs"
ctl saga cancel "$sid"
is "$RC" 0 "saga cancel ID: exit 0"
like "$OUT$ERR" 'compensating' "... says the saga is compensating"
ctl saga cancel "$sid"
is "$RC" 0 "saga cancel again while compensating: exit 0"
body=$(wait_status "$sid" compensated 60)
ok $? "the cancelled saga is compensated"
aid=$(jget "$body" '.steps[0].response.body.id')
is "$(pcall class GET "/classes/$aid" | jq -r .applyStatus)" CLASS_CANCELED "the class was cancelled"
ctl saga cancel "$sid"
is "$RC:$OUT" "1:" "saga cancel of a compensated saga: exit 1"
like "$ERR" 'already compensated' "... sagad's message on stderr"
ctl saga retry "$id"
is "$RC" 1 "saga retry of a completed saga: exit 1"

# SAGAD_URL vs --url
RC=0
SAGAD_URL=$dead "$SAGACTL" --url "$url" saga show "$id" >"$TMP/o" 2>"$TMP/e" || RC=$?
is "$RC" 0 "--url wins over a wrong SAGAD_URL"
like "$(cat "$TMP/o")" "Saga +$id" "... and shows the saga"
SAGAD_URL=$dead "$SAGACTL" saga show "$id" >"$TMP/o" 2>"$TMP/e"
is "$?:$(cat "$TMP/o")" "1:" "a wrong SAGAD_URL without --url: exit 1, nothing on stdout"
like "$(cat "$TMP/e")" "cannot reach sagad at $dead" "... the URL it tried is named"
"$SAGACTL" saga list --url "$url" --limit 1 >"$TMP/o" 2>"$TMP/e"
is "$?" 0 "--url after the command works too"

done_testing
