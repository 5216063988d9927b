#!/bin/bash
# 11-kafka-mock.sh -- sagad-kafka-mock alone (no sagad): the mock cluster runs as its own
# process and real clients reach it over TCP: kcat (produce, consume, metadata) and, when
# Debian's python3-confluent-kafka is installed, an idempotent producer and a consumer group.
# Fault injection through the control API: request errors, leader change, broker down/up.
# Stopping: SIGTERM and SIGINT exit 0, idle, with topics, and with clients connected, and nothing
# is reported on stderr: the same script runs against the ASan+UBSan build in .ci/run (a leak or
# a sanitizer report changes the exit status), and against a ThreadSanitizer build with
# SAGAD_KAFKA_MOCK (tools/tsan-thrd.c says why that needs a shim; docs/reliability.md, "Kafka",
# shows how).
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/e2e/lib/common.sh"
e2e_init
plan 40

PY=/usr/bin/python3   # Debian's python3 (python3-confluent-kafka), not a pyenv shim

# ---- start ------------------------------------------------------------------------------------
start_kafka --brokers 3 orders:1 wide:3
ok $? "sagad-kafka-mock started"
like "$KAFKA_BOOTSTRAP" '^127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+$' \
	"KAFKA_BOOTSTRAP lists three brokers"
# Other, bare instances: stdout's first line is the bootstrap list. mock_stop N SIGNAL [ARGS...]
# starts one with ARGS, waits for its two lines (bootstrap, control URL: the control API is up),
# stops it with SIGNAL and sets MOCK_EXIT; its stderr is in $TMP/mockN.err.
mock_stop() {
	local n=$1 sig=$2 pid
	shift 2
	"${SAGAD_KAFKA_MOCK:-$TOP_SRCDIR/sagad-kafka-mock}" "$@" >"$TMP/mock$n.out" 2>"$TMP/mock$n.err" &
	pid=$!
	e2e_track_pid "$pid"
	wait_until 60 eval '[ "$(grep -c . "$TMP/mock$n.out")" -ge 2 ]'
	kill "-$sig" "$pid"
	wait "$pid"
	MOCK_EXIT=$?
	_e2e_untrack_pid "$pid"
}
# what a sanitizer or a crash writes on stderr
sanitizer_lines() { cat "$@" | grep -cE 'Sanitizer|runtime error|DEADLYSIGNAL|level=fatal'; }
mock_stop 2 TERM --brokers 1
like "$(head -n 1 "$TMP/mock2.out")" '^127\.0\.0\.1:[0-9]+$' "stdout's first line is the bootstrap server"
is "$MOCK_EXIT" 0 "a second instance runs beside the first and exits 0 on SIGTERM"
# With a topic the mock cluster's thread has allocated partitions that its destroy frees: that
# is where a ThreadSanitizer build without tools/tsan-thrd.c died with SEGV.
mock_stop 3 TERM --brokers 3 --topic t3:3
is "$MOCK_EXIT:$(grep -c event=stopped "$TMP/mock3.err")" 0:1 "3 brokers and a topic: SIGTERM, exit 0, event=stopped"
mock_stop 4 INT --brokers 2 --topic t4:2
is "$MOCK_EXIT:$(grep -c 'event=stopping signal=INT' "$TMP/mock4.err")" 0:1 "SIGINT: exit 0"
is "$(sanitizer_lines "$TMP"/mock[234].err)" 0 "no sanitizer report, crash or fatal on their stderr"
body=$(kafka_ctl GET /)
is "$HTTP_STATUS $(jget "$body" '"\(.bootstrap) \(.brokers)"')" "200 $KAFKA_BOOTSTRAP [1,2,3]" \
	"GET / answers the bootstrap servers and broker ids"

# ---- produce and consume ----------------------------------------------------------------------
kafka_produce orders k1 '{"n":1}' traceparent=00-abc-def-01 kind=test
ok $? "kcat produced a message with headers"
msg=$(kafka_consume orders 1 30)
is "$(jget "$msg" '"\(.key) \(.payload) \(.headers.traceparent) \(.headers.kind)"')" \
	'k1 {"n":1} 00-abc-def-01 test' "kcat consumed it: key, payload and headers"
kafka_produce orders k2 $'two\nlines'
is "$(kafka_consume orders | tail -n 1 | jq -r .payload)" $'two\nlines' \
	"a value with a newline stays one message"

# ---- topics -----------------------------------------------------------------------------------
is "$(kafka_partitions wide)" 3 "--topic wide:3 has 3 partitions"
kafka_create_topic three 3
ok $? "POST /topics creates a topic"
is "$(kafka_partitions three)" 3 "it has 3 partitions"
kafka_create_topic three 3
is "$HTTP_STATUS $(jget "$API_BODY" .error.code)" "409 TOPIC_ALREADY_EXISTS" "creating it again: 409"
kafka_produce auto1 k v
is "$?:$(kafka_partitions auto1)" "0:4" "producing to an unknown topic auto-creates it with 4 partitions"

# ---- request errors ---------------------------------------------------------------------------
kafka_ctl POST /errors '{"api":"Produce","errors":["TOPIC_AUTHORIZATION_FAILED"]}' >/dev/null
is "$HTTP_STATUS" 200 "POST /errors pushes a Produce error"
kafka_produce orders k3 v3 2>"$TMP/kcat.err"
rc=$?
ok '[ "$rc" != 0 ] && grep -q "Topic authorization failed" "$TMP/kcat.err"' \
	"the next produce fails with that (non-retriable) error"
kafka_produce orders k4 v4
ok $? "the one after it is delivered (the error was consumed)"
kafka_ctl POST /errors '{"api":"produce","errors":["NOT_LEADER_FOR_PARTITION","REQUEST_TIMED_OUT"]}' >/dev/null
kafka_produce orders k5 v5
ok $? "retriable Produce errors: kcat retries and delivers"
is "$(kafka_consume orders | jq -r .key | tr '\n' ' ')" "k1 k2 k4 k5 " \
	"the log holds k1 k2 k4 k5: no lost, no duplicated message"
body=$(kafka_ctl POST /errors '{"api":"Produc","errors":["NOT_LEADER_FOR_PARTITION"]}')
is "$HTTP_STATUS $(jget "$body" '.error.valid | index("Produce") != null')" "400 true" \
	"an unknown API name: 400 listing the valid ones"
body=$(kafka_ctl POST /errors '{"api":"Fetch","errors":["NOT_AN_ERROR"]}')
is "$HTTP_STATUS $(jget "$body" '.error.valid | index("NOT_LEADER_FOR_PARTITION") != null')" "400 true" \
	"an unknown error name: 400 listing the valid ones"

# Per-broker errors can be counted: push one to the leader, produce, see it consumed.
leader=$(kafka_leader orders 0)
kafka_ctl POST /errors "{\"api\":\"Produce\",\"broker\":$leader,\"errors\":[\"NOT_ENOUGH_REPLICAS\"],\"rtt_ms\":50}" >/dev/null
pending1=$(jget "$(kafka_ctl GET "/brokers/$leader/errors/Produce")" .pending)
kafka_produce orders k6 v6
pending2=$(jget "$(kafka_ctl GET "/brokers/$leader/errors/Produce")" .pending)
is "$pending1 $pending2" "1 0" "a per-broker error is pending, then used by the next produce"

# ---- leader change ----------------------------------------------------------------------------
new=$(( leader % 3 + 1 ))
kafka_ctl POST /partitions/leader "{\"topic\":\"orders\",\"partition\":0,\"broker\":$new}" >/dev/null
is "$HTTP_STATUS $(kafka_leader orders 0)" "200 $new" "POST /partitions/leader moves the leader"
kafka_produce orders k7 v7
ok $? "a produce after the leader change is delivered"
is "$(kafka_consume orders | tail -n 1 | jq -r '"\(.key) \(.broker)"')" "k7 $new" \
	"and is fetched from the new leader"

# ---- broker down / up -------------------------------------------------------------------------
kafka_create_topic downt 1
leader=$(kafka_leader downt 0)
body=$(kafka_ctl POST "/brokers/$leader/down")
is "$HTTP_STATUS $(jget "$body" ".down | tostring")" "200 [$leader]" "POST /brokers/{id}/down"
kafka_produce -X message.timeout.ms=20000 -X reconnect.backoff.max.ms=300 downt kd vd \
	>"$TMP/kcat-down.out" 2>&1 &
kpid=$!
e2e_track_pid "$kpid"
sleep 1.5
ok 'kill -0 "$kpid"' "while the leader is down the producer waits (no delivery report)"
kafka_ctl POST "/brokers/$leader/up" >/dev/null
wait "$kpid"
rc=$?
_e2e_untrack_pid "$kpid"
is "$rc $(kafka_consume downt | jq -r .key)" "0 kd" "after up it is delivered, once"

# ---- idempotent producer and consumer group (librdkafka through Python) -------------------------
if "$PY" -c 'import confluent_kafka' 2>/dev/null; then
	out=$("$PY" - "$KAFKA_BOOTSTRAP" "$KAFKA_CONTROL" <<'PYEOF' 2>"$TMP/py.err"
import json, sys, time, urllib.request
from confluent_kafka import Consumer, Producer, TopicPartition

bootstrap, control = sys.argv[1], sys.argv[2]
def ctl(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(control + path, data=data, method=method)
    return json.loads(urllib.request.urlopen(req, timeout=30).read())

ctl('POST', '/topics', {'name': 'idem', 'partitions': 1})
p = Producer({'bootstrap.servers': bootstrap, 'enable.idempotence': True,
              'message.timeout.ms': 20000, 'reconnect.backoff.max.ms': 300})
md = p.list_topics('idem', timeout=30)
leader = md.topics['idem'].partitions[0].leader
dr = []
cb = lambda err, msg: dr.append((str(err) if err else None, msg.offset()))
p.produce('idem', key='a', value='0', on_delivery=cb)
p.flush(30)
ok_before = dr == [(None, 0)]
ctl('POST', '/brokers/%d/down' % leader)
for i in (1, 2, 3):
    p.produce('idem', key='a', value=str(i), on_delivery=cb)
t = time.time()
while time.time() - t < 1.5:
    p.poll(0.1)
while_down = len(dr) - 1
ctl('POST', '/brokers/%d/up' % leader)
p.flush(60)

c = Consumer({'bootstrap.servers': bootstrap, 'group.id': 'e2e', 'auto.offset.reset': 'earliest',
              'enable.auto.commit': False, 'session.timeout.ms': 6000})
c.subscribe(['idem'])
values, t = [], time.time()
while len(values) < 4 and time.time() - t < 60:
    m = c.poll(0.2)
    if m is not None and not m.error():
        values.append(m.value().decode())
c.commit(asynchronous=False)
committed = c.committed([TopicPartition('idem', 0)], timeout=30)[0].offset
c.close()
print(json.dumps({'ok_before': ok_before, 'while_down': while_down,
                  'delivered': [o for e, o in dr if e is None], 'values': values,
                  'committed': committed}))
PYEOF
	)
	is "$(jget "$out" '"\(.ok_before) \(.while_down)"')" "true 0" \
		"idempotent producer: delivered, then nothing while the leader is down"
	is "$(jget "$out" '.delivered | tostring')" "[0,1,2,3]" "after up: all delivered, in order, once"
	is "$(jget "$out" '"\(.values | join(",")) \(.committed)"')" "0,1,2,3 4" \
		"a consumer group reads them and commits offset 4"
	[ -s "$TMP/py.err" ] && grep -v '^%' "$TMP/py.err" | tail -n 5 | diag_stdin
else
	skip 3 "$PY has no confluent_kafka (Debian package python3-confluent-kafka)"
fi

# ---- other controls ---------------------------------------------------------------------------
kafka_ctl POST /coordinator '{"type":"group","key":"e2e","broker":2}' >/dev/null
is "$HTTP_STATUS" 200 "POST /coordinator"
kafka_ctl POST /rtt '{"broker":1,"rtt_ms":20}' >/dev/null
is "$HTTP_STATUS $(jget "$(kafka_ctl GET /)" '.rtt_ms["1"]')" "200 20" "POST /rtt is shown by GET /"
kafka_ctl POST /brokers/7/down >/dev/null
is "$HTTP_STATUS" 404 "an unknown broker: 404"

# ---- stop -------------------------------------------------------------------------------------
# With a client connected: a consumer in a group (coordinator, fetch sessions on the leaders);
# the mock's brokers still hold its connections when SIGTERM comes.
kafka_produce wide kstop vstop
kcat -q -u -b "$KAFKA_BOOTSTRAP" -G stopgrp -X auto.offset.reset=earliest -f '%k\n' wide >"$TMP/kcat-stop.out" 2>&1 &
kc=$!
e2e_track_pid "$kc"
wait_until 60 grep -q kstop "$TMP/kcat-stop.out"
ok $? "a group consumer is connected and has read a message"
stop_kafka
is "$?:$KAFKA_EXIT" "0:0" "SIGTERM with a client connected: the mock stops and exits 0"
ok 'grep -q "event=stopped" "$TMP/kafka.log"' "it logged its shutdown"
is "$(sanitizer_lines "$TMP/kafka.log")" 0 "no sanitizer report, crash or fatal in its log"
kill "$kc" 2>/dev/null
wait "$kc" 2>/dev/null
_e2e_untrack_pid "$kc"

done_testing
