#!/usr/bin/python3
"""Seed 004 ("ssak5") `message` service for sagad: the notification service ("알림") that
consumes the seed's events over Kafka and stores one Message(requestId, status) per event.

    ssak5_message.py message --bootstrap SERVERS --db FILE [--topic ssak5-events]
                     [--group message] [--control-port N --control-port-file F]

Built on examples/participants/kafka_participant.py (consumer group, offsets committed only
after the SQLite commit, idempotent by the `idempotency-key` header, op log, faults, control
HTTP): this module adds the `message` service to its SERVICES table and its event handler.
The seed's policies, one Message row per event:
  wheneverPayConfirmed_MessageAlert        PayConfirmed       (status "PaymentCompleted")
  wheneverPayCancelConfirmed_MessageAlert  PayCancelConfirmed (status "PaymentCancelCompleted")
  wheneverCleaningConfirmed_MessageAlert   CleaningConfirmed
  (registration/change, FR 2 and 3)        KindRegistered, KindChanged
Message.status is the event's `status` field, else its event type.  Other event types are
ignored (committed, logged `ignored`).  GET /messages[?requestId=N] on the control port lists
them (HAL, like GET http://message:8080/messages in the seed).  A message service that was
down reads the events it missed when it comes back (its group's committed offsets; a new group
starts from the earliest offset): the seed's "missed events re-consumed" check.

Needs Debian's python3-confluent-kafka (hence /usr/bin/python3).
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "participants"))

import kafka_participant as kp  # noqa: E402  (after the path insert)

MESSAGE_EVENTS = ("PayConfirmed", "PayCancelConfirmed", "CleaningConfirmed", "KindRegistered",
                  "KindChanged")

kp.SERVICES["message"] = {"topics": ["ssak5-events"], "reply_topic": None,
                          "collection": "messages", "rel": "message"}

_notification = kp.handle_notification


def handle_message(store, event_type, body, text, hdrs, rec):
    """Message(requestId, status) for the seed's events; the notification service otherwise."""
    if kp.NAME != "message":
        return _notification(store, event_type, body, text, hdrs, rec)
    if event_type not in MESSAGE_EVENTS or not isinstance(body, dict):
        return None, False, "ignored"
    request_id = body.get("requestId")
    msg = {"requestId": request_id, "status": kp.as_str(body.get("status")) or event_type,
           "eventType": event_type, "sagaId": hdrs.get("saga-id"),
           "topic": rec["topic"], "partition": rec["partition"], "offset": rec["offset"],
           "receivedAt": kp.now_iso(), "timestamp": int(time.time() * 1000)}
    store.message_insert(msg)
    return None, True, "applied"


kp.handle_notification = handle_message   # Participant.process() calls it by this name


class MessageHandler(kp.Handler):
    """GET /messages?requestId=N filters by the correlation key (the base filters by sagaId)."""

    def dispatch(self):
        url = kp.urlsplit(self.path)
        q = kp.parse_qs(url.query)
        if self.command == "GET" and url.path.rstrip("/") == "/messages" and "requestId" in q:
            want = q["requestId"][0]
            with self.part.store.lock:
                rows = [m for m in self.part.store.messages()
                        if kp.as_str(m.get("requestId")) == want]
            return self.send(200, {"_embedded": {"messages": rows},
                                   "page": {"size": len(rows), "totalElements": len(rows),
                                            "totalPages": 1, "number": 0}}, kp.HAL)
        return super().dispatch()


kp.Handler = MessageHandler

if __name__ == "__main__":
    sys.exit(kp.main())
