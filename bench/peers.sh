#!/usr/bin/env bash
# bench/peers.sh -- sagad side by side with the peers (Restate, DBOS on PostgreSQL, the plain
# in-memory Node loop, the nginx ceiling), all measured in ONE run of the shared peers harness
# (/work/shared/bench/peers/run-all.sh, see its README), with sagad as its external
# orchestrator (EXT_NAME/EXT_URL/EXT_START).
#
#   bench/peers.sh [--quick] [--peers "plain restate dbos"] [--modes "happy fail"] [--concs "1 16 64"]
#                  [--reps N] [--no-build] [--sagad PATH] [--sagad-args "ARGS"] [--out DIR]
#                  [--harness DIR] [--workdir DIR]
#
# What it does:
#   1. builds sagad (scripts/build.sh; --no-build or --sagad PATH to use a binary as it is);
#   2. copies the harness (default $PEERS_HARNESS or /work/shared/bench/peers) into a work folder
#      (default $PEERS_WORKDIR or /var/tmp/sagad-peers): the harness writes node_modules/, run/
#      and results/ beside itself, and the shared copy stays untouched;
#   3. installs what the harness needs with its own install.sh when missing (Debian packages
#      nginx-light wrk postgresql-15 curl procps; npm ci of its pinned package-lock.json, which
#      brings Restate's server binary as the npm package @restatedev/restate-server);
#   4. runs run-all.sh with PEERS and EXT_NAME=sagad, EXT_URL=http://127.0.0.1:$PORT/v1/flows/
#      apply/sagas (PORT: --port, default 7000) and EXT_START starting sagad exactly as shipped
#      (WAL, synchronous=FULL, --log-level warn, full saga object in each answer), on a fresh
#      database per variant in the harness's run/ folder, with the bench flow bench/flows/apply.yaml
#      (run-all sets PARTICIPANTS, which the flow reads);
#   5. copies the harness's results folder to --out (default bench/results/peers-<UTC time>/)
#      and adds ratios.md: sagad's median sagas/s and p50 divided by each peer's in the same run.
# The harness runs everything as root on 127.0.0.1 and stops what it started by PID.
# Exit status: the harness's (0 when it completed), 1 when a peer or sagad failed a check.
set -uo pipefail

# The whole script is one compound command, read by bash before it runs: editing this file
# during a 35-minute run cannot change what the run does.
{
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOP="$(cd "$HERE/.." && pwd)"

HARNESS=${PEERS_HARNESS:-/work/shared/bench/peers}
WORK=${PEERS_WORKDIR:-/var/tmp/sagad-peers}
PEER_LIST="plain restate dbos"
MODES=""
CONCS=""
REPS=""
QUICK=0
BUILD=1
SAGAD_BIN=""
SAGAD_ARGS=""
OUT=""
PORT=7000

usage() { sed -n '3,/^set -uo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1 ;;
	--peers) PEER_LIST=$2; shift ;;
	--modes) MODES=$2; shift ;;
	--concs) CONCS=$2; shift ;;
	--reps) REPS=$2; shift ;;
	--no-build) BUILD=0 ;;
	--sagad) SAGAD_BIN=$2; shift ;;
	--sagad-args) SAGAD_ARGS=$2; shift ;;
	--out) OUT=$2; shift ;;
	--port) PORT=$2; shift ;;
	--harness) HARNESS=$2; shift ;;
	--workdir) WORK=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "peers.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done

[ -x "$HARNESS/run-all.sh" ] || { echo "peers.sh: no harness at $HARNESS (set PEERS_HARNESS or --harness)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "peers.sh: the harness runs as root (apt, PostgreSQL as user postgres)" >&2; exit 1; }
for c in node npm; do
	command -v "$c" >/dev/null || { echo "peers.sh: the harness needs $c (Node 20, as in its README; Debian: apt-get install nodejs npm)" >&2; exit 1; }
done

if [ "$BUILD" = 1 ] && [ -z "$SAGAD_BIN" ]; then
	echo "== building sagad (scripts/build.sh)"
	"$TOP/scripts/build.sh" >/dev/null || { echo "peers.sh: build failed" >&2; exit 1; }
fi
SAGAD_BIN=${SAGAD_BIN:-$TOP/sagad}
SAGAD_BIN="$(cd "$(dirname "$SAGAD_BIN")" && pwd)/$(basename "$SAGAD_BIN")"
[ -x "$SAGAD_BIN" ] || { echo "peers.sh: $SAGAD_BIN is not built" >&2; exit 1; }
"$SAGAD_BIN" --flows "$HERE/flows" --check >/dev/null || { echo "peers.sh: bench/flows does not load" >&2; exit 1; }

# 2. a private copy of the harness (its scripts and lock file; node_modules/ stays between runs)
mkdir -p "$WORK" || exit 1
(cd "$HARNESS" && tar --exclude=./node_modules --exclude=./run --exclude=./results -cf - .) | (cd "$WORK" && tar -xf -) || exit 1
chmod -R u+w "$WORK"
if ! cmp -s "$HARNESS/package-lock.json" "$WORK/.installed-lock.json" || [ ! -d "$WORK/node_modules/@restatedev/restate-sdk" ]; then
	echo "== installing the harness's dependencies (its install.sh: apt + npm ci)"
	(cd "$WORK" && bash install.sh) || { echo "peers.sh: install.sh failed" >&2; exit 1; }
	cp "$HARNESS/package-lock.json" "$WORK/.installed-lock.json"
fi

# 4. run-all.sh with sagad as the external orchestrator
case " $PEER_LIST " in *" sagad "*) echo "peers.sh: sagad is added by itself; list only the peers" >&2; exit 2 ;; esac
env_args=(PEERS="$PEER_LIST" EXT_NAME=sagad EXT_URL="http://127.0.0.1:$PORT/v1/flows/apply/sagas")
# shellcheck disable=SC2016  # $MODE and $PARTICIPANTS are expanded by run-all's bash -c
env_args+=(EXT_START="db=\"$WORK/run/sagad-\$MODE.db\"; rm -f \"\$db\" \"\$db-wal\" \"\$db-shm\"; exec \"$SAGAD_BIN\" --flows \"$HERE/flows\" --db \"\$db\" --listen 127.0.0.1:$PORT --log-level warn $SAGAD_ARGS")
[ "$QUICK" = 1 ] && env_args+=(QUICK=1)
[ -n "$MODES" ] && env_args+=(MODES="$MODES")
[ -n "$CONCS" ] && env_args+=(CONCS="$CONCS")
[ -n "$REPS" ] && env_args+=(REPS="$REPS")
echo "== sagad: $SAGAD_BIN ($("$SAGAD_BIN" --version 2>&1 | head -1), tree $(git -C "$TOP" describe --always --dirty 2>/dev/null || echo no-git))"
env "${env_args[@]}" bash "$WORK/run-all.sh"
rc=$?

# 5. results beside the project's other bench results, plus the ratios
res=$(readlink -f "$WORK/results/latest")
[ -d "$res" ] || { echo "peers.sh: the harness left no results" >&2; exit 1; }
: "${OUT:=$HERE/results/peers-$(basename "$res")}"
mkdir -p "$OUT" && cp -r "$res"/. "$OUT"/ || exit 1
{
	echo "sagad: $SAGAD_BIN sha256 $(sha256sum "$SAGAD_BIN" | cut -c1-12), tree $(git -C "$TOP" describe --always --dirty 2>/dev/null || echo no-git)"
	echo "sagad settings: shipped defaults (SQLite WAL, synchronous=FULL), --log-level warn${SAGAD_ARGS:+, $SAGAD_ARGS}; database in $WORK/run"
} >>"$OUT/env.txt"
node "$HERE/peers-ratios.mjs" "$OUT" sagad >"$OUT/ratios.md" || rc=1
cat "$OUT/ratios.md"
if grep -q '"ok":false' "$OUT/verify.jsonl" 2>/dev/null || grep -q 'PEER FAILED' "$OUT/run-all.log" 2>/dev/null; then
	echo "peers.sh: a verification failed or a peer did not start (see $OUT/run-all.log)"
	rc=1
fi
echo "== results in $OUT"
exit "$rc"
}
