#!/usr/bin/env python3
"""Seed 001 ("12th Street" shop, 12번가): the HTTP services `order`, `productdelivery`,
`marketing`, `message` and `orderstatus`, built on examples/participants/participant.py
(Spring Data REST imitation with SQLite, Idempotency-Key handling, op log, faults).  Field
names and status values are the seed's, typos included ("Message Sended"); see README.md next
to this file for the contracts.

    shop.py shop-order|shop-productdelivery|shop-marketing|shop-message|shop-orderstatus \
            --port N --db FILE [--port-file F]

shop-message sleeps 400-620 ms in POST /createMessageInfo (the seed's Message.@PrePersist:
Thread.sleep(400 + Math.random() * 220)); SHOP_MESSAGE_DELAY_MS=lo-hi changes the range
(0-0 disables it).
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "participants"))
import participant as p  # noqa: E402

S, L = "String", "Long"

# The seed's entities, fields in declaration order.  orderId is the correlation key
# (findByOrderId in PromoteRepository and MessageRepository): it is the index column.
p.SERVICES.clear()
p.SERVICES.update({
    # Order (order and payment merged): orderStatus as sent; any PATCH is the cancel
    # (Order.@PostUpdate publishes OrderCanceled) and forces "Order Canceled".
    "shop-order": {
        "collection": "orders", "rel": "order", "table": "Order_table",
        "fields": [("username", S), ("address", S), ("phoneNo", S), ("productId", S),
                   ("qty", L), ("payStatus", S), ("userId", S), ("orderStatus", S),
                   ("orderDate", S), ("productName", S), ("productPrice", L),
                   ("couponId", S), ("couponKind", S), ("couponUseYn", S)],
        "status_field": "orderStatus", "created_status": None,
        "canceled_status": "Order Canceled", "apply_id_field": None,
        "create_status_code": 201,
    },
    # StockDelivery: DELIVERY_STARTED / DELIVERY_CANCELED constants of the seed.
    "shop-productdelivery": {
        "collection": "stockDeliveries", "rel": "stockDelivery",
        "table": "StockDelivery_table",
        "fields": [("orderId", L), ("orderStatus", S), ("userName", S), ("address", S),
                   ("productId", S), ("qty", L), ("storeName", S), ("orderDate", S),
                   ("confirmDate", S), ("productName", S), ("phoneNo", S),
                   ("productPrice", L), ("customerId", S), ("deliveryStatus", S),
                   ("deliveryDate", S), ("userId", S)],
        "status_field": "deliveryStatus", "created_status": "delivery Started",
        "canceled_status": "delivery Canceled", "apply_id_field": "orderId",
        "create_status_code": 201,
    },
    # Promote (the coupon): publishCoupon / cancelCoupon answer boolean.
    "shop-marketing": {
        "collection": "promotes", "rel": "promote", "table": "Promote_table",
        "fields": [("phoneNo", S), ("username", S), ("orderId", L), ("orderStatus", S),
                   ("productId", S), ("payStatus", S), ("couponId", S), ("couponKind", S),
                   ("couponUseYn", S), ("userId", S)],
        "status_field": "orderStatus", "created_status": None,
        "canceled_status": "Order Canceled", "apply_id_field": "orderId",
        "create_status_code": 200,
    },
    # Message: createMessageInfo / cancelMessage answer boolean.
    "shop-message": {
        "collection": "messages", "rel": "message", "table": "Message_table",
        "fields": [("orderId", L), ("productId", S), ("productName", S), ("userName", S),
                   ("messageStatus", S), ("phoneNo", S)],
        "status_field": "messageStatus", "created_status": "Message Sended",
        "canceled_status": "Message Canceled", "apply_id_field": "orderId",
        "create_status_code": 200,
    },
    # orderstatus: the CQRS view (GET /orderStatus), one row per orderId, upserted.
    "shop-orderstatus": {
        "collection": "orderStatus", "rel": "orderStatus", "table": "OrderStatus_table",
        "fields": [("orderId", L), ("username", S), ("userId", S), ("productId", S),
                   ("productName", S), ("qty", L), ("productPrice", L), ("payStatus", S),
                   ("orderStatus", S), ("deliveryStatus", S), ("couponId", S),
                   ("couponStatus", S), ("messageStatus", S), ("sagaId", S),
                   ("modifiedAt", S)],
        "status_field": "orderStatus", "created_status": None, "canceled_status": None,
        "apply_id_field": "orderId", "create_status_code": 200,
    },
})

NO_COUPON_PRODUCT_PREFIX = "0000"   # marketing: no coupon for these products -> false
COUPON_ISSUED = "Y"                 # couponUseYn of an issued coupon (inferred)
COUPON_CANCELED = "N"


def delay_range():
    lo, _, hi = os.environ.get("SHOP_MESSAGE_DELAY_MS", "400-620").partition("-")
    lo = int(lo or 0)
    return lo, int(hi or lo)


class ShopService(p.Service):
    """participant.py's Spring Data REST behaviour plus the seed's RPC endpoints and orderId
    as the correlation key (?orderId=X, /search/findByOrderId)."""

    RPC = {
        "shop-marketing": {"/publishCoupon": "publish", "/cancelCoupon": "cancel"},
        "shop-message": {"/createMessageInfo": "publish", "/cancelMessage": "cancel"},
    }

    def handle(self, method, path, query, body, host):
        rpc = self.RPC.get(self.name, {}).get(path)
        if rpc:
            if method != "POST":
                raise p.HttpError(405, "Request method '%s' not supported" % method)
            return self.rpc(rpc, body)
        if self.name == "shop-orderstatus" and method == "POST" and path == "/orderStatus":
            return self.upsert_view(body, host)
        if "orderId" in query:
            query = dict(query)
            query["applyId"] = query["orderId"]
        path = path.replace("/search/findByOrderId", "/search/findByApplyId")
        return super().handle(method, path, query, body, host)

    def create(self, body, host):
        if self.svc["created_status"] is not None:
            return super().create(body, host)
        ent = self.coerce(body, {f for f, _ in self.svc["fields"]})
        for f, _ in self.svc["fields"]:
            ent.setdefault(f, None)
        ent = self.store.insert(ent)
        return self.svc["create_status_code"], p.HAL, p.dumps(self.render(ent, host)), True

    def cancel_fields(self, body):
        out = super().cancel_fields(body)
        out.pop("orderId", None)        # the correlation key never changes
        return out

    # boolean RPCs (the seed's Feign methods) ----------------------------------------------
    def rpc(self, what, body):
        ent = self.coerce(body, {f for f, _ in self.svc["fields"]})
        order_id = ent.get("orderId")
        if order_id is None:
            raise p.HttpError(400, "orderId is required")
        rows = self.store.by_apply_id(str(order_id))
        if self.name == "shop-message" and what == "publish":
            lo, hi = delay_range()
            if hi > 0:
                time.sleep(random.uniform(lo, hi) / 1000.0)   # Message.@PrePersist
        if what == "publish":
            if self.name == "shop-marketing" and \
                    str(ent.get("productId") or "").startswith(NO_COUPON_PRODUCT_PREFIX):
                return 200, p.JSON_CT, "false", False      # no coupon: nothing saved
            if self.name == "shop-marketing":
                ent["couponId"] = ent.get("couponId") or "CP-%s" % order_id
                ent["couponKind"] = ent.get("couponKind") or "DISCOUNT"
                ent["couponUseYn"] = COUPON_ISSUED
            else:
                ent["messageStatus"] = self.svc["created_status"]
            if rows:     # one coupon / message per order: issuing again re-activates it
                cur = rows[0]
                cur.update({k: v for k, v in ent.items() if v is not None})
                self.store.update(cur)
            else:
                for f, _ in self.svc["fields"]:
                    ent.setdefault(f, None)
                self.store.insert(ent)
            return 200, p.JSON_CT, "true", True
        # cancel: nothing to cancel is a success (idempotent, and a compensation may come
        # for a publish whose answer was lost)
        for cur in rows:
            if self.name == "shop-marketing":
                cur["orderStatus"] = self.svc["canceled_status"]
                cur["couponUseYn"] = COUPON_CANCELED
            else:
                cur["messageStatus"] = self.svc["canceled_status"]
            self.store.update(cur)
        return 200, p.JSON_CT, "true", bool(rows)

    # the orderstatus view -------------------------------------------------------------------
    def upsert_view(self, body, host):
        ent = self.coerce(body, {f for f, _ in self.svc["fields"]})
        if ent.get("orderId") is None:
            raise p.HttpError(400, "orderId is required")
        ent["modifiedAt"] = p.now_iso()
        rows = self.store.by_apply_id(str(ent["orderId"]))
        if rows:
            cur = rows[0]
            cur.update({k: v for k, v in ent.items() if v is not None})
            self.store.update(cur)
        else:
            for f, _ in self.svc["fields"]:
                ent.setdefault(f, None)
            cur = self.store.insert(ent)
        return 200, p.HAL, p.dumps(self.render(cur, host)), True


p.Service = ShopService

if __name__ == "__main__":
    sys.exit(p.main())
