#!/usr/bin/python3
"""Seed 002 (smartphone pre-reservation): the Kafka services `receipt` and `myreservation`,
built on examples/participants/kafka_participant.py (consumer group, SQLite, idempotency by
the idempotency-key header, op log, faults, control HTTP server).  Every event of the system
travels on the one topic `prereservation`, told apart by `eventType` (the seed's
validate()/isMe()); see README.md next to this file.

    prereservation_kafka.py pre-receipt|pre-myreservation --bootstrap B --db FILE
                            --control-port N [--control-port-file F] [kafka_participant options]

pre-receipt        PaymentCreated -> Receipt {paidId = payment id, expectedDeliveryAt =
                   createdAt + 21 days (DELIVERY_PREPER_DAY), the payment's fields} and the reply
                   `receiptCreated` (to the command's reply-to, else `prereservation`);
                   ReservationCancelled -> the reservation's receipts deleted (and remembered: a
                   PaymentCreated arriving later is answered `receiptRejected`, nothing stored).
                   GET /receipts on the control port.
pre-myreservation  the CQRS view: ReservationCreated, PaymentCreated, receiptCreated and
                   ReservationCancelled upsert one row per preReservationId.
                   GET /myReservations on the control port.
"""
import datetime
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "participants"))
import kafka_participant as kp  # noqa: E402

DELIVERY_PREPER_DAY = 21
TOPIC = "prereservation"

kp.SERVICES.clear()
kp.SERVICES.update({
    "pre-receipt": {"topics": [TOPIC], "reply_topic": TOPIC,
                    "collection": "receipts", "rel": "receipt"},
    "pre-myreservation": {"topics": [TOPIC], "reply_topic": None,
                          "collection": "myReservations", "rel": "myReservation"},
})
# Commands a service applies once per idempotency key; every other record on the shared topic
# is an event, identified by its topic/partition/offset (a reply echoes the command's key, so
# the key alone would not tell PaymentCreated from its receiptCreated).
COMMANDS = {"pre-receipt": {"PaymentCreated", "ReservationCancelled"}, "pre-myreservation": set()}


def fmt_time(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def parse_time(s):
    s = str(s).replace("Z", "+00:00")
    t = datetime.datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t.astimezone(datetime.timezone.utc)


def reservation_id(body, event_type):
    """The correlation key: ReservationCreated/Cancelled carry the PreReservation as `id`."""
    if event_type in ("ReservationCreated", "ReservationCancelled"):
        v = body.get("id", body.get("preReservationId"))
    else:
        v = body.get("preReservationId")
    return None if v is None else str(v)


class Store(kp.Store):
    """Adds the receipt / myReservation tables (one JSON row each, indexed by
    preReservationId) and the cancelled reservations."""

    def __init__(self, path, service):
        super().__init__(path, service)
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS entity_table (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                pre_reservation_id TEXT,
                data TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS entity_rid ON entity_table(pre_reservation_id);
            CREATE TABLE IF NOT EXISTS cancelled (pre_reservation_id TEXT PRIMARY KEY);
        """)

    def rows(self, rid=None, ent_id=None):
        if ent_id is not None:
            q, a = "SELECT id, data FROM entity_table WHERE id = ?", (ent_id,)
        elif rid is not None:
            q, a = "SELECT id, data FROM entity_table WHERE pre_reservation_id = ? ORDER BY id", (rid,)
        else:
            q, a = "SELECT id, data FROM entity_table ORDER BY id", ()
        return [dict(json.loads(d), id=i) for i, d in self.db.execute(q, a)]

    def save(self, rid, ent):
        if ent.get("id") is None:
            cur = self.db.execute("INSERT INTO entity_table(pre_reservation_id, data) VALUES (?, '{}')",
                                  (rid,))
            ent = dict(ent, id=cur.lastrowid)
        self.db.execute("UPDATE entity_table SET data = ? WHERE id = ?", (kp.dumps(ent), ent["id"]))
        return ent

    def delete_rid(self, rid):
        return self.db.execute("DELETE FROM entity_table WHERE pre_reservation_id = ?", (rid,)).rowcount

    # the control server lists "messages" for services other than delivery
    def messages(self, saga_id=None, ent_id=None):
        return self.rows(ent_id=ent_id)


PAYMENT_FIELDS = ("cardNo", "price", "preReservationId", "productId", "productName", "userId")


def handle_receipt(store, event_type, body):
    rid = reservation_id(body, event_type)
    if event_type == "ReservationCancelled":
        store.db.execute("INSERT OR IGNORE INTO cancelled VALUES (?)", (rid,))
        store.delete_rid(rid)
        return None, True, "applied"
    if event_type != "PaymentCreated":
        return None, False, "ignored"
    if store.db.execute("SELECT 1 FROM cancelled WHERE pre_reservation_id = ?", (rid,)).fetchone():
        return ({"eventType": "receiptRejected", "paidId": body.get("id"), "preReservationId":
                 body.get("preReservationId"), "reason": "reservation cancelled"}, False, "applied")
    created = parse_time(body.get("createdAt") or fmt_time(datetime.datetime.now(datetime.timezone.utc)))
    ent = {f: body.get(f) for f in PAYMENT_FIELDS}
    ent.update({"paidId": body.get("id"),
                "expectedDeliveryAt": fmt_time(created + datetime.timedelta(days=DELIVERY_PREPER_DAY)),
                "paymentCreatedAt": body.get("createdAt"),
                "createdAt": fmt_time(datetime.datetime.now(datetime.timezone.utc))})
    ent = store.save(rid, ent)
    reply = {"eventType": "receiptCreated"}
    reply.update(ent)
    return reply, True, "applied"


def handle_myreservation(store, event_type, body):
    rid = reservation_id(body, event_type)
    if rid is None or event_type not in ("ReservationCreated", "PaymentCreated", "receiptCreated",
                                         "ReservationCancelled"):
        return None, False, "ignored"
    rows = store.rows(rid=rid)
    ent = rows[0] if rows else {"preReservationId": int(rid) if rid.isdigit() else rid}
    if event_type == "ReservationCreated":
        for f in ("userId", "userAddress", "productId", "productName", "price", "cardNo",
                  "createdAt"):
            ent[f] = body.get(f)
        if ent.get("status") != "reservation_cancelled":      # a late event never revives it
            ent["status"] = body.get("status")
    elif event_type == "PaymentCreated":
        ent.update({"paymentId": body.get("id"), "paidAt": body.get("createdAt")})
    elif event_type == "receiptCreated":
        ent.update({"receiptId": body.get("id"), "expectedDeliveryAt": body.get("expectedDeliveryAt")})
    else:
        ent["status"] = body.get("status") or "reservation_cancelled"
    ent["modifiedAt"] = fmt_time(datetime.datetime.now(datetime.timezone.utc))
    store.save(rid, ent)
    return None, True, "applied"


def handle(store, event_type, body, text, hdrs, rec):
    body = body if isinstance(body, dict) else {}
    if kp.NAME == "pre-receipt":
        return handle_receipt(store, event_type, body)
    return handle_myreservation(store, event_type, body)


class Participant(kp.Participant):
    def process(self, msg):
        try:
            ev = json.loads(msg.value() or b"null")
            ev_type = ev.get("eventType") if isinstance(ev, dict) else None
        except ValueError:
            ev_type = None
        if ev_type not in COMMANDS[self.service]:
            msg.set_headers([(k, v) for k, v in (msg.headers() or [])
                             if k.lower() != "idempotency-key"])
        return super().process(msg)


kp.Store = Store
kp.Participant = Participant
kp.handle_notification = handle

if __name__ == "__main__":
    sys.exit(kp.main())
