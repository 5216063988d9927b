#!/bin/sh
# The test command: installs what is missing, builds, runs every unit and end-to-end test
# (make check), and ends with one line "N passed, N failed". Exits non-zero on any failure.
# Extra arguments go to ./configure: ./scripts/test.sh --enable-sanitizers runs everything
# against an ASan+UBSan build.
set -u
cd "$(dirname "$0")/.."
./scripts/install-deps.sh || exit 1
./scripts/build.sh "$@" || { echo "0 passed, 1 failed"; exit 1; }
make -j"$(nproc)" check >/tmp/sagad-check.$$ 2>&1
rc=$?
grep -E '^(PASS|FAIL|XPASS|ERROR|SKIP):' /tmp/sagad-check.$$ | sed 's/^/  /' | grep -v '^  PASS' || true
passed=0 failed=0
for trs in $(find tests -name '*.trs' 2>/dev/null); do
	p=$(grep -c '^:test-result: PASS' "$trs" || true)
	f=$(grep -c -E '^:test-result: (FAIL|ERROR|XPASS)' "$trs" || true)
	passed=$((passed + p))
	failed=$((failed + f))
done
if [ "$rc" -ne 0 ]; then
	tail -n 40 /tmp/sagad-check.$$
	for log in $(grep -l -E '^:test-result: (FAIL|ERROR)' $(find tests -name '*.trs') 2>/dev/null); do
		echo "---- ${log%.trs}.log"
		tail -n 60 "${log%.trs}.log"
	done
	[ "$failed" -eq 0 ] && failed=1
fi
rm -f /tmp/sagad-check.$$
# SAGAD_TEST_COUNTS=FILE: also write "passed failed" there (.ci/run adds up several runs).
[ -n "${SAGAD_TEST_COUNTS:-}" ] && echo "$passed $failed" >"$SAGAD_TEST_COUNTS"
if [ "${SAGAD_TEST_SUMMARY:-1}" = 1 ]; then
	echo "$passed passed, $failed failed"
else
	echo "this build: $passed tests passed and $failed failed"
fi
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
