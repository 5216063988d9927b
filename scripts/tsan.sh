#!/bin/sh
# ThreadSanitizer pass: builds a copy of the tree with clang -fsanitize=thread (glibc's malloc,
# tools/tsan-thrd.c routing librdkafka's C11 threads through pthreads so TSan sees them), runs
# the tests that exercise sagad's threads (the loop, the HTTP client thread, the WAL sync
# thread, librdkafka's), and fails on any test failure or any ThreadSanitizer report from any
# process of the run. Ends with one line "N passed, N failed": each test's TAP results, plus
# one for "no ThreadSanitizer report" (each report counts as a failure).
#
#   scripts/tsan.sh [TEST ...]     e.g. scripts/tsan.sh tests/e2e/20-happy.sh
#
# Reports go to $SAGAD_TSAN_REPORTS (default: a temporary directory, printed when not empty).
# tests/tsan.supp lists what is not ours: races TSan reports inside librdkafka, which Debian
# builds without TSan, so the atomics its threads hand messages over with are invisible to it.
set -u
cd "$(dirname "$0")/.."
top=$(pwd)
DEFAULT="tests/unit/test-http tests/unit/test-store tests/unit/test-engine tests/unit/test-kafka
tests/e2e/11-kafka-mock.sh tests/e2e/20-happy.sh tests/e2e/21-failures.sh tests/e2e/22-retry-timeout.sh
tests/e2e/23-cancel.sh tests/e2e/25-api.sh tests/e2e/30-kafka-steps.sh tests/e2e/37-signals.sh
tests/e2e/45-answer-memory.sh"
TESTS=${*:-$DEFAULT}
command -v clang >/dev/null || ./scripts/install-deps.sh || exit 1
dir=$(mktemp -d)
reports=${SAGAD_TSAN_REPORTS:-$(mktemp -d)}
mkdir -p "$reports"
git ls-files -z | xargs -0 tar -cf - | tar -xf - -C "$dir"
cd "$dir" || exit 1
if ! { ./autogen.sh >/dev/null 2>&1 &&
	CC=clang CFLAGS="-fsanitize=thread -g -O1" LDFLAGS=-fsanitize=thread \
		./configure --quiet --without-mimalloc >build.log 2>&1 &&
	make -j"$(nproc)" >>build.log 2>&1; }; then
	tail -n 30 build.log
	echo "0 passed, 1 failed"
	exit 1
fi
# halt_on_error=0: a report is written and the process goes on (the test's own checks still
# run); every report is a failure below.
TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 suppressions=$dir/tests/tsan.supp log_path=$reports/tsan"
export TSAN_OPTIONS
E2E_READY_S=${E2E_READY_S:-90}
export E2E_READY_S
make -j"$(nproc)" check TESTS="$(echo $TESTS)" >check.log 2>&1
rc=$?
passed=0 failed=0
for t in $TESTS; do
	trs=${t%.sh}.trs
	if [ ! -f "$trs" ]; then
		echo "  ERROR: $t did not run"
		failed=$((failed + 1))
		continue
	fi
	p=$(grep -c '^:test-result: PASS' "$trs" || true)
	f=$(grep -c -E '^:test-result: (FAIL|ERROR|XPASS)' "$trs" || true)
	passed=$((passed + p))
	failed=$((failed + f))
	[ "$f" -gt 0 ] && { echo "---- ${t%.sh}.log"; tail -n 40 "${t%.sh}.log"; }
done
if ls "$reports"/tsan.* >/dev/null 2>&1; then
	echo "ThreadSanitizer reports ($reports):"
	for r in "$reports"/tsan.*; do
		echo "---- $r"
		head -n 40 "$r"
	done
	failed=$((failed + $(ls "$reports"/tsan.* | wc -l)))
else
	passed=$((passed + 1))
	[ -z "${SAGAD_TSAN_REPORTS:-}" ] && rmdir "$reports"
fi
[ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && { tail -n 40 check.log; failed=1; }
cd "$top" && rm -rf "$dir"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
