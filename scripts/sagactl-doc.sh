#!/bin/sh
# sagactl-doc.sh: writes docs/sagactl.md from sagactl's own help text, so the reference and
# `sagactl help` never disagree. Usage: scripts/sagactl-doc.sh [./sagactl] > docs/sagactl.md
set -eu
SAGACTL=${1:-./sagactl}

cat <<'HEAD'
# sagactl: command reference

`sagactl` is the admin client of `sagad`. This page is generated from its help text by
`scripts/sagactl-doc.sh`; `sagactl help COMMAND` prints the same.

HEAD
echo '```'
"$SAGACTL" --help
echo '```'
for cmd in "flow validate" "flow list" "flow show" "saga start" "saga list" "saga show" \
	   "saga cancel" "saga retry"; do
	printf '\n## sagactl %s\n\n```\n' "$cmd"
	# shellcheck disable=SC2086 # the command's words are meant to split
	"$SAGACTL" help $cmd
	echo '```'
done

cat <<'SAMPLES'

## What the tables look like

Illustrative output (a saga whose payment step kept failing, so `apply` was compensated).
`-o json` prints the API's JSON instead; the field names are those of the admin API.

```
$ sagactl saga list
ID                          FLOW     STATUS       CREATED                   UPDATED
01JB8M0W5T3K9P2Q7R4S6V8X0Y  apply@1  compensated  2026-11-21T18:33:42.123Z  2026-11-21T18:33:45.001Z
01JB8M0W5T3K9P2Q7R4S6V8X0Z  pay@2    running      2026-11-21T18:40:00.000Z  2026-11-21T18:40:01.000Z
next: sagactl saga list --cursor abc123
```

```
$ sagactl saga show 01JB8M0W5T3K9P2Q7R4S6V8X0Y
Saga      01JB8M0W5T3K9P2Q7R4S6V8X0Y
Flow      apply@1
Status    compensated
Created   2026-11-21T18:33:42.123Z
Updated   2026-11-21T18:33:45.001Z
Deadline  2026-11-21T18:34:42.123Z
Error     step "pay": status 503 not in [200, 201]
Input     {"studentName":"Ada","courseId":7}

Steps:
  STEP   STATE        ATTEMPTS            ERROR
  apply  compensated  1 (compensation 1)  -
  pay    failed       2                   status 503 not in [200, 201]
  ship   pending      0                   -

History:
  TIME                      TOOK   STEP   PHASE         ATTEMPT  EVENT      REQUEST                                STATUS  ERROR
  2026-11-21T18:33:42.200Z  112ms  apply  action        1        succeeded  POST http://127.0.0.1:8081/classes     201     -
  2026-11-21T18:33:42.400Z  50ms   pay    action        1        failed     POST http://127.0.0.1:8082/payments    503     status 503 not in [200, 201]
  2026-11-21T18:33:42.600Z  2.0s   pay    action        2        timeout    POST http://127.0.0.1:8082/payments    -       no answer within 2s
  2026-11-21T18:33:44.850Z  50ms   apply  compensation  1        succeeded  PATCH http://127.0.0.1:8081/classes/9  200     -
```
SAMPLES
