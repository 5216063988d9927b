#!/usr/bin/python3
"""kafka_tool.py -- a small Kafka client for the end-to-end tests (Debian's
python3-confluent-kafka, hence /usr/bin/python3).

  kafka_tool.py produce --bootstrap B --topic T [--key K] [--header NAME=VALUE]...
                        [--partition N] VALUE|-
      Produces one message (VALUE '-' = read stdin; with --lines, one message per stdin
      line) with an idempotent producer, waits for the broker's ack and prints
      {"topic","partition","offset"} per message.

  kafka_tool.py consume --bootstrap B --topic T[,T2] [--group G] [--count N] [--timeout S]
                        [--from-beginning] [--where PATH=VALUE]...
      Prints one JSON line per message: {"topic","partition","offset","key","headers",
      "timestamp","value"} (value parsed as JSON when it parses, else a string).
      Without --group the partitions are assigned directly (no group, nothing committed);
      with --group the consumer joins G and commits what it printed.  --where keeps only
      messages whose body PATH (dotted) or "header:NAME" equals VALUE (a JSON literal or a
      plain string); --count counts kept messages.  Stops after --count messages (exit 0),
      or at --timeout seconds (default 10): exit 0 if no --count was given, else 2.

  kafka_tool.py wait-group-lag --bootstrap B --group G --topic T[,T2] [--timeout S]
      Waits until group G has committed every partition of T up to its end (lag 0).
      Prints {"lag": N, "partitions": [...]}; exit 0 at lag 0, 1 on timeout.

  kafka_tool.py create-topic --bootstrap B --topic T [--partitions N]
      Creates T (admin API); an existing topic is not an error.

Exit 1 on usage or Kafka errors (message on stderr).
"""

import argparse
import json
import sys
import time
import uuid

from confluent_kafka import (Consumer, KafkaError, KafkaException, Producer, TopicPartition,
                             OFFSET_BEGINNING, OFFSET_END)


def dumps(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def die(msg, code=1):
    sys.stderr.write("kafka_tool: %s\n" % msg)
    sys.exit(code)


def topics_of(s):
    return [t for t in s.split(",") if t]


def decode(b):
    if b is None:
        return None
    return b.decode("utf-8", "replace")


def record(msg):
    text = decode(msg.value())
    value = text
    if text is not None:
        try:
            value = json.loads(text)
        except ValueError:
            pass
    headers = {}
    for k, v in msg.headers() or []:
        headers[k] = decode(v)
    ts_type, ts = msg.timestamp()
    return {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
            "key": decode(msg.key()), "headers": headers,
            "timestamp": ts if ts_type else None, "value": value}


# ---------------------------------------------------------------------------------------------

def cmd_produce(a):
    p = Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True,
                  "linger.ms": 0, "client.id": "kafka_tool"})
    headers = []
    for h in a.header or []:
        if "=" not in h:
            die("--header wants NAME=VALUE, not %r" % h)
        n, _, v = h.partition("=")
        headers.append((n, v))
    if a.value == "-":
        data = sys.stdin.read()
        values = [l for l in data.splitlines() if l.strip()] if a.lines else [data]
    else:
        values = [a.value]
    results = []
    errors = []

    def on_delivery(err, m):
        if err is not None:
            errors.append(str(err))
        else:
            results.append({"topic": m.topic(), "partition": m.partition(),
                            "offset": m.offset()})

    for v in values:
        kw = {"value": v.encode("utf-8"), "headers": headers, "on_delivery": on_delivery}
        if a.key is not None:
            kw["key"] = a.key.encode("utf-8")
        if a.partition is not None:
            kw["partition"] = a.partition
        p.produce(a.topic, **kw)
        p.poll(0)
    left = p.flush(a.timeout)
    for r in results:
        print(dumps(r))
    if errors or left:
        die("produce failed: %s" % ("; ".join(errors) or "%d not acknowledged" % left))
    return 0


def get_path(rec, path):
    if path.startswith("header:"):
        name = path[7:].lower()
        for k, v in rec["headers"].items():
            if k.lower() == name:
                return True, v
        return False, None
    cur = rec["value"]
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return False, None
    return True, cur


def parse_where(items):
    out = []
    for w in items or []:
        if "=" not in w:
            die("--where wants PATH=VALUE, not %r" % w)
        path, _, v = w.partition("=")
        try:
            lit = json.loads(v)
        except ValueError:
            lit = v
        out.append((path, v, lit))
    return out


def matches(rec, where):
    for path, text, lit in where:
        ok, v = get_path(rec, path)
        if not ok or (v != lit and v != text and not (
                not isinstance(v, (dict, list)) and str(v) == text)):
            return False
    return True


def wait_partitions(c, topics, deadline):
    """All partitions of topics, waiting for the topics to exist."""
    while True:
        md = c.list_topics(timeout=max(0.5, min(5, deadline - time.monotonic())))
        parts = []
        missing = []
        for t in topics:
            tm = md.topics.get(t)
            if tm is None or tm.error is not None or not tm.partitions:
                missing.append(t)
            else:
                parts += [(t, p) for p in sorted(tm.partitions)]
        if not missing:
            return parts
        if time.monotonic() >= deadline:
            die("topic(s) not found: %s" % ", ".join(missing), 2)
        time.sleep(0.2)


def cmd_consume(a):
    deadline = time.monotonic() + a.timeout
    topics = topics_of(a.topic)
    where = parse_where(a.where)
    conf = {"bootstrap.servers": a.bootstrap, "client.id": "kafka_tool",
            "group.id": a.group or "kafka_tool-%s" % uuid.uuid4().hex,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if a.from_beginning else "latest",
            "enable.partition.eof": False}
    c = Consumer(conf)
    if a.group:
        c.subscribe(topics)
    else:
        parts = wait_partitions(c, topics, deadline)
        start = OFFSET_BEGINNING if a.from_beginning else OFFSET_END
        c.assign([TopicPartition(t, p, start) for t, p in parts])
    n = 0
    try:
        while a.count is None or n < a.count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            msg = c.poll(min(0.5, left))
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() not in (KafkaError._PARTITION_EOF,):
                    sys.stderr.write("kafka_tool: %s\n" % msg.error())
                continue
            rec = record(msg)
            if a.group:
                c.commit(message=msg, asynchronous=False)
            if not matches(rec, where):
                continue
            print(dumps(rec), flush=True)
            n += 1
    finally:
        c.close()
    if a.count is not None and n < a.count:
        sys.stderr.write("kafka_tool: timeout: %d of %d message(s)\n" % (n, a.count))
        return 2
    return 0


def group_lag(c, parts):
    committed = c.committed([TopicPartition(t, p) for t, p in parts], timeout=5)
    out = []
    total = 0
    for tp in committed:
        lo, hi = c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=5)
        off = tp.offset if tp.offset >= 0 else lo     # nothing committed: from the start
        lag = max(0, hi - off)
        total += lag
        out.append({"topic": tp.topic, "partition": tp.partition, "committed": tp.offset,
                    "end": hi, "lag": lag})
    return total, out


def cmd_wait_group_lag(a):
    deadline = time.monotonic() + a.timeout
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group,
                  "enable.auto.commit": False, "client.id": "kafka_tool"})
    try:
        parts = wait_partitions(c, topics_of(a.topic), deadline)
        while True:
            try:
                total, out = group_lag(c, parts)
            except KafkaException as e:
                total, out = -1, [{"error": str(e)}]
            if total == 0 or time.monotonic() >= deadline:
                print(dumps({"lag": total, "partitions": out}))
                return 0 if total == 0 else 1
            time.sleep(0.2)
    finally:
        c.close()


def cmd_create_topic(a):
    from confluent_kafka.admin import AdminClient, NewTopic
    ad = AdminClient({"bootstrap.servers": a.bootstrap})
    fs = ad.create_topics([NewTopic(a.topic, num_partitions=a.partitions,
                                    replication_factor=1)], operation_timeout=10)
    for t, f in fs.items():
        try:
            f.result(timeout=10)
        except Exception as e:   # noqa: BLE001 -- concurrent.futures.TimeoutError too
            if not isinstance(e, KafkaException):
                die("create %s: no answer (librdkafka's mock cluster has no CreateTopics: "
                    "it auto-creates topics, or create them when starting the mock)" % t)
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                die("create %s: %s" % (t, e))
    print(dumps({"topic": a.topic, "partitions": a.partitions}))
    return 0


def main():
    ap = argparse.ArgumentParser(description="Kafka helper for sagad's e2e tests")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("produce")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--key")
    p.add_argument("--header", action="append", metavar="NAME=VALUE")
    p.add_argument("--partition", type=int)
    p.add_argument("--lines", action="store_true", help="VALUE '-': one message per line")
    p.add_argument("--timeout", type=float, default=15)
    p.add_argument("value", metavar="VALUE")
    p.set_defaults(fn=cmd_produce)

    p = sub.add_parser("consume")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group")
    p.add_argument("--count", type=int)
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--where", action="append", metavar="PATH=VALUE")
    p.set_defaults(fn=cmd_consume)

    p = sub.add_parser("wait-group-lag")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--timeout", type=float, default=30)
    p.set_defaults(fn=cmd_wait_group_lag)

    p = sub.add_parser("create-topic")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", type=int, default=1)
    p.set_defaults(fn=cmd_create_topic)

    a = ap.parse_args()
    try:
        return a.fn(a)
    except KafkaException as e:
        die(str(e))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
