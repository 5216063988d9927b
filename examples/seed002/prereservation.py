#!/usr/bin/env python3
"""Seed 002 (smartphone pre-reservation, 스마트폰 사전예약): the HTTP services `prereservation`
and `payment`, built on examples/participants/participant.py (Spring Data REST imitation with
SQLite, Idempotency-Key handling, op log, faults).  Field names and status values are the
seed's ("order", "reservation_cancelled"); see README.md next to this file.

    prereservation.py pre-prereservation|pre-payment --port N --db FILE [--port-file F]

pre-payment sleeps 400-620 ms in POST /payments, inside its transaction (the seed's
Payment.@PostPersist: Thread.sleep(400 + Math.random() * 220), right at Hystrix's 620 ms);
PRE_PAYMENT_DELAY_MS=lo-hi changes the range (0-0 disables it).
"""
import datetime
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "participants"))
import participant as p  # noqa: E402

S, L = "String", "Long"

p.SERVICES.clear()
p.SERVICES.update({
    # PreReservation: status as sent ("order"); DELETE removes it (the seed's @PostRemove sets
    # status "reservation_cancelled" on the removed entity and publishes ReservationCancelled:
    # here the flow publishes that event).
    "pre-prereservation": {
        "collection": "preReservations", "rel": "preReservation",
        "table": "PreReservation_table",
        "fields": [("userId", L), ("userAddress", S), ("productId", L), ("productName", S),
                   ("price", L), ("cardNo", S), ("status", S), ("createdAt", S),
                   ("modifiedAt", S)],
        "status_field": "status", "created_status": None,
        "canceled_status": "reservation_cancelled", "apply_id_field": None,
        "create_status_code": 201,
    },
    # Payment: correlated by preReservationId; DELETE /payments?preReservationId=X deletes them.
    "pre-payment": {
        "collection": "payments", "rel": "payment", "table": "Payment_table",
        "fields": [("cardNo", S), ("price", L), ("preReservationId", L), ("productId", L),
                   ("productName", S), ("userId", L), ("createdAt", S)],
        "status_field": None, "created_status": None, "canceled_status": None,
        "apply_id_field": "preReservationId", "create_status_code": 201,
    },
})


def now_rfc3339():
    """Like Jackson writes a java.util.Date in UTC, as RFC 3339 with milliseconds and Z."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def delay_range():
    lo, _, hi = os.environ.get("PRE_PAYMENT_DELAY_MS", "400-620").partition("-")
    lo = int(lo or 0)
    return lo, int(hi or lo)


class PreService(p.Service):
    def handle(self, method, path, query, body, host):
        if self.name == "pre-payment":
            if "preReservationId" in query:
                query = dict(query)
                query["applyId"] = query["preReservationId"]
            path = path.replace("/search/findByPreReservationId", "/search/findByApplyId")
            if method == "DELETE" and path == "/payments":
                return self.delete_by_reservation(query)
        return super().handle(method, path, query, body, host)

    def create(self, body, host):
        ent = self.coerce(body, {f for f, _ in self.svc["fields"]})
        for f, _ in self.svc["fields"]:
            ent.setdefault(f, None)
        ent["createdAt"] = now_rfc3339()            # @PrePersist
        if self.name == "pre-prereservation":
            ent["modifiedAt"] = ent["createdAt"]
        ent = self.store.insert(ent)
        if self.name == "pre-payment":
            lo, hi = delay_range()
            if hi > 0:                               # Payment.@PostPersist, in the transaction
                time.sleep(random.uniform(lo, hi) / 1000.0)
        return 201, p.HAL, p.dumps(self.render(ent, host)), True

    def delete_by_reservation(self, query):
        rid = self.q1(query, "applyId")
        rows = self.store.by_apply_id(rid)
        if not rows:
            raise p.HttpError(404, "No payment with preReservationId %s" % rid)
        for r in rows:
            self.store.delete(r["id"])
        return 204, None, "", True


p.Service = PreService

if __name__ == "__main__":
    sys.exit(p.main())
