#!/usr/bin/env python3
"""Example saga participants for sagad: the class / payment / delivery services of seed 000
("Online Class Application"), behaving like the seed's Spring Boot + Spring Data REST services
(verbatim field names and status values, typos included: payStaus, PaymentAprroved,
telelephoneInfo), plus what a saga test needs: Idempotency-Key handling, SQLite persistence
across restarts, an operations log ordered by CLOCK_MONOTONIC, and fault injection.

    participant.py SERVICE --port N --db FILE [--host 127.0.0.1] [--port-file FILE]

SERVICE is class, payment or delivery.  Python 3 standard library only.
See README.md next to this file for the contracts.
"""

import argparse
import datetime
import fnmatch
import json
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from faults import FaultTable

# --------------------------------------------------------------------------------------------
# The three services.  "fields" are the entity's properties in declaration order with their
# Java types ("String" or "Long"); id is always a Long assigned by the store.

SERVICES = {
    "class": {
        "collection": "classes",
        "rel": "class",
        "table": "Class_table",
        "fields": [("studentName", "String"), ("classId", "String"), ("addr", "String"),
                   ("telephoneInfo", "String"), ("payMethod", "String"),
                   ("payAccount", "String"), ("applyStatus", "String"), ("courseId", "Long")],
        "status_field": "applyStatus",
        "created_status": "ApplyRequest",
        "canceled_status": "CLASS_CANCELED",
        "apply_id_field": None,          # the class id IS the applyId of the other services
        "create_status_code": 201,
    },
    "payment": {
        "collection": "payments",
        "rel": "payment",
        "table": "Payment_table",
        "fields": [("applyId", "String"), ("payMethod", "String"), ("payAccount", "String"),
                   ("payStaus", "String"), ("addr", "String"), ("telephoneInfo", "String"),
                   ("studentName", "String")],
        "status_field": "payStaus",
        "created_status": "PaymentAprroved",
        "canceled_status": "PaymentCancelled",
        "apply_id_field": "applyId",
        "create_status_code": 200,       # Feign: boolean payApprove(Payment) -> true/false
    },
    "delivery": {
        "collection": "deliveries",
        "rel": "delivery",
        "table": "delivery_table",
        "fields": [("applyId", "String"), ("addr", "String"), ("deliveryStatus", "String"),
                   ("name", "String"), ("telelephoneInfo", "String")],
        "status_field": "deliveryStatus",
        "created_status": "DeliveryStart",
        "canceled_status": "DELIVERY_CANCEL",
        "apply_id_field": "applyId",
        "create_status_code": 201,
    },
}

DECLINED_ACCOUNT_PREFIX = "0000"   # payment: payAccount starting with this is declined
MUTATING = ("POST", "PUT", "PATCH", "DELETE")
HAL = "application/hal+json"
JSON_CT = "application/json"


class HttpError(Exception):
    """A handled error answer: Spring Boot's error body shape."""

    def __init__(self, status, message=""):
        super().__init__(message)
        self.status = status
        self.message = message


REASONS = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 422: "Unprocessable Entity", 500: "Internal Server Error",
           503: "Service Unavailable"}


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "+0000")


def spring_error(status, path, message=""):
    return {"timestamp": now_iso(), "status": status,
            "error": REASONS.get(status, "Error"), "message": message, "path": path}


def dumps(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# Storage: one SQLite connection shared by all threads behind one lock.  Every mutating
# request runs "look up the key, apply, store the answer, log" as one transaction under the
# lock, so concurrent repeats of one Idempotency-Key apply exactly once.

class Store:
    def __init__(self, path, service):
        self.svc = SERVICES[service]
        self.service = service
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                  timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")   # WAL: commits survive a SIGKILL
        t = self.svc["table"]
        self.db.executescript(f"""
            CREATE TABLE IF NOT EXISTS {t} (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                apply_id TEXT,
                data TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS {t}_apply_id ON {t}(apply_id);
            CREATE TABLE IF NOT EXISTS idempotency (
                key TEXT PRIMARY KEY,
                method TEXT NOT NULL,
                path TEXT NOT NULL,
                status INTEGER NOT NULL,
                content_type TEXT,
                body TEXT,
                mono_ns INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS oplog (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                mono_ns INTEGER NOT NULL,
                wall_time TEXT NOT NULL,
                pid INTEGER NOT NULL,
                service TEXT NOT NULL,
                method TEXT NOT NULL,
                path TEXT NOT NULL,
                idempotency_key TEXT,
                traceparent TEXT,
                applied INTEGER NOT NULL,
                changed INTEGER NOT NULL DEFAULT 0,
                outcome TEXT NOT NULL,
                status INTEGER NOT NULL,
                request_body TEXT,
                response_body TEXT);
        """)

    # entity rows -------------------------------------------------------------------------
    def insert(self, ent):
        t = self.svc["table"]
        cur = self.db.execute(f"INSERT INTO {t}(apply_id, data) VALUES (?, '{{}}')",
                              (self._apply_id(ent),))
        ent = dict(ent)
        ent["id"] = cur.lastrowid
        self.update(ent)
        return ent

    def update(self, ent):
        t = self.svc["table"]
        self.db.execute(f"UPDATE {t} SET apply_id = ?, data = ? WHERE id = ?",
                        (self._apply_id(ent), dumps(ent), ent["id"]))

    def delete(self, ent_id):
        t = self.svc["table"]
        return self.db.execute(f"DELETE FROM {t} WHERE id = ?", (ent_id,)).rowcount

    def get(self, ent_id):
        t = self.svc["table"]
        row = self.db.execute(f"SELECT data FROM {t} WHERE id = ?", (ent_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def by_apply_id(self, apply_id):
        t = self.svc["table"]
        return [json.loads(r[0]) for r in self.db.execute(
            f"SELECT data FROM {t} WHERE apply_id = ? ORDER BY id", (apply_id,))]

    def page(self, page, size):
        t = self.svc["table"]
        total = self.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        rows = [json.loads(r[0]) for r in self.db.execute(
            f"SELECT data FROM {t} ORDER BY id LIMIT ? OFFSET ?", (size, page * size))]
        return rows, total

    def _apply_id(self, ent):
        f = self.svc["apply_id_field"]
        return ent.get(f) if f else None

    # idempotency -------------------------------------------------------------------------
    def key_get(self, key):
        return self.db.execute(
            "SELECT method, path, status, content_type, body FROM idempotency WHERE key = ?",
            (key,)).fetchone()

    def key_put(self, key, method, path, status, ctype, body):
        self.db.execute(
            "INSERT INTO idempotency(key, method, path, status, content_type, body, mono_ns)"
            " VALUES (?,?,?,?,?,?,?)",
            (key, method, path, status, ctype, body, time.monotonic_ns()))

    # operations log ----------------------------------------------------------------------
    def log(self, mono_ns, method, path, key, traceparent, applied, outcome, status,
            request_body, response_body, changed=0):
        self.db.execute(
            "INSERT INTO oplog(mono_ns, wall_time, pid, service, method, path,"
            " idempotency_key, traceparent, applied, changed, outcome, status, request_body,"
            " response_body) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (mono_ns, now_iso(), os.getpid(), self.service, method, path, key, traceparent,
             applied, 1 if changed else 0, outcome, status, request_body, response_body))

    def log_rows(self, since=0):
        out = []
        cols = ("seq", "mono_ns", "wall_time", "pid", "service", "method", "path",
                "idempotency_key", "traceparent", "applied", "changed", "outcome", "status",
                "request_body", "response_body")
        for r in self.db.execute(
                "SELECT " + ",".join(cols) + " FROM oplog WHERE seq > ? ORDER BY seq",
                (since,)):
            d = dict(zip(cols, r))
            for k in ("request_body", "response_body"):
                if d[k] is not None and d[k] != "":
                    try:
                        d[k] = json.loads(d[k])
                    except ValueError:
                        pass
                elif d[k] == "":
                    d[k] = None
            out.append(d)
        return out


# --------------------------------------------------------------------------------------------
# Faults (memory only).

class Faults(FaultTable):
    """Faults on (method, path): answer a status/body after a delay, with or without applying."""

    def add(self, spec):
        if not isinstance(spec, dict):
            raise HttpError(400, "fault must be a JSON object")
        f = {
            "method": str(spec.get("method", "*")).upper(),
            "path": spec.get("path", "*"),
            "status": int(spec.get("status", 500)),
            "times": int(spec.get("times", 1)),
            "delay_ms": int(spec.get("delay_ms", 0)),
            "body": spec.get("body"),
            "headers": spec.get("headers") or {},
        }
        f["apply"] = bool(spec.get("apply", f["status"] == 0))
        if not isinstance(f["path"], str) or not isinstance(f["headers"], dict):
            raise HttpError(400, "path must be a string, headers an object")
        try:
            return super().add(f)
        except ValueError as e:
            raise HttpError(400, str(e))

    def take(self, method, path):
        """The first fault matching (method, path without query), its count consumed."""
        return super().take(lambda f: f["method"] in ("*", method) and (
            f["path"] == path or fnmatch.fnmatchcase(path, f["path"])))


# --------------------------------------------------------------------------------------------
# The service logic: returns (status, content_type, body_text, changed) for one request.

class Service:
    def __init__(self, name, store):
        self.name = name
        self.svc = SERVICES[name]
        self.store = store

    # representation ----------------------------------------------------------------------
    def base(self, host):
        return "http://%s" % (host or "localhost")

    def render(self, ent, host):
        out = {"id": ent["id"]}
        for f, _ in self.svc["fields"]:
            out[f] = ent.get(f)
        href = "%s/%s/%d" % (self.base(host), self.svc["collection"], ent["id"])
        out["_links"] = {"self": {"href": href}, self.svc["rel"]: {"href": href}}
        return out

    def render_list(self, ents, host, self_href, page=None):
        out = {"_embedded": {self.svc["collection"]: [self.render(e, host) for e in ents]},
               "_links": {"self": {"href": self_href}}}
        if page is not None:
            out["_links"]["profile"] = {
                "href": "%s/profile/%s" % (self.base(host), self.svc["collection"])}
            out["_links"]["search"] = {
                "href": "%s/%s/search" % (self.base(host), self.svc["collection"])}
            out["page"] = page
        return out

    # coercion like Jackson: scalars to String, integral numbers/strings to Long ----------
    def coerce(self, body, allowed):
        if not isinstance(body, dict):
            raise HttpError(400, "JSON parse error: expected an object")
        types = dict(self.svc["fields"])
        out = {}
        for k, v in body.items():
            if k not in allowed:
                continue                  # unknown properties are ignored (Spring Boot)
            t = types[k]
            if v is None:
                out[k] = None
            elif t == "String":
                if isinstance(v, (dict, list)):
                    raise HttpError(400, "JSON parse error: %s must be a String" % k)
                out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
            else:  # Long
                try:
                    if isinstance(v, bool):
                        raise ValueError
                    if isinstance(v, float):
                        if not v.is_integer():
                            raise ValueError
                        v = int(v)
                    out[k] = int(v)
                except (TypeError, ValueError):
                    raise HttpError(400, "JSON parse error: %s must be a Long" % k)
        return out

    # request dispatch ----------------------------------------------------------------------
    def handle(self, method, path, query, body, host):
        coll = "/" + self.svc["collection"]
        parts = [p for p in path.split("/") if p]
        if not parts or "/" + parts[0] != coll:
            raise HttpError(404, "No mapping for %s %s" % (method, path))
        if len(parts) == 1:
            if method == "GET":
                return self.list_all(query, host, path)
            if method == "POST":
                return self.create(body, host)
            if method == "PATCH" and self.svc["apply_id_field"]:
                return self.cancel_by_apply_id(query, body, host)
            raise HttpError(405, "Request method '%s' not supported" % method)
        if parts[1] == "search":
            if len(parts) == 3 and parts[2] == "findByApplyId" and self.svc["apply_id_field"] \
                    and method == "GET":
                apply_id = self.q1(query, "applyId")
                ents = self.store.by_apply_id(apply_id)
                href = "%s%s?applyId=%s" % (self.base(host), path, apply_id)
                return 200, HAL, dumps(self.render_list(ents, host, href)), False
            raise HttpError(404, "No search resource %s" % path)
        if len(parts) != 2:
            raise HttpError(404, "No mapping for %s %s" % (method, path))
        try:
            ent_id = int(parts[1])
        except ValueError:
            raise HttpError(404, "No %s with id %s" % (self.svc["rel"], parts[1]))
        if method == "GET":
            ent = self.store.get(ent_id)
            if ent is None:
                raise HttpError(404, "No %s with id %d" % (self.svc["rel"], ent_id))
            return 200, HAL, dumps(self.render(ent, host)), False
        if method in ("PATCH", "PUT"):
            return self.cancel_by_id(ent_id, body, host)
        if method == "DELETE":
            if not self.store.delete(ent_id):
                raise HttpError(404, "No %s with id %d" % (self.svc["rel"], ent_id))
            return 204, None, "", True
        raise HttpError(405, "Request method '%s' not supported" % method)

    @staticmethod
    def q1(query, name):
        v = query.get(name)
        if not v or v[0] == "":
            raise HttpError(400, "Required request parameter '%s' is not present" % name)
        return v[0]

    def list_all(self, query, host, path):
        try:
            page = max(0, int(query.get("page", ["0"])[0]))
            size = min(2000, max(1, int(query.get("size", ["20"])[0])))
        except ValueError:
            raise HttpError(400, "page and size must be integers")
        ents, total = self.store.page(page, size)
        pg = {"size": size, "totalElements": total, "totalPages": (total + size - 1) // size,
              "number": page}
        href = "%s%s{?page,size,sort}" % (self.base(host), path)
        return 200, HAL, dumps(self.render_list(ents, host, href, pg)), False

    def create(self, body, host):
        allowed = {f for f, _ in self.svc["fields"]}
        ent = self.coerce(body, allowed)
        for f in allowed:
            ent.setdefault(f, None)
        if self.name == "payment":
            acct = ent.get("payAccount") or ""
            if acct.startswith(DECLINED_ACCOUNT_PREFIX):
                # Declined: payApprove answers false and nothing is saved.
                return 200, JSON_CT, "false", False
        ent[self.svc["status_field"]] = self.svc["created_status"]
        ent = self.store.insert(ent)
        if self.name == "payment":
            return 200, JSON_CT, "true", True
        return self.svc["create_status_code"], HAL, dumps(self.render(ent, host)), True

    def cancel_fields(self, body):
        """PATCH merges the known properties of body (never id or the applyId) and then, as
        the seed's @PostUpdate does, every update is a cancel: the status is forced."""
        if body is None:
            body = {}
        allowed = {f for f, _ in self.svc["fields"]} - {"applyId"}
        return self.coerce(body, allowed)

    def cancel(self, ent, changes):
        ent.update(changes)
        ent[self.svc["status_field"]] = self.svc["canceled_status"]
        self.store.update(ent)
        return ent

    def cancel_by_id(self, ent_id, body, host):
        changes = self.cancel_fields(body)
        ent = self.store.get(ent_id)
        if ent is None:
            raise HttpError(404, "No %s with id %d" % (self.svc["rel"], ent_id))
        ent = self.cancel(ent, changes)
        return 200, HAL, dumps(self.render(ent, host)), True

    def cancel_by_apply_id(self, query, body, host):
        apply_id = self.q1(query, "applyId")
        changes = self.cancel_fields(body)
        ents = self.store.by_apply_id(apply_id)
        if not ents:
            raise HttpError(404, "No %s with applyId %s" % (self.svc["rel"], apply_id))
        ents = [self.cancel(e, changes) for e in ents]
        # All rows with that applyId are cancelled (the seed loops over findByApplyId);
        # the answer is the first (lowest id) of them.
        return 200, HAL, dumps(self.render(ents[0], host)), True


# --------------------------------------------------------------------------------------------
# HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: without TCP_NODELAY, Nagle holds the body
    # until the client's delayed ACK (~40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True
    server_version = "participant/1"

    def version_string(self):
        return self.server_version

    # set on the class by main()
    service = None
    store = None
    faults = None
    name = None

    def log_message(self, fmt, *args):   # replaced by one line per request in finish_request
        pass

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # body reading: Content-Length or chunked ---------------------------------------------
    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send(self, status, ctype, body, extra_headers=None):
        data = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        self.send_response(status)
        if ctype and (data or status != 204):
            self.send_header("Content-Type", ctype)
        for k, v in (extra_headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)
        self.wfile.flush()

    def dispatch(self):
        t0 = time.monotonic()
        method = self.command
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query, keep_blank_values=True)
        full_path = self.path
        key = self.headers.get("Idempotency-Key")
        traceparent = self.headers.get("traceparent")
        outcome = "?"
        status = 0
        try:
            raw = self.read_body()
            if path.startswith("/_control/"):
                status = self.control(method, path, query, raw)
                outcome = "control"
            else:
                status, outcome = self.business(method, path, full_path, query, raw, key,
                                                traceparent)
        except (BrokenPipeError, ConnectionResetError):
            outcome += "+client-gone"
            self.close_connection = True
        ms = (time.monotonic() - t0) * 1000
        sys.stderr.write("%s %s[%d] %s %s -> %s %s%s%s %.1fms\n" % (
            now_iso(), self.name, os.getpid(), method, full_path, status, outcome,
            (" key=" + key) if key else "", (" tp=" + traceparent) if traceparent else "", ms))
        sys.stderr.flush()

    # control endpoints --------------------------------------------------------------------
    def control(self, method, path, query, raw):
        try:
            if path == "/_control/health" and method == "GET":
                body = {"status": "UP", "service": self.name, "pid": os.getpid()}
                self.send(200, JSON_CT, dumps(body))
                return 200
            if path == "/_control/log" and method == "GET":
                since = int(query.get("since", ["0"])[0] or 0)
                with self.store.lock:
                    rows = self.store.log_rows(since)
                self.send(200, JSON_CT, dumps(rows))
                return 200
            if path == "/_control/faults":
                if method == "POST":
                    try:
                        spec = json.loads(raw or b"null")
                    except ValueError:
                        raise HttpError(400, "fault body is not JSON")
                    specs = spec if isinstance(spec, list) else [spec]
                    added = [self.faults.add(s) for s in specs]
                    self.send(200, JSON_CT, dumps(added if isinstance(spec, list) else added[0]))
                    return 200
                if method == "DELETE":
                    n = self.faults.clear()
                    self.send(200, JSON_CT, dumps({"cleared": n}))
                    return 200
                if method == "GET":
                    self.send(200, JSON_CT, dumps(self.faults.list()))
                    return 200
            raise HttpError(404, "No control endpoint %s %s" % (method, path))
        except HttpError as e:
            self.send(e.status, JSON_CT, dumps(spring_error(e.status, path, e.message)))
            return e.status
        except (TypeError, ValueError) as e:
            self.send(400, JSON_CT, dumps(spring_error(400, path, str(e))))
            return 400

    # business endpoints -------------------------------------------------------------------
    def business(self, method, path, full_path, query, raw, key, traceparent):
        store = self.store
        req_text = raw.decode("utf-8", "replace")
        fault = self.faults.take(method, path)

        if fault and not fault["apply"]:
            # Not applied: wait, then answer the fault (or drop the connection).
            if fault["delay_ms"] > 0:
                time.sleep(fault["delay_ms"] / 1000.0)
            fstatus = fault["status"]
            fbody = self.fault_body(fault, path)
            with store.lock:
                store.log(time.monotonic_ns(), method, full_path, key, traceparent, 0, "fault",
                          fstatus, req_text, fbody)
            if fstatus < 0:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return fstatus, "fault-dropped"
            self.send(fstatus, JSON_CT, fbody, fault["headers"])
            return fstatus, "fault"

        host = self.headers.get("Host")
        use_key = key if (key and method in MUTATING) else None
        with store.lock:
            mono = time.monotonic_ns()
            store.db.execute("BEGIN IMMEDIATE")
            try:
                changed = False
                prior = store.key_get(use_key) if use_key else None
                if prior is not None:
                    pmethod, ppath, status, ctype, body = prior
                    if (pmethod, ppath) != (method, full_path):
                        status, ctype = 422, JSON_CT
                        body = dumps(spring_error(
                            422, path, "Idempotency-Key %s was used for %s %s" %
                            (use_key, pmethod, ppath)))
                        outcome, applied = "key-mismatch", 0
                    else:
                        outcome, applied = "replayed", 0
                else:
                    try:
                        body_json = json.loads(raw) if raw.strip() else None
                    except ValueError:
                        raise HttpError(400, "JSON parse error")
                    try:
                        status, ctype, body, changed = self.service.handle(
                            method, path, query, body_json, host)
                    except HttpError as e:
                        status, ctype, changed = e.status, JSON_CT, False
                        body = dumps(spring_error(e.status, path, e.message))
                    applied = 1 if method in MUTATING else 0
                    outcome = "applied" if method in MUTATING else "read"
                    if use_key:
                        store.key_put(use_key, method, full_path, status, ctype, body)
                store.log(mono, method, full_path, key, traceparent, applied, outcome, status,
                          req_text, body, changed)
                store.db.execute("COMMIT")
            except HttpError as e:
                store.db.execute("ROLLBACK")
                status, ctype = e.status, JSON_CT
                body = dumps(spring_error(e.status, path, e.message))
                applied, outcome = 0, "rejected"
                store.log(mono, method, full_path, key, traceparent, 0, outcome, status,
                          req_text, body)
            except BaseException:
                store.db.execute("ROLLBACK")
                raise

        if fault:   # fault with apply: the request was applied; now delay and/or alter
            if fault["delay_ms"] > 0:
                time.sleep(fault["delay_ms"] / 1000.0)
            if fault["status"] < 0:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return fault["status"], outcome + "+fault-dropped"
            if fault["status"] > 0:
                fbody = self.fault_body(fault, path)
                self.send(fault["status"], JSON_CT, fbody, fault["headers"])
                return fault["status"], outcome + "+fault"
            outcome += "+delayed"
        self.send(status, ctype, body)
        return status, outcome

    @staticmethod
    def fault_body(fault, path):
        if fault["status"] <= 0:
            return ""
        if fault["body"] is None:
            return dumps(spring_error(fault["status"], path, "injected fault"))
        return fault["body"] if isinstance(fault["body"], str) else dumps(fault["body"])


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser(description="seed-000 example participant for sagad")
    ap.add_argument("service", choices=sorted(SERVICES))
    ap.add_argument("--port", type=int, required=True, help="0 picks a free port")
    ap.add_argument("--db", required=True, help="SQLite file (created when missing)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    args = ap.parse_args()

    store = Store(args.db, args.service)
    Handler.service = Service(args.service, store)
    Handler.store = store
    Handler.faults = Faults()
    Handler.name = args.service

    srv = Server((args.host, args.port), Handler)
    port = srv.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)

    def on_signal(signum, frame):
        # shutdown() waits for serve_forever() to return: call it from another thread.
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sys.stderr.write("%s %s[%d] listening on http://%s:%d db=%s\n" % (
        now_iso(), args.service, os.getpid(), args.host, port, args.db))
    sys.stderr.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
        with store.lock:
            store.db.close()
        sys.stderr.write("%s %s[%d] stopped\n" % (now_iso(), args.service, os.getpid()))
        sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
