#!/usr/bin/python3
"""Kafka participants for sagad: seed 000's asynchronous edges ("payment complete -> delivery",
eventual consistency) and its notification NFR (3.2, "notify whenever the application/delivery
status changes"), as consumer-group services that take commands / events from Kafka.

    kafka_participant.py SERVICE --bootstrap SERVERS --db FILE [--group GROUP]
                         [--topic T[,T...]] [--reply-topic T]
                         [--control-port N --control-port-file F] [--host 127.0.0.1]

SERVICE
  delivery      consumes commands on `delivery-commands` (DeliveryRequested,
                DeliveryCancelRequested) and answers on the `reply-to` header's topic
                (default `delivery-events`): DeliveryStarted / DeliveryFailed / DeliveryCanceled.
  notification  consumes saga lifecycle events on `saga-events` and records one "message" per
                event (messageStatus "Message Sended"); no replies.

Guarantees (see README.md next to this file):
  * consumer group: replicas started with the same --group share the partitions; replicas of one
    service share one database (--db), like the seed's replicas share one MySQL;
  * an offset is committed only after the record was processed: the SQLite transaction
    (change + stored reply + op log) committed, the reply acknowledged by the broker
    (idempotent producer, acks=all), then commit(asynchronous=False);
  * idempotent by the `idempotency-key` header (fallback: topic/partition/offset): a redelivered
    or duplicated command is answered again with the stored reply, never applied twice.

Needs Debian's python3-confluent-kafka (hence /usr/bin/python3); otherwise the standard library.
"""

import argparse
import datetime
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from faults import FaultTable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

JSON_CT = "application/json"
HAL = "application/hal+json"

SERVICES = {
    "delivery": {"topics": ["delivery-commands"], "reply_topic": "delivery-events",
                 "collection": "deliveries", "rel": "delivery"},
    "notification": {"topics": ["saga-events"], "reply_topic": None,
                     "collection": "messages", "rel": "message"},
}
# The seed's delivery_table columns (telelephone_info sic) as entity fields.
DELIVERY_FIELDS = ("applyId", "addr", "deliveryStatus", "name", "telelephoneInfo")
DELIVERY_START = "DeliveryStart"
DELIVERY_CANCEL = "DELIVERY_CANCEL"
MESSAGE_SENDED = "Message Sended"


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "+0000")


def dumps(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def log(fmt, *args):
    sys.stderr.write("%s %s[%d] %s\n" % (now_iso(), NAME, os.getpid(), fmt % args))
    sys.stderr.flush()


NAME = "kafka-participant"


def as_str(v):
    """A String field like Jackson: scalars become strings, null stays null."""
    if v is None or isinstance(v, (dict, list)):
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# --------------------------------------------------------------------------------------------
# Storage.  One connection per process behind a lock (the consumer thread and the control HTTP
# threads share it); replicas in other processes share the file, and every write runs in a
# BEGIN IMMEDIATE transaction, so "look up the key, apply, store the reply" is atomic across
# replicas too.

class Store:
    def __init__(self, path, service):
        self.service = service
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                  timeout=30)
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")   # WAL: commits survive a SIGKILL
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS delivery_table (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                apply_id TEXT,
                data TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS delivery_table_apply_id ON delivery_table(apply_id);
            CREATE TABLE IF NOT EXISTS message_table (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                saga_id TEXT,
                data TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS idempotency (
                key TEXT PRIMARY KEY,
                event_type TEXT,
                reply_topic TEXT,
                reply TEXT,              -- the reply value (JSON), NULL when none
                mono_ns INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS oplog (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                mono_ns INTEGER NOT NULL,
                wall_time TEXT NOT NULL,
                pid INTEGER NOT NULL,
                service TEXT NOT NULL,
                eventType TEXT,
                idempotency_key TEXT,
                correlation_id TEXT,
                saga_id TEXT,
                traceparent TEXT,
                applied INTEGER NOT NULL,
                changed INTEGER NOT NULL DEFAULT 0,
                outcome TEXT NOT NULL,
                topic TEXT,
                partition INTEGER,
                "offset" INTEGER,
                reply_topic TEXT,
                reply_eventType TEXT,
                request_body TEXT,
                reply_body TEXT);
        """)

    # transactions --------------------------------------------------------------------------
    def begin(self):
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self):
        self.db.execute("COMMIT")

    def rollback(self):
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    # deliveries ------------------------------------------------------------------------------
    def delivery_insert(self, ent):
        cur = self.db.execute("INSERT INTO delivery_table(apply_id, data) VALUES (?, '{}')",
                              (ent.get("applyId"),))
        ent = dict(ent)
        ent["id"] = cur.lastrowid
        self.delivery_update(ent)
        return ent

    def delivery_update(self, ent):
        self.db.execute("UPDATE delivery_table SET apply_id = ?, data = ? WHERE id = ?",
                        (ent.get("applyId"), dumps(ent), ent["id"]))

    def deliveries(self, apply_id=None, ent_id=None):
        if ent_id is not None:
            q, a = "SELECT data FROM delivery_table WHERE id = ?", (ent_id,)
        elif apply_id is not None:
            q, a = "SELECT data FROM delivery_table WHERE apply_id = ? ORDER BY id", (apply_id,)
        else:
            q, a = "SELECT data FROM delivery_table ORDER BY id", ()
        return [delivery_entity(json.loads(r[0])) for r in self.db.execute(q, a)]

    # messages (notification) -----------------------------------------------------------------
    def message_insert(self, ent):
        cur = self.db.execute("INSERT INTO message_table(saga_id, data) VALUES (?, '{}')",
                              (ent.get("sagaId"),))
        ent = dict({"id": cur.lastrowid}, **ent)
        self.db.execute("UPDATE message_table SET data = ? WHERE id = ?", (dumps(ent), ent["id"]))
        return ent

    def messages(self, saga_id=None, ent_id=None):
        if ent_id is not None:
            q, a = "SELECT data FROM message_table WHERE id = ?", (ent_id,)
        elif saga_id is not None:
            q, a = "SELECT data FROM message_table WHERE saga_id = ? ORDER BY id", (saga_id,)
        else:
            q, a = "SELECT data FROM message_table ORDER BY id", ()
        return [json.loads(r[0]) for r in self.db.execute(q, a)]

    # idempotency -----------------------------------------------------------------------------
    def key_get(self, key):
        return self.db.execute(
            "SELECT event_type, reply_topic, reply FROM idempotency WHERE key = ?",
            (key,)).fetchone()

    def key_put(self, key, event_type, reply_topic, reply):
        self.db.execute(
            "INSERT INTO idempotency(key, event_type, reply_topic, reply, mono_ns)"
            " VALUES (?,?,?,?,?)", (key, event_type, reply_topic, reply, time.monotonic_ns()))

    # operations log --------------------------------------------------------------------------
    LOG_COLS = ("seq", "mono_ns", "wall_time", "pid", "service", "eventType", "idempotency_key",
                "correlation_id", "saga_id", "traceparent", "applied", "changed", "outcome",
                "topic", "partition", "offset", "reply_topic", "reply_eventType",
                "request_body", "reply_body")

    def log(self, row):
        cols = [c for c in self.LOG_COLS if c != "seq"]
        row = dict(row)
        row.setdefault("wall_time", now_iso())
        row.setdefault("pid", os.getpid())
        row.setdefault("service", self.service)
        row.setdefault("applied", 0)
        row.setdefault("changed", 0)
        self.db.execute(
            "INSERT INTO oplog(%s) VALUES (%s)" % (
                ",".join('"%s"' % c for c in cols), ",".join("?" * len(cols))),
            tuple(row.get(c) for c in cols))

    def log_rows(self, since=0):
        out = []
        for r in self.db.execute(
                "SELECT %s FROM oplog WHERE seq > ? ORDER BY seq" % ",".join(
                    '"%s"' % c for c in self.LOG_COLS), (since,)):
            d = dict(zip(self.LOG_COLS, r))
            for k in ("request_body", "reply_body"):
                if d[k]:
                    try:
                        d[k] = json.loads(d[k])
                    except ValueError:
                        pass
            out.append(d)
        return out


# --------------------------------------------------------------------------------------------
# Faults (memory only, per process).

class Faults(FaultTable):
    KEYS = {"eventType", "times", "reply", "delay_ms", "duplicate_reply", "drop_reply", "crash"}
    CRASH_POINTS = ("before_apply", "after_apply", "after_reply")

    def add(self, spec):
        if not isinstance(spec, dict):
            raise ValueError("a fault is a JSON object")
        unknown = set(spec) - self.KEYS
        if unknown:
            raise ValueError("unknown fault keys: %s (known: %s)" % (
                ", ".join(sorted(unknown)), ", ".join(sorted(self.KEYS))))
        f = {"eventType": str(spec.get("eventType", "*")),
             "times": int(spec.get("times", 1)),
             "reply": spec.get("reply"),
             "delay_ms": int(spec.get("delay_ms", 0)),
             "duplicate_reply": bool(spec.get("duplicate_reply", False)),
             "drop_reply": bool(spec.get("drop_reply", False)),
             "crash": spec.get("crash")}
        if f["reply"] is not None and not isinstance(f["reply"], str):
            raise ValueError("reply must be an event type (a string)")
        if f["crash"] is not None and f["crash"] not in self.CRASH_POINTS:
            raise ValueError("crash must be one of " + ", ".join(self.CRASH_POINTS))
        return super().add(f)

    def take(self, event_type):
        """The first fault matching event_type (or "*"), its count consumed."""
        return super().take(lambda f: f["eventType"] in ("*", event_type))


# --------------------------------------------------------------------------------------------
# Service logic.  handle() runs inside the transaction and returns
# (reply_value or None, changed, outcome): reply_value is the dict to send (None = no reply).

def delivery_entity(ent):
    out = {"id": ent.get("id")}
    for f in DELIVERY_FIELDS:
        out[f] = ent.get(f)
    return out


def handle_delivery(store, event_type, body):
    ts = int(time.time() * 1000)
    if event_type == "DeliveryRequested":
        apply_id = as_str(body.get("applyId"))
        if not apply_id:
            return ({"eventType": "DeliveryFailed", "applyId": None,
                     "reason": "applyId is required", "timestamp": ts}, False, "applied")
        tel = body.get("telelephoneInfo", body.get("telephoneInfo"))
        ent = {"applyId": apply_id, "addr": as_str(body.get("addr")),
               "deliveryStatus": DELIVERY_START, "name": as_str(body.get("name")),
               "telelephoneInfo": as_str(tel)}
        ent = store.delivery_insert(ent)
        reply = {"eventType": "DeliveryStarted"}
        reply.update(delivery_entity(ent))
        reply["timestamp"] = ts
        return reply, True, "applied"
    if event_type == "DeliveryCancelRequested":
        apply_id = as_str(body.get("applyId"))
        ents = []
        if body.get("id") is not None:
            try:
                ents = store.deliveries(ent_id=int(body["id"]))
            except (TypeError, ValueError):
                ents = []
        elif apply_id:
            ents = store.deliveries(apply_id=apply_id)
        if not ents:
            # Nothing was shipped (the request never arrived, or was refused): the cancel
            # succeeds with nothing to undo, like the HTTP delivery's 404.
            return ({"eventType": "DeliveryCanceled", "id": None, "applyId": apply_id,
                     "deliveryStatus": None, "note": "no delivery for this applyId: "
                     "nothing to undo", "timestamp": ts}, False, "applied")
        for e in ents:   # every delivery of that applyId (the seed loops over findByApplyId)
            e["deliveryStatus"] = DELIVERY_CANCEL
            store.delivery_update(e)
        reply = {"eventType": "DeliveryCanceled"}
        reply.update(delivery_entity(ents[0]))
        reply["timestamp"] = ts
        return reply, True, "applied"
    return None, False, "ignored"


def first(d, *names):
    for n in names:
        if isinstance(d, dict) and d.get(n) is not None:
            return d[n]
    return None


def handle_notification(store, event_type, body, text, hdrs, rec):
    """One message row per lifecycle event; liberal about the event's shape."""
    ev = body if isinstance(body, dict) else {"value": body if body is not None else text}
    # sagad's lifecycle events (docs/kafka.md): {"event_id","type":"saga"|"step","saga_id",
    # "flow","status" (the saga's), "step","state" (the step's), "error",...}; other shapes
    # are taken as they come (step may be an object, the type may be eventType).
    step = ev.get("step")
    if isinstance(step, dict):
        step_name, step_state = first(step, "name"), first(step, "state", "status")
    else:
        step_name = step
        step_state = first(ev, "state", "step_state", "stepState") if step is not None else None
    saga_id = as_str(first(ev, "saga_id", "sagaId", "saga") or hdrs.get("saga-id"))
    status = first(ev, "status") if step is not None else first(ev, "status", "state")
    flow = first(ev, "flow", "flow_name", "flowName")
    parts = [p for p in (flow and "flow %s" % flow, saga_id and "saga %s" % saga_id,
                         step_name and ("step %s %s" % (step_name, step_state or "")).strip(),
                         status and "saga status %s" % status,
                         ev.get("error") and "error: %s" % ev["error"]) if p]
    msg = {"sagaId": saga_id, "flow": as_str(flow), "eventType": as_str(event_type),
           "status": as_str(status), "step": as_str(step_name), "stepState": as_str(step_state),
           "eventId": as_str(first(ev, "event_id", "eventId")),
           "messageStatus": MESSAGE_SENDED,
           "text": "[%s] %s" % (event_type or "event", ", ".join(parts) if parts else dumps(ev)),
           "topic": rec["topic"], "partition": rec["partition"], "offset": rec["offset"],
           "receivedAt": now_iso()}
    store.message_insert(msg)
    return None, True, "applied"


# --------------------------------------------------------------------------------------------
# The consumer loop.

class Participant:
    def __init__(self, args):
        self.args = args
        self.service = args.service
        self.store = Store(args.db, args.service)
        self.faults = Faults()
        self.stop = threading.Event()
        self.assigned = []
        self.processed = 0
        spec = SERVICES[args.service]
        self.topics = ([t for t in args.topic.split(",") if t] if args.topic else spec["topics"])
        self.default_reply_topic = args.reply_topic or spec["reply_topic"]
        self.group = args.group or args.service
        common = {"bootstrap.servers": args.bootstrap}
        for kv in args.config or []:
            k, _, v = kv.partition("=")
            common[k] = v
        self.consumer = Consumer(dict(common, **{
            "group.id": self.group,
            "client.id": "%s-%d" % (args.service, os.getpid()),
            "enable.auto.commit": False,          # committed by hand after processing
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",      # commands sent before we joined are ours
            "session.timeout.ms": args.session_timeout_ms,
            "heartbeat.interval.ms": max(100, args.session_timeout_ms // 6),
            "topic.metadata.refresh.interval.ms": 2000,
            "error_cb": self.on_error,
        }))
        self.producer = Producer(dict(common, **{
            "client.id": "%s-%d-replies" % (args.service, os.getpid()),
            "enable.idempotence": True,           # acks=all, no duplicates from retries
            "linger.ms": 0,
            "error_cb": self.on_error,
        }))

    # callbacks -------------------------------------------------------------------------------
    def on_error(self, err):
        log("kafka: %s", err)

    def on_assign(self, consumer, parts):
        self.assigned = sorted((p.topic, p.partition) for p in parts)
        log("assigned %s", ", ".join("%s[%d]" % tp for tp in self.assigned) or "nothing")

    def on_revoke(self, consumer, parts):
        log("revoked %s", ", ".join("%s[%d]" % (p.topic, p.partition) for p in parts))
        self.assigned = []

    # main loop -------------------------------------------------------------------------------
    def run(self):
        self.consumer.subscribe(self.topics, on_assign=self.on_assign, on_revoke=self.on_revoke)
        log("consuming %s as group %s (replies: %s)", ",".join(self.topics), self.group,
            self.default_reply_topic or "none")
        while not self.stop.is_set():
            msg = self.consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log("consume error: %s", msg.error())
                continue
            self.process(msg)
        # Clean stop: the current record is finished and committed; leave the group.
        log("stopping: leaving group %s", self.group)
        self.consumer.close()
        left = self.producer.flush(10)
        if left:
            log("%d replies still undelivered at exit", left)

    def process(self, msg):
        rec = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}
        hdrs = {}
        for k, v in msg.headers() or []:
            hdrs[k.lower()] = v.decode("utf-8", "replace") if v is not None else None
        raw = msg.value() or b""
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(text) if text.strip() else None
        except ValueError:
            body = None
        event_type = None
        if isinstance(body, dict):
            event_type = as_str(body.get("eventType") or body.get("type"))
        event_type = event_type or hdrs.get("eventtype") or hdrs.get("event-type") or \
            hdrs.get("type")
        idem = hdrs.get("idempotency-key")
        if self.service == "notification":
            ev_id = first(body, "event_id", "eventId") if isinstance(body, dict) else None
            if ev_id is not None:
                idem = "event:%s" % ev_id
        key = idem or "kafka:%s:%d:%d" % (rec["topic"], rec["partition"], rec["offset"])
        corr = hdrs.get("correlation-id") or hdrs.get("idempotency-key")
        reply_topic = hdrs.get("reply-to") or self.default_reply_topic
        base = dict(rec, eventType=event_type, idempotency_key=key, correlation_id=corr,
                    saga_id=hdrs.get("saga-id"), traceparent=hdrs.get("traceparent"),
                    request_body=text)

        fault = self.faults.take(event_type or "")
        if fault and fault["delay_ms"] > 0:
            # A slow consumer: the record is held (not committed) meanwhile.  SIGTERM cuts the
            # wait short, then the record is processed normally.
            self.stop.wait(fault["delay_ms"] / 1000.0)
        if fault and fault["crash"] == "before_apply":
            self.crash("before_apply", rec)

        replies = []
        reply_text = None
        outcome = None
        if fault and fault["reply"]:
            # Answer a failure event instead of applying; not stored, so a retry applies.
            rv = {"eventType": fault["reply"], "applyId": first(body, "applyId"),
                  "reason": "injected fault", "timestamp": int(time.time() * 1000)}
            reply_text = dumps(rv)
            with self.store.lock:
                self.store.begin()
                self.store.log(dict(base, mono_ns=time.monotonic_ns(), outcome="fault",
                                    reply_topic=reply_topic, reply_eventType=fault["reply"],
                                    reply_body=reply_text))
                self.store.commit()
            outcome = "fault"
            replies.append(reply_text)
        else:
            with self.store.lock:
                mono = time.monotonic_ns()
                self.store.begin()
                try:
                    applied = changed = 0
                    prior = self.store.key_get(key)
                    reply_type = None
                    if prior is not None:
                        p_type, p_topic, p_reply = prior
                        if (p_type or None) != (event_type or None):
                            outcome, reply_text = "key-mismatch", None
                            log("idempotency-key %s was used for %s, not %s: not applied, "
                                "no reply", key, p_type, event_type)
                        else:
                            outcome, reply_text = "replayed", p_reply
                    elif body is None and self.service == "delivery":
                        outcome = "rejected"        # not JSON: nothing to do, committed
                    else:
                        if self.service == "delivery":
                            rv, changed, outcome = handle_delivery(
                                self.store, event_type, body if isinstance(body, dict) else {})
                        else:
                            rv, changed, outcome = handle_notification(
                                self.store, event_type, body, text, hdrs, rec)
                        reply_text = dumps(rv) if rv is not None else None
                        applied = 1 if outcome == "applied" else 0
                        if applied:
                            self.store.key_put(key, event_type, reply_topic, reply_text)
                    if reply_text is not None:
                        reply_type = json.loads(reply_text).get("eventType")
                    sfx = ""
                    if fault and reply_text is not None:
                        sfx = "+reply-dropped" if fault["drop_reply"] else (
                            "+reply-duplicated" if fault["duplicate_reply"] else "")
                    self.store.log(dict(base, mono_ns=mono, applied=applied,
                                        changed=1 if changed else 0, outcome=outcome + sfx,
                                        reply_topic=reply_topic if reply_text else None,
                                        reply_eventType=reply_type, reply_body=reply_text))
                    self.store.commit()
                except BaseException:
                    self.store.rollback()
                    raise
            if reply_text is not None:
                replies.append(reply_text)
        if fault and fault["crash"] == "after_apply":
            self.crash("after_apply", rec)

        if replies and fault and fault["drop_reply"]:
            replies = []
            outcome += "+reply-dropped"
        if replies and fault and fault["duplicate_reply"]:
            replies = replies * 2
            outcome += "+reply-duplicated"
        if replies and not reply_topic:
            log("no reply-to header and no default reply topic: reply not sent")
            replies = []
        for r in replies:
            if not self.send_reply(reply_topic, msg.key(), hdrs, corr, r):
                # The reply did not reach the broker: do not commit; read the record again
                # (it will be replayed from the stored reply).
                self.consumer.seek(TopicPartition(rec["topic"], rec["partition"],
                                                  rec["offset"]))
                self.stop.wait(1.0)
                return
        if fault and fault["crash"] == "after_reply":
            self.crash("after_reply", rec)
        self.commit(rec)
        self.processed += 1
        log("%s[%d]@%d %s key=%s -> %s%s", rec["topic"], rec["partition"], rec["offset"],
            event_type, key, outcome,
            (" reply %s x%d to %s" % (json.loads(replies[0]).get("eventType"), len(replies),
                                      reply_topic)) if replies else "")

    def send_reply(self, topic, key, hdrs, corr, value):
        out_headers = [("eventType", json.loads(value).get("eventType") or "")]
        if corr is not None:
            out_headers.append(("correlation-id", corr))
        for h in ("saga-id", "saga-step", "saga-attempt", "traceparent", "idempotency-key"):
            if hdrs.get(h) is not None:
                out_headers.append((h, hdrs[h]))
        result = {}

        def on_delivery(err, m):
            result["err"] = err

        for attempt in range(3):
            try:
                self.producer.produce(topic, value=value.encode("utf-8"), key=key,
                                      headers=out_headers, on_delivery=on_delivery)
                break
            except BufferError:
                self.producer.poll(0.5)
        deadline = time.monotonic() + 30
        while "err" not in result and time.monotonic() < deadline:
            self.producer.poll(0.1)
        if result.get("err") is not None or "err" not in result:
            log("reply to %s failed: %s", topic, result.get("err", "timeout"))
            return False
        return True

    def commit(self, rec):
        tp = TopicPartition(rec["topic"], rec["partition"], rec["offset"] + 1)
        try:
            self.consumer.commit(offsets=[tp], asynchronous=False)
        except KafkaException as e:
            # Typically a rebalance took the partition away: the new owner reads the record
            # again and replays the stored reply.
            log("commit %s[%d]@%d failed: %s", rec["topic"], rec["partition"],
                rec["offset"] + 1, e)

    def crash(self, point, rec):
        log("injected crash %s at %s[%d]@%d", point, rec["topic"], rec["partition"],
            rec["offset"])
        os._exit(137)


# --------------------------------------------------------------------------------------------
# Control HTTP server.

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "kafka-participant/1"
    part = None   # the Participant, set by main()

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        pass

    def send(self, status, body, ctype=JSON_CT):
        data = dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def error(self, status, path, message):
        self.send(status, {"timestamp": now_iso(), "status": status,
                           "error": {400: "Bad Request", 404: "Not Found"}.get(status, "Error"),
                           "message": message, "path": path})

    def do_GET(self):
        self.dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_GET

    def dispatch(self):
        url = urlsplit(self.path)
        path, query = url.path.rstrip("/") or "/", parse_qs(url.query)
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        p = self.part
        m = self.command
        try:
            if path == "/_control/health" and m == "GET":
                return self.send(200, {
                    "status": "UP", "service": p.service, "pid": os.getpid(), "group": p.group,
                    "topics": p.topics, "reply_topic": p.default_reply_topic,
                    "assigned": ["%s[%d]" % tp for tp in p.assigned],
                    "processed": p.processed})
            if path == "/_control/log" and m == "GET":
                since = int(query.get("since", ["0"])[0] or 0)
                with p.store.lock:
                    rows = p.store.log_rows(since)
                return self.send(200, rows)
            if path == "/_control/faults":
                if m == "POST":
                    try:
                        spec = json.loads(raw or b"null")
                    except ValueError:
                        return self.error(400, path, "fault body is not JSON")
                    specs = spec if isinstance(spec, list) else [spec]
                    added = [p.faults.add(s) for s in specs]
                    return self.send(200, added if isinstance(spec, list) else added[0])
                if m == "DELETE":
                    return self.send(200, {"cleared": p.faults.clear()})
                if m == "GET":
                    return self.send(200, p.faults.list())
            coll = SERVICES[p.service]["collection"]
            parts = [x for x in path.split("/") if x]
            if m == "GET" and parts and parts[0] == coll and len(parts) <= 2:
                with p.store.lock:
                    if p.service == "delivery":
                        fetch = p.store.deliveries
                        filt = {"apply_id": query["applyId"][0]} if "applyId" in query else {}
                    else:
                        fetch = p.store.messages
                        filt = {"saga_id": query["sagaId"][0]} if "sagaId" in query else {}
                    if len(parts) == 2:
                        rows = fetch(ent_id=int(parts[1]))
                        if not rows:
                            return self.error(404, path, "No %s with id %s" % (
                                SERVICES[p.service]["rel"], parts[1]))
                        return self.send(200, rows[0], HAL)
                    rows = fetch(**filt)
                return self.send(200, {"_embedded": {coll: rows},
                                       "page": {"size": len(rows), "totalElements": len(rows),
                                                "totalPages": 1, "number": 0}}, HAL)
            return self.error(404, path, "No endpoint %s %s" % (m, path))
        except (TypeError, ValueError) as e:
            return self.error(400, path, str(e))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global NAME
    ap = argparse.ArgumentParser(description="seed-000 Kafka participant for sagad")
    ap.add_argument("service", choices=sorted(SERVICES))
    ap.add_argument("--bootstrap", required=True, help="bootstrap.servers, host:port[,...]")
    ap.add_argument("--db", required=True, help="SQLite file, shared by the replicas")
    ap.add_argument("--group", help="consumer group (default: the service name)")
    ap.add_argument("--topic", help="topic(s) to consume, comma-separated "
                    "(default delivery-commands / saga-events)")
    ap.add_argument("--reply-topic", help="replies without a reply-to header go here "
                    "(default delivery-events)")
    ap.add_argument("--control-port", type=int, help="control HTTP port (0: a free one)")
    ap.add_argument("--control-port-file", help="write the bound control port here")
    ap.add_argument("--host", default="127.0.0.1", help="control HTTP address")
    ap.add_argument("--session-timeout-ms", type=int, default=6000,
                    help="consumer group session timeout: how fast a dead replica's "
                    "partitions move (default 6000)")
    ap.add_argument("--config", action="append", metavar="NAME=VALUE",
                    help="extra librdkafka property for consumer and producer (repeatable)")
    args = ap.parse_args()
    NAME = args.service

    part = Participant(args)
    srv = None
    if args.control_port is not None:
        Handler.part = part
        srv = Server((args.host, args.control_port), Handler)
        port = srv.server_address[1]
        if args.control_port_file:
            tmp = args.control_port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write("%d\n" % port)
            os.replace(tmp, args.control_port_file)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()
        log("control on http://%s:%d", args.host, port)

    def on_signal(signum, frame):
        part.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log("started db=%s bootstrap=%s", args.db, args.bootstrap)
    try:
        part.run()
    finally:
        if srv is not None:
            srv.shutdown()
            srv.server_close()
        with part.store.lock:
            part.store.db.close()
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
