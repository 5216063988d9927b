#!/usr/bin/python3
"""bench/kafka_echo.py -- the Kafka participant of the bench's "kafka" mode (bench/run.sh).

    kafka_echo.py --bootstrap SERVERS --count-file FILE [--group G] [--commands T] [--replies T]
                  [-X name=value]...

Consumes DeliveryRequested commands on --commands (default bench-delivery-commands) and answers
each at once on the command's `reply-to` header topic (default --replies,
bench-delivery-events): headers correlation-id (copied) and eventType DeliveryStarted, value
{"eventType":"DeliveryStarted","id":N,"applyId":...,"deliveryStatus":"DeliveryStart"}.
It keeps no state and does not deduplicate (the bench checks counts instead): on SIGTERM it
flushes its producer and writes "commands=N replies=N duplicates=N" to --count-file, where
duplicates counts idempotency-key values seen more than once (0 in a clean run).

Unlike examples/participants/kafka_participant.py (the real delivery service: SQLite, one
record at a time, offsets committed after each reply) this one batches (consume 500 at a time)
so that the participant is not what the bench measures. Needs Debian's python3-confluent-kafka.
"""

import argparse
import json
import signal
import sys

from confluent_kafka import Consumer, Producer

stop = False


def on_term(_sig, _frm):
    global stop
    stop = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--count-file", required=True)
    ap.add_argument("--group", default="bench-delivery")
    ap.add_argument("--commands", default="bench-delivery-commands")
    ap.add_argument("--replies", default="bench-delivery-events")
    ap.add_argument("-X", action="append", default=[], help="librdkafka property name=value")
    a = ap.parse_args()
    extra = dict(x.split("=", 1) for x in a.X)
    common = {"bootstrap.servers": a.bootstrap}
    common.update(extra)
    consumer = Consumer(dict(common, **{
        "group.id": a.group, "auto.offset.reset": "earliest", "enable.auto.commit": True,
        "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}))
    producer = Producer(dict(common, **{"linger.ms": 1, "acks": "all"}))
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    consumer.subscribe([a.commands])
    commands = replies = dups = 0
    seen = set()
    failed = []

    def on_delivery(err, _msg):
        nonlocal replies
        if err is not None:
            failed.append(str(err))
        else:
            replies += 1

    print("ready", flush=True)
    while not stop:
        # wait for one record (at most 100 ms, to see a SIGTERM), then take what else is there
        msgs = consumer.consume(num_messages=1, timeout=0.1)
        if msgs:
            msgs += consumer.consume(num_messages=500, timeout=0)
        for m in msgs:
            if m.error():
                print("consume error: %s" % m.error(), file=sys.stderr, flush=True)
                continue
            commands += 1
            h = dict(m.headers() or [])
            key = h.get("idempotency-key", b"")
            if key in seen:
                dups += 1
            seen.add(key)
            try:
                body = json.loads(m.value() or b"{}")
            except ValueError:
                body = {}
            reply = {"eventType": "DeliveryStarted", "id": commands,
                     "applyId": body.get("applyId"), "deliveryStatus": "DeliveryStart"}
            topic = (h.get("reply-to") or a.replies.encode()).decode()
            producer.produce(topic, value=json.dumps(reply).encode(), key=m.key(),
                             headers=[("correlation-id", h.get("correlation-id", b"")),
                                      ("eventType", b"DeliveryStarted")],
                             on_delivery=on_delivery)
        producer.poll(0)
    consumer.close()
    left = producer.flush(10)
    with open(a.count_file, "w") as f:
        f.write("commands=%d replies=%d duplicates=%d unflushed=%d errors=%d\n"
                % (commands, replies, dups, left, len(failed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
