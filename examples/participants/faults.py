"""faults.py: the fault table the example participants share (HTTP and Kafka).

Tests inject faults through a participant's /_control/faults endpoint. A fault is a dict
whose "times" says how many matching requests it applies to (-1 = until cleared); the first
fault a request matches is consumed. What a fault matches and does is the participant's own
business: it passes a predicate to take().
"""
import threading


class FaultTable:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []
        self.next_id = 1

    def add(self, f):
        """Adds a fault the caller built and validated; gives it an id. ValueError on bad times."""
        if f["times"] == 0 or f["times"] < -1:
            raise ValueError("times must be >= 1 or -1 (until cleared)")
        with self.lock:
            f["id"] = self.next_id
            f["matched"] = 0
            self.next_id += 1
            self.items.append(f)
        return f

    def clear(self):
        with self.lock:
            n = len(self.items)
            self.items = []
            return n

    def list(self):
        with self.lock:
            return [dict(f) for f in self.items]

    def take(self, matches):
        """A copy of the first fault for which matches(fault) is true, its count consumed."""
        with self.lock:
            for f in self.items:
                if not matches(f):
                    continue
                f["matched"] += 1
                if f["times"] > 0:
                    f["times"] -= 1
                    if f["times"] == 0:
                        self.items.remove(f)
                return dict(f)
        return None
