#!/usr/bin/env python3
"""Seed 004 ("ssak5" payment-method registration/change) HTTP participants for sagad.

    ssak5.py SERVICE --port N --db FILE [--host 127.0.0.1] [--port-file FILE]

SERVICE is one of
  paymethod      POST/PATCH/GET/DELETE /paymethods          (Paymethod: kind, number, requestId)
  ssak5-payment  POST/PATCH/GET /payments                    (Payment: requestId, price, status,
                                                              payKind)
  reservation    POST/PATCH/GET/DELETE /cleaningReservations (requestDate, place, status, price,
                                                              customerName)

Built on examples/participants/participant.py (Spring Data REST imitation, SQLite, the
Idempotency-Key table, the op log at /_control/log, faults at /_control/faults): this module
only adds the three services to its SERVICES table and changes two behaviours -- a PATCH here
is a change (the given fields are merged; seed 000's "every update is a cancel" does not apply)
and a POST keeps the status the caller sent (Payment.status "PaymentApproved", "PaymentCancel",
"Payment kind Registered"; reservation "ReservationApply").  See README.md next to this file.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "participants"))

import participant  # noqa: E402  (after the path insert)
from participant import HAL, SERVICES, dumps  # noqa: E402

SSAK5 = {
    "paymethod": {
        "collection": "paymethods",
        "rel": "paymethod",
        "table": "Paymethod_table",
        # Paymethod: id Long, kind, number Long, requestId Long
        "fields": [("kind", "String"), ("number", "Long"), ("requestId", "Long")],
        "status_field": None,
        "created_status": None,
        "canceled_status": None,
        "apply_id_field": "requestId",      # the seed's correlation key
        "create_status_code": 201,
    },
    "ssak5-payment": {
        "collection": "payments",
        "rel": "payment",
        "table": "Payment_table",
        # Payment: id Long, requestId Long, price Integer, status (+ payKind on the DTO)
        "fields": [("requestId", "Long"), ("price", "Long"), ("status", "String"),
                   ("payKind", "String")],
        "status_field": "status",
        "created_status": "PaymentApproved",   # when the caller sends none
        "canceled_status": None,
        "apply_id_field": "requestId",
        "create_status_code": 201,
    },
    "reservation": {
        "collection": "cleaningReservations",
        "rel": "cleaningReservation",
        "table": "CleaningReservation_table",
        "fields": [("requestDate", "String"), ("place", "String"), ("status", "String"),
                   ("price", "Long"), ("customerName", "String")],
        "status_field": "status",
        "created_status": "ReservationApply",
        "canceled_status": None,
        "apply_id_field": None,
        "create_status_code": 201,
    },
}


class Ssak5Service(participant.Service):
    """Seed 004's services: create keeps the caller's status, update merges (no forced cancel)."""

    def create(self, body, host):
        if self.name not in SSAK5:
            return super().create(body, host)
        allowed = {f for f, _ in self.svc["fields"]}
        ent = self.coerce(body, allowed)
        for f in allowed:
            ent.setdefault(f, None)
        sf = self.svc["status_field"]
        if sf and not ent.get(sf):
            ent[sf] = self.svc["created_status"]
        ent = self.store.insert(ent)
        return self.svc["create_status_code"], HAL, dumps(self.render(ent, host)), True

    def cancel(self, ent, changes):
        if self.name not in SSAK5:
            return super().cancel(ent, changes)
        # PATCH /paymethods/1 kind=bank number=13212 requestId=1: a change, fields merged.
        ent.update(changes)
        self.store.update(ent)
        return ent

    def cancel_fields(self, body):
        if self.name not in SSAK5:
            return super().cancel_fields(body)
        return self.coerce(body if body is not None else {},
                           {f for f, _ in self.svc["fields"]})


SERVICES.update(SSAK5)
participant.Service = Ssak5Service      # main() builds the service through this name

if __name__ == "__main__":
    sys.exit(participant.main())
