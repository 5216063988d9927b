#!/bin/bash
# 45-answer-memory.sh -- the answer to a start that waited for the saga's end is written from
# the engine's memory (the pieces it kept of the rows it wrote, docs/architecture.md); it must be
# byte for byte what the store gives for the same saga: GET /v1/sagas/ID and an idempotent
# repeat of the start (both read the store; nothing changes a saga once it has ended) answer
# exactly the same bytes, for the apply flow completing, retrying, and compensating at each of
# its steps (history, keys, child sagas' outputs, pending steps). /metrics shows that the
# waited answers did come from memory (sagad_saga_answers_total{source="memory"}).
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init

start_participants || bail_out "participants did not start"
start_sagad || bail_out "sagad did not start"

# check LABEL WANT-STATUS INPUT: one start that waits (answered from memory), then the same
# saga from the store twice; the three bodies must be identical.
n=0
check() {
	local label=$1 want=$2 input=$3 key id st
	n=$((n + 1))
	key="answer-memory-$n"
	api POST '/v1/flows/apply/sagas?wait=completion' "$input" -H "Idempotency-Key: $key" >/dev/null
	st=$(http_status)
	cp "$E2E_TMP/.http_body" "$TMP/waited-$n.json"
	id=$(jq -r .id "$TMP/waited-$n.json")
	is "$st:$(jq -r .status "$TMP/waited-$n.json")" "$want" "$label: the waited answer ($id)"
	api GET "/v1/sagas/$id" >/dev/null
	cp "$E2E_TMP/.http_body" "$TMP/get-$n.json"
	api POST '/v1/flows/apply/sagas?wait=completion' "$input" -H "Idempotency-Key: $key" >/dev/null
	cp "$E2E_TMP/.http_body" "$TMP/replay-$n.json"
	ok "$(cmp -s "$TMP/waited-$n.json" "$TMP/get-$n.json"; echo $?)" \
		"$label: GET /v1/sagas/ID (the store) answers the same bytes"
	ok "$(cmp -s "$TMP/waited-$n.json" "$TMP/replay-$n.json"; echo $?)" \
		"$label: the idempotent repeat (the store) answers the same bytes"
	cmp -s "$TMP/waited-$n.json" "$TMP/get-$n.json" || {
		diag "waited: $(cat "$TMP/waited-$n.json")"
		diag "get:    $(cat "$TMP/get-$n.json")"
	}
}

# answers_from SOURCE: sagad_saga_answers_total{source=SOURCE}
answers_from() {
	api GET /metrics >/dev/null
	awk -v s="sagad_saga_answers_total{source=\"$1\"}" '$1 == s { print $2 }' "$E2E_TMP/.http_body"
}

check "happy" "200:completed" "$(seed_input)"
is "$(jq -r '.keys.applyId | type' "$TMP/waited-1.json"):$(jq '.history | length' "$TMP/waited-1.json" | awk '{ print ($1 >= 5) }')" \
	"string:1" "happy: the answer has its business key and its history"

fault class '{"method":"POST","path":"/classes","status":500,"times":1}' >/dev/null
check "class retried once" "200:completed" "$(seed_input '.studentName = "retry"')"
clear_faults class
is "$(jq -r '.steps[0].attempt' "$TMP/waited-2.json")" 2 "class retried once: 2 attempts"

fault class '{"method":"POST","path":"/classes","status":500,"times":-1}' >/dev/null
check "class refuses" "200:compensated" "$(seed_input '.studentName = "refused"')"
clear_faults class
is "$(jq -r '[.steps[].state] | join(",")' "$TMP/waited-3.json")" "failed,pending,pending" \
	"class refuses: pay and ship never started (pending)"

check "payment declined" "200:compensated" "$(seed_input '.payAccount = "0000-1111-2222-3333"')"

fault delivery '{"method":"POST","path":"/deliveries","status":400,"times":1}' >/dev/null
check "delivery refuses" "200:compensated" "$(seed_input '.studentName = "nodelivery"')"
clear_faults delivery
is "$(jq -r '[.steps[].state] | join(",")' "$TMP/waited-5.json")" "compensated,compensated,failed" \
	"delivery refuses: pay and apply compensated"

# Each waited answer above came from memory (else this test would compare the store with
# itself), and each GET and repeat from the store.
is "$(answers_from memory)" 5 "the 5 waited answers were written from the engine's memory"
is "$(answers_from store)" 10 "the 5 GETs and 5 idempotent repeats were read from the store"

done_testing
