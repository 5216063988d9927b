#!/bin/sh
# scripts/soak.sh -- the fault-injection loops of docs/reliability.md, run longer than CI does:
# random kill -9 under load (24-crash.sh part 2), power cuts (33-powerloss.sh), store faults
# (34-store-faults.sh), clock jumps (35) and misbehaving participants (38), round after round
# until SOAK_SECONDS (default 600) have passed. Each round uses a fresh temporary directory.
#
#   SOAK_SECONDS=3600 ./scripts/soak.sh          # an hour
#   SOAK_TESTS="24 33" ./scripts/soak.sh         # only these
#   SOAK_ROUNDS_PER_TEST=5 (default 3)           # kills / power cuts per run of 24 / 33
#
# Logs of failed runs are kept in $SOAK_LOGS (default /tmp/sagad-soak.<pid>). Ends with one line
# "N passed, N failed" (test runs) and exits non-zero if any run failed.
set -u
cd "$(dirname "$0")/.." || exit 2
TOP=$(pwd)
SECONDS_LEFT=${SOAK_SECONDS:-600}
TESTS=${SOAK_TESTS:-"24 33 34 35 38"}
ROUNDS=${SOAK_ROUNDS_PER_TEST:-3}
LOGS=${SOAK_LOGS:-/tmp/sagad-soak.$$}

./scripts/build.sh || exit 1
make -j2 tests/fault/faultvfs.so tests/fault/faultvfs-revert >/dev/null || exit 1
mkdir -p "$LOGS"
export TOP_SRCDIR="$TOP" SAGAD="$TOP/sagad" SAGACTL="$TOP/sagactl" \
	SAGAD_KAFKA_MOCK="$TOP/sagad-kafka-mock" FAULTVFS_SO="$TOP/tests/fault/faultvfs.so" \
	FAULTVFS_REVERT="$TOP/tests/fault/faultvfs-revert" \
	CRASH_LOAD_ONLY=1 CRASH_LOAD_ROUNDS="$ROUNDS" POWERLOSS_ROUNDS="$ROUNDS" E2E_TIMEOUT=900
end=$(( $(date +%s) + SECONDS_LEFT ))
passed=0 failed=0 round=0
while [ "$(date +%s)" -lt "$end" ]; do
	round=$((round + 1))
	for n in $TESTS; do
		[ "$(date +%s)" -lt "$end" ] || break
		t=$(ls tests/e2e/"$n"-*.sh 2>/dev/null | head -1)
		[ -n "$t" ] || { echo "soak: no test $n" >&2; exit 2; }
		log="$LOGS/round$round-$(basename "$t" .sh).log"
		start=$(date +%s)
		if bash "$t" >"$log" 2>&1; then
			passed=$((passed + 1))
			echo "soak: round $round $(basename "$t"): ok ($(grep -c '^ok ' "$log") checks, $(( $(date +%s) - start )) s)"
			rm -f "$log"
		else
			failed=$((failed + 1))
			echo "soak: round $round $(basename "$t"): FAILED, log kept: $log"
			grep '^not ok' "$log" | head -5 | sed 's/^/soak:   /'
		fi
	done
done
echo "soak: $round rounds in ${SECONDS_LEFT} s; logs of failures in $LOGS"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
