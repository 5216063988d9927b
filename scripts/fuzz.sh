#!/bin/sh
# Builds the libFuzzer targets (tests/fuzz/fuzz-*: clang, ASan, UBSan) in a copy of the tree
# under .fuzz/build, then runs each for SECONDS (default 30) and prints one line per target:
#   fuzz dsl: 812345 executions in 30 s, 0 crashes, corpus 1234 inputs
# and a closing "N passed, N failed" line (a target passes when it found no crash). Exits non-zero
# on any crash or build failure. The growing corpus stays in .fuzz/corpus/<target>/ between
# runs; crashing inputs land in .fuzz/artifacts/<target>/: minimise one with
#   .fuzz/build/tests/fuzz/fuzz-TARGET -minimize_crash=1 -runs=100000 FILE
# fix the bug, and keep the input as tests/fuzz/regressions/TARGET/NAME (make check replays it).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      targets: dsl expr api reply (default: all)
#   SAGAD_FUZZ_JOBS=2 scripts/fuzz.sh 3600     a long run, 2 processes per target
# The libFuzzer flags of a run can be extended with SAGAD_FUZZ_FLAGS (e.g. -max_len=65536).
set -u
cd "$(dirname "$0")/.."
top=$(pwd)
secs=${1:-30}
[ "$#" -gt 0 ] && shift
targets=${*:-dsl expr api reply}
work=${SAGAD_FUZZ_DIR:-$top/.fuzz}
jobs=${SAGAD_FUZZ_JOBS:-1}

case "$secs" in
''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, got \"$secs\"" >&2; exit 2 ;;
esac
if ! command -v clang >/dev/null 2>&1; then
	echo "fuzz.sh: clang is not installed; run ./scripts/install-deps.sh (as root)" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

# The seeds of each target (besides tests/fuzz/corpus/TARGET and tests/fuzz/regressions/TARGET;
# keep in line with FUZZ_SEEDS in Makefile.am).
extra_seeds() {
	case "$1" in
	dsl) echo "flows tests/fixtures/dsl tests/fuzz/flows" ;;
	*) echo "" ;;
	esac
}

# Build in a copy, so the developer's own (gcc) build stays as it is: tracked and new files,
# copied only when their content changed (the copy then gets the current time, so make rebuilds
# exactly what changed, even a file edited while the last run was building).
mkdir -p "$work/build"
git ls-files -co --exclude-standard | while IFS= read -r f; do
	[ -f "$f" ] || continue
	if ! cmp -s "$f" "$work/build/$f"; then
		mkdir -p "$work/build/$(dirname "$f")" && cp "$f" "$work/build/$f" || exit 1
	fi
done || exit 1
(
	cd "$work/build" || exit 1
	if [ ! -f Makefile ] || ! grep -q 'enable-fuzzing' config.status 2>/dev/null; then
		{ [ -x configure ] || ./autogen.sh >/dev/null 2>&1; } &&
		./configure --quiet CC=clang --enable-fuzzing >configure.out 2>&1 ||
		{ cat configure.out; exit 1; }
	fi
	bins=""
	for t in $targets; do bins="$bins tests/fuzz/fuzz-$t"; done
	# shellcheck disable=SC2086
	make -j"$(nproc)" $bins >make.out 2>&1 || { tail -n 40 make.out; exit 1; }
) || { echo "fuzz.sh: the fuzzing build failed"; echo "0 passed, 1 failed"; exit 1; }

passed=0 failed=0
for t in $targets; do
	bin="$work/build/tests/fuzz/fuzz-$t"
	corpus="$work/corpus/$t"
	art="$work/artifacts/$t"
	log="$work/$t.log"
	mkdir -p "$corpus" "$art"
	seeds="$top/tests/fuzz/corpus/$t"
	[ -d "$top/tests/fuzz/regressions/$t" ] && seeds="$seeds $top/tests/fuzz/regressions/$t"
	for s in $(extra_seeds "$t"); do seeds="$seeds $top/$s"; done
	before=$(find "$art" -type f | wc -l)
	par=""
	[ -f "$top/tests/fuzz/$t.dict" ] && par="-dict=$top/tests/fuzz/$t.dict"
	[ "$jobs" -gt 1 ] && par="$par -jobs=$jobs -workers=$jobs"
	# -timeout: an input taking 10 s is a hang; -rss_limit_mb: a leak or a blow-up is a crash.
	# shellcheck disable=SC2086
	(cd "$work" && rm -f fuzz-*.log &&
	ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$art/" $par ${SAGAD_FUZZ_FLAGS:-} \
		"$corpus" $seeds >"$log" 2>&1)
	rc=$?
	[ "$jobs" -gt 1 ] && cat "$work"/fuzz-*.log >>"$log" 2>/dev/null
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{s += $1} END {print s + 0}')
	crashes=$(($(find "$art" -type f | wc -l) - before))
	size=$(find "$corpus" -type f | wc -l)
	if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
	echo "fuzz $t: $execs executions in $secs s, $crashes crashes, corpus $size inputs"
	if [ "$crashes" -eq 0 ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		grep -E -A 30 '^==[0-9]+==ERROR|runtime error|fuzz check failed|deadly signal' "$log" | head -n 60
		echo "fuzz $t: inputs in $art, whole log in $log"
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
