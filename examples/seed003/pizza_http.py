#!/usr/bin/env python3
"""Seed 003 (pizza order & delivery with refund): the HTTP services `order`, `payment` and
`refund`, built on examples/participants/participant.py (Spring Data REST imitation with SQLite,
Idempotency-Key handling, op log, faults).  Field names and status values are the seed's where
it names them (pizzaId, qty, orderId, reason); see README.md next to this file.

    pizza_http.py pizza-order|pizza-payment|pizza-refund --port N --db FILE [--port-file F]

pizza-payment sleeps 400-700 ms before answering a POST (the seed's load injection in
Payment.@PostPersist: Thread.sleep(400 + Math.random() * 300)); PIZZA_PAYMENT_DELAY_MS=lo-hi
changes the range (0-0 disables it).
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "participants"))
import participant as p  # noqa: E402

# order: the seed's Order (pizzaId, qty from the body); the status values are not in the seed
# (inferred): "Ordered" on create, "OrderCancelled" on any PATCH (the cancel).
p.SERVICES["pizza-order"] = {
    "collection": "orders", "rel": "order", "table": "Order_table",
    "fields": [("pizzaId", "Long"), ("qty", "Long"), ("status", "String")],
    "status_field": "status", "created_status": "Ordered", "canceled_status": "OrderCancelled",
    "apply_id_field": None, "create_status_code": 201,
}
# payment: the seed's Payment publishes Paid on @PostPersist; cancel -> "PaymentCancelled".
p.SERVICES["pizza-payment"] = {
    "collection": "payments", "rel": "payment", "table": "Payment_table",
    "fields": [("orderId", "Long"), ("pizzaId", "Long"), ("qty", "Long"), ("status", "String")],
    "status_field": "status", "created_status": "Paid", "canceled_status": "PaymentCancelled",
    "apply_id_field": "orderId", "create_status_code": 201,
}
# refund: the seed's Refund (Refund_table: id, orderId Long, reason) plus a status (inferred):
# "Refunded", and "RefundCancelled" when the refund is cancelled.
p.SERVICES["pizza-refund"] = {
    "collection": "refunds", "rel": "refund", "table": "Refund_table",
    "fields": [("orderId", "Long"), ("reason", "String"), ("status", "String")],
    "status_field": "status", "created_status": "Refunded", "canceled_status": "RefundCancelled",
    "apply_id_field": "orderId", "create_status_code": 201,
}


class PizzaService(p.Service):
    """The seed's correlation field is orderId: PATCH /payments?orderId=X and
    GET /payments/search/findByOrderId?orderId=X (participant.py says applyId)."""

    def handle(self, method, path, query, body, host):
        if self.svc["apply_id_field"] == "orderId":
            if "orderId" in query:
                query = dict(query)
                query["applyId"] = query["orderId"]
            path = path.replace("/search/findByOrderId", "/search/findByApplyId")
        return super().handle(method, path, query, body, host)

    def cancel_fields(self, body):
        # orderId is never changed by a cancel (participant.py protects applyId).
        out = super().cancel_fields(body)
        out.pop("orderId", None)
        return out


class PizzaHandler(p.Handler):
    delay = None

    def business(self, method, path, full_path, query, raw, key, traceparent):
        if self.name == "pizza-payment" and method == "POST" and self.delay and \
                self.delay[1] > 0:
            # Outside the store lock: concurrent payments are slow together, not in a queue.
            time.sleep(random.uniform(*self.delay) / 1000.0)
        return super().business(method, path, full_path, query, raw, key, traceparent)


def main():
    lo, _, hi = os.environ.get("PIZZA_PAYMENT_DELAY_MS", "400-700").partition("-")
    PizzaHandler.delay = (float(lo), float(hi or lo))
    p.Service = PizzaService
    p.Handler = PizzaHandler
    return p.main()


if __name__ == "__main__":
    sys.exit(main())
