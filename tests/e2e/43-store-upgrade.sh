#!/usr/bin/env bash
# 43-store-upgrade.sh -- a store written by the sagad before schema version 6 (history with a
# rowid and an index on saga_id; tests/fixtures/store-v5.sql, three compensated sagas made by
# that sagad, and tests/fixtures/store-v5-answers.txt, its API's answers about them) opens in
# this sagad: migrated to version 6 (history WITHOUT ROWID, keyed (saga_id, seq)), the old
# sagas' answers byte for byte the same, and new sagas' history numbered after the old rows,
# increasing across a restart.
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init
plan 12

FIX=$TOP_SRCDIR/tests/fixtures
sqlite3 "$TMP/sagad.db" <"$FIX/store-v5.sql" || bail_out "cannot load the version 5 store"
q() { sqlite3 "$TMP/sagad.db" "$1"; }
is "$(q 'SELECT max(version) FROM schema_migrations')" 5 "the fixture is a version 5 store"
# The flow exactly as that sagad stored it (a different source under version 1 is refused).
mkdir -p "$TMP/flows"
q "SELECT source FROM flow_versions WHERE name = 'apply' AND version = 1" >"$TMP/flows/apply.yaml"
export FLOWS_DIR=$TMP/flows
# Its sagas failed at their first step (participants at a closed port): so do the new ones.
export PARTICIPANTS=http://127.0.0.1:1
start_sagad --retention 0 || bail_out "sagad did not start on the version 5 store"

is "$(q 'SELECT max(version) FROM schema_migrations')" 6 "migrated to version 6"
like "$(q "SELECT sql FROM sqlite_master WHERE name = 'saga_history'")" \
	"PRIMARY KEY \(saga_id, seq\)\) WITHOUT ROWID" "the history is keyed (saga_id, seq), WITHOUT ROWID"
is "$(q "SELECT count(*) FROM sqlite_master WHERE name = 'saga_history_saga'")" 0 \
	"... and its saga_id index is gone"
is "$(q "SELECT count(*) || ' ' || max(seq) FROM saga_history")" "12 12" "every history row was kept"

ids=$(q 'SELECT id FROM sagas ORDER BY id')
# same_answers: how many of the old sagas' answers are, byte for byte, the fixture's
same_answers() {
	local id i=0 same=0
	for id in $ids; do
		i=$((i + 1))
		[ "$(api GET "/v1/sagas/$id")" = "$(sed -n "${i}p" "$FIX/store-v5-answers.txt")" ] &&
			same=$((same + 1))
	done
	echo "$same"
}
is "$(same_answers)" 3 "the old sagas' answers are byte for byte those of the sagad that wrote them"
is "$(api GET '/v1/sagas?flow=apply')" "$(sed -n 4p "$FIX/store-v5-answers.txt")" "... and so is the list"

input='{"studentId":"s-9","classId":"c-1","amount":5}'
seqs() { jq -c '[.history[].seq]' <<<"$1"; }
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$input")
is "$HTTP_STATUS:$(jget "$body" .status)" "200:compensated" "a new saga runs on the upgraded store"
new1=$(seqs "$body")
ok "jq -e '. == sort and length == 4 and .[0] > 12' <<<'$new1'" \
	"its history is numbered after the old rows, in order ($new1)"

stop_sagad || bail_out "sagad did not stop"
start_sagad --retention 0 || bail_out "sagad did not start again"
body=$(api POST '/v1/flows/apply/sagas?wait=completion' "$input")
new2=$(seqs "$body")
ok "jq -e --argjson a '$new1' '. == sort and length == 4 and .[0] > (\$a | max)' <<<'$new2'" \
	"after a restart, a saga's history is numbered after every earlier row ($new2)"
is "$(q "SELECT (SELECT value FROM meta WHERE key = 'history_seq') >= (SELECT max(seq) FROM saga_history)")" 1 \
	"the reserved numbers (meta history_seq) cover every row"
is "$(same_answers)" 3 "the old sagas' answers are unchanged after the restart"
done_testing
