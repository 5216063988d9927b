#!/usr/bin/python3
"""Seed 003 (pizza order & delivery with refund): the Kafka services `delivery`, `coupon` and
`statusview`, built on examples/participants/kafka_participant.py (consumer group, SQLite,
idempotency by the idempotency-key header, op log, faults, control HTTP server).

    pizza_kafka.py pizza-delivery|pizza-coupon|pizza-statusview --bootstrap B --db FILE
                   --control-port N [--control-port-file F] [kafka_participant.py options]

pizza-delivery    consumes `pizza-delivery-commands`: `Paid` (start the delivery) -> reply
                  `Delivered` {orderId, deliveryStatus} ("Finished" unless told otherwise via
                  POST /_control/next-delivery-status); `DeliveryCancelRequested` -> reply
                  `DeliveryCancelled`.  Its control port is also the seed's SYNC delivery API:
                  GET /deliveries with a JSON body {orderId, deliveryStatus} (the seed's Feign
                  mapping, sic) sets the delivery status (the refund), PATCH
                  /deliveries?orderId=X restores/sets it (the refund's compensation).
pizza-coupon      consumes `pizza-coupon`: `Delivered` -> Coupon(orderId, status "published")
                  when deliveryStatus == "Finished"; `Refunded` -> every coupon of the orderId
                  "couponRefunded", or a new one with "couponRefunded" when none exists;
                  `RefundCancelled` -> the coupons as they were before the refund.
pizza-statusview  consumes `pizza-events` (Paid, Delivered, OrderCancelled, Refunded,
                  RefundCancelled): one view row per orderId (CQRS), with the refund reason.
See README.md next to this file for the contracts.
"""
import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "participants"))
import kafka_participant as kp  # noqa: E402

kp.SERVICES["pizza-delivery"] = {"topics": ["pizza-delivery-commands"],
                                 "reply_topic": "pizza-delivery-events",
                                 "collection": "deliveries", "rel": "delivery"}
kp.SERVICES["pizza-coupon"] = {"topics": ["pizza-coupon"], "reply_topic": None,
                               "collection": "coupons", "rel": "coupon"}
kp.SERVICES["pizza-statusview"] = {"topics": ["pizza-events"], "reply_topic": None,
                                   "collection": "statusviews", "rel": "statusview"}

FINISHED = "Finished"            # seed: delivered.getDeliveryStatus().equals("Finished")
REFUNDED = "refunded"            # seed: deliveryStatus="refunded" (lower case, sic)
DELIVERY_CANCELLED = "DeliveryCancelled"   # inferred (order cancel)
PUBLISHED = "published"          # seed coupon status
COUPON_REFUNDED = "couponRefunded"         # seed coupon status

# (kafka_participant.py's Store has its own delivery_table: SQLite names ignore case.)
TABLES = {"pizza-delivery": "Pizza_delivery_table", "pizza-coupon": "Coupon_table",
          "pizza-statusview": "Statusview_table"}

# Statuses the next Paid commands get instead of "Finished" (POST /_control/next-delivery-status).
_next_status = []
_next_lock = threading.Lock()


def order_id(body):
    v = body.get("orderId") if isinstance(body, dict) else None
    if v is None or isinstance(v, (dict, list, bool)):
        return None
    try:
        return int(v)              # the seed's orderId is a Long
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------------------------------
# Rows: one table per service, (id, order_id, data JSON).

class PizzaStore(kp.Store):
    """kafka_participant's store plus this service's table."""

    def __init__(self, path, service):
        super().__init__(path, service)
        t = TABLES.get(service)
        if t:
            self.db.executescript(
                "CREATE TABLE IF NOT EXISTS %s (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " order_id INTEGER, data TEXT NOT NULL);"
                " CREATE INDEX IF NOT EXISTS %s_oid ON %s(order_id);" % (t, t, t))


def rows(store, oid=None, ent_id=None):
    t = TABLES[store.service]
    if ent_id is not None:
        q, a = "SELECT data FROM %s WHERE id = ?" % t, (ent_id,)
    elif oid is not None:
        q, a = "SELECT data FROM %s WHERE order_id = ? ORDER BY id" % t, (oid,)
    else:
        q, a = "SELECT data FROM %s ORDER BY id" % t, ()
    return [json.loads(r[0]) for r in store.db.execute(q, a)]


def save(store, ent):
    t = TABLES[store.service]
    if ent.get("id") is None:
        cur = store.db.execute("INSERT INTO %s(order_id, data) VALUES (?, '{}')" % t,
                               (ent.get("orderId"),))
        ent = dict({"id": cur.lastrowid}, **{k: v for k, v in ent.items() if k != "id"})
    store.db.execute("UPDATE %s SET order_id = ?, data = ? WHERE id = ?" % t,
                     (ent.get("orderId"), kp.dumps(ent), ent["id"]))
    return ent


# ------------------------------------------------------------------------------------------
# Handlers: (reply dict or None, changed, outcome), inside the participant's transaction.

def handle_delivery(store, event_type, body):
    ts = int(time.time() * 1000)
    oid = order_id(body)
    if event_type == "Paid":
        if oid is None:
            return ({"eventType": "DeliveryFailed", "orderId": None,
                     "reason": "orderId is required", "timestamp": ts}, False, "applied")
        with _next_lock:
            status = _next_status.pop(0) if _next_status else FINISHED
        ents = rows(store, oid)
        if ents:       # one delivery per order: a second Paid does not start another
            ent = ents[0]
        else:
            ent = save(store, {"orderId": oid, "pizzaId": body.get("pizzaId"),
                               "qty": body.get("qty"), "deliveryStatus": status})
        return dict({"eventType": "Delivered", "timestamp": ts}, **ent), True, "applied"
    if event_type == "DeliveryCancelRequested":
        ents = rows(store, oid) if oid is not None else []
        for e in ents:
            e["deliveryStatus"] = DELIVERY_CANCELLED
            save(store, e)
        if not ents:
            return ({"eventType": "DeliveryCancelled", "id": None, "orderId": oid,
                     "deliveryStatus": None, "note": "no delivery for this orderId: nothing "
                     "to undo", "timestamp": ts}, False, "applied")
        return dict({"eventType": "DeliveryCancelled", "timestamp": ts}, **ents[0]), True, \
            "applied"
    return None, False, "ignored"


def handle_coupon(store, event_type, body):
    oid = order_id(body)
    if oid is None and event_type in ("Delivered", "Refunded", "RefundCancelled"):
        return None, False, "rejected"
    if event_type == "Delivered":
        # wheneverDelivered_PublishCoupon: only when the delivery Finished.
        if body.get("deliveryStatus") != FINISHED:
            return None, False, "ignored"
        if rows(store, oid):
            # Already issued, or the refund got here first (its couponRefunded row stands for
            # the revoked coupon): a late Delivered does not issue a coupon for a refunded order.
            return None, False, "ignored"
        save(store, {"orderId": oid, "status": PUBLISHED})
        return None, True, "applied"
    if event_type == "Refunded":
        # wheneverRefunded_PublishCoupon: every coupon of the order -> couponRefunded; none ->
        # create one with couponRefunded (the compensation arrived before the forward action).
        ents = rows(store, oid)
        if not ents:
            save(store, {"orderId": oid, "status": COUPON_REFUNDED, "statusBeforeRefund": None})
        for e in ents:
            if e.get("status") != COUPON_REFUNDED:
                e["statusBeforeRefund"] = e.get("status")
                e["status"] = COUPON_REFUNDED
                save(store, e)
        return None, True, "applied"
    if event_type == "RefundCancelled":
        # The refund is cancelled: coupons go back to what they were; a coupon the refund
        # created (there was none before) is removed.
        t = TABLES[store.service]
        for e in rows(store, oid):
            if e.get("status") != COUPON_REFUNDED:
                continue
            if e.get("statusBeforeRefund"):
                e["status"] = e.pop("statusBeforeRefund")
                save(store, e)
            else:
                store.db.execute("DELETE FROM %s WHERE id = ?" % t, (e["id"],))
        return None, True, "applied"
    return None, False, "ignored"


VIEW_UPDATES = {   # eventType -> fields of the view row it sets (body fields copied too)
    "Paid": {"orderStatus": "Paid"},
    "Delivered": {},
    "OrderCancelled": {"orderStatus": "OrderCancelled", "deliveryStatus": DELIVERY_CANCELLED},
    "Refunded": {"refundStatus": "Refunded"},
    "RefundCancelled": {"refundStatus": "RefundCancelled"},
}
VIEW_FIELDS = ("pizzaId", "qty", "deliveryStatus", "reason")


def handle_statusview(store, event_type, body):
    oid = order_id(body)
    if event_type not in VIEW_UPDATES:
        return None, False, "ignored"
    if oid is None:
        return None, False, "rejected"
    ents = rows(store, oid)
    ent = ents[0] if ents else {"orderId": oid, "pizzaId": None, "qty": None,
                                "orderStatus": None, "deliveryStatus": None,
                                "refundStatus": None, "reason": None}
    for f in VIEW_FIELDS:
        if body.get(f) is not None:
            ent[f] = body[f]
    ent.update(VIEW_UPDATES[event_type])
    ent["lastEvent"] = event_type
    save(store, ent)
    return None, True, "applied"


HANDLERS = {"pizza-delivery": handle_delivery, "pizza-coupon": handle_coupon,
            "pizza-statusview": handle_statusview}
_orig_notification = kp.handle_notification


def handle_any(store, event_type, body, text, hdrs, rec):
    """kafka_participant.Participant.process calls handle_notification for every service that
    is not its own "delivery": route by service."""
    h = HANDLERS.get(store.service)
    if h is None:
        return _orig_notification(store, event_type, body, text, hdrs, rec)
    if not isinstance(body, dict):
        return None, False, "rejected"
    return h(store, event_type, body)


# ------------------------------------------------------------------------------------------
# Control HTTP: the collections, and delivery's SYNC API (the refund's Feign call).

class PizzaHandler(kp.Handler):
    server_version = "pizza-participant/1"

    def dispatch(self):
        url = urlsplit(self.path)
        path, query = url.path.rstrip("/") or "/", parse_qs(url.query)
        p = self.part
        coll = "/" + kp.SERVICES[p.service]["collection"]
        if p.service not in HANDLERS or not (path == coll or path.startswith(coll + "/") or
                                             path == "/_control/next-delivery-status"):
            return super().dispatch()
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        m = self.command
        key = self.headers.get("Idempotency-Key")
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return self.error(400, path, "JSON parse error")
        try:
            if path == "/_control/next-delivery-status" and m == "POST":
                st = body.get("deliveryStatus") if isinstance(body, dict) else None
                times = int(body.get("times", 1)) if isinstance(body, dict) else 1
                if not isinstance(st, str):
                    return self.error(400, path, "deliveryStatus (a string) is required")
                with _next_lock:
                    _next_status.extend([st] * times)
                    return self.send(200, {"next": list(_next_status)})
            with p.store.lock:
                if p.service == "pizza-delivery" and path == coll and \
                        (m == "PATCH" or (m == "GET" and body is not None)):
                    status, answer = self.delivery_update(m, path, query, body, key)
                    update = True
                else:
                    update = False
            if update:
                # A fault {"eventType": "HTTP GET", "delay_ms": N}: applied, then answered
                # late (a slow delivery: the caller's 500 ms timeout passes).
                fault = p.faults.take("HTTP " + m)
                if fault and fault["delay_ms"] > 0:
                    time.sleep(fault["delay_ms"] / 1000.0)
                try:
                    return self.send(status, answer, kp.HAL if status == 200 else kp.JSON_CT)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True     # the caller gave up (its timeout)
                    return None
            with p.store.lock:
                if m != "GET":
                    return self.error(405, path, "Request method '%s' not supported" % m)
                parts = [x for x in path.split("/") if x]
                if len(parts) == 2:
                    got = rows(p.store, ent_id=int(parts[1]))
                    if not got:
                        return self.error(404, path, "No %s with id %s" % (
                            kp.SERVICES[p.service]["rel"], parts[1]))
                    return self.send(200, got[0], kp.HAL)
                oid = int(query["orderId"][0]) if "orderId" in query else None
                got = rows(p.store, oid)
            name = kp.SERVICES[p.service]["collection"]
            return self.send(200, {"_embedded": {name: got},
                                   "page": {"size": len(got), "totalElements": len(got),
                                            "totalPages": 1, "number": 0}}, kp.HAL)
        except (TypeError, ValueError) as e:
            return self.error(400, path, str(e))

    def delivery_update(self, m, path, query, body, key):
        """GET /deliveries + body {orderId, deliveryStatus} (the seed's Feign call, sic): set
        the status of the order's delivery, remembering the one before "refunded".
        PATCH /deliveries?orderId=X + {deliveryStatus}: set it; without deliveryStatus (or
        null): restore the status from before the refund (the refund's compensation).
        Idempotency-Key: a repeated key gets the stored answer.  Runs under the store lock."""
        st = self.part.store
        full = m + " " + self.path
        st.begin()
        try:
            if key:
                prior = st.key_get("http:" + key)
                if prior is not None:
                    st.commit()
                    if prior[0] != full:
                        return 422, {"status": 422, "error": "Unprocessable Entity",
                                     "message": "Idempotency-Key %s was used for %s" %
                                     (key, prior[0]), "path": path}
                    status, answer = json.loads(prior[2])
                    self.log_http(m, body, key, "replayed", answer)
                    return status, answer
            if m == "GET":
                oid = order_id(body)
                want = body.get("deliveryStatus") if isinstance(body, dict) else None
            else:
                oid = int(query["orderId"][0]) if "orderId" in query else None
                want = body.get("deliveryStatus") if isinstance(body, dict) else None
            if oid is None:
                status, answer = 400, {"status": 400, "error": "Bad Request",
                                       "message": "orderId is required", "path": path}
            else:
                ents = rows(st, oid)
                if not ents:
                    status, answer = 404, {"status": 404, "error": "Not Found",
                                           "message": "No delivery with orderId %s" % oid,
                                           "path": path}
                else:
                    for e in ents:
                        if want is None:            # restore (PATCH without a status)
                            if "statusBeforeRefund" in e:
                                e["deliveryStatus"] = e.pop("statusBeforeRefund")
                        elif e.get("deliveryStatus") != want:
                            if want == REFUNDED:
                                e["statusBeforeRefund"] = e.get("deliveryStatus")
                            e["deliveryStatus"] = want
                        save(st, e)
                    status, answer = 200, rows(st, oid)[0]
            if key:
                st.key_put("http:" + key, full, None, kp.dumps([status, answer]))
            self.log_http(m, body, key, "applied", answer)
            st.commit()
            return status, answer
        except BaseException:
            st.rollback()
            raise

    def log_http(self, m, body, key, outcome, answer):
        self.part.store.log({"mono_ns": time.monotonic_ns(), "eventType": "HTTP " + m,
                             "idempotency_key": key, "applied": 1 if outcome == "applied" else 0,
                             "changed": 1 if outcome == "applied" else 0, "outcome": outcome,
                             "topic": "http:" + self.path,
                             "request_body": kp.dumps(body) if body is not None else None,
                             "reply_body": kp.dumps(answer),
                             "traceparent": self.headers.get("traceparent")})


def main():
    kp.handle_notification = handle_any
    kp.Store = PizzaStore
    kp.Handler = PizzaHandler
    return kp.main()


if __name__ == "__main__":
    sys.exit(main())
