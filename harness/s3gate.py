"""The S3 gate: an HTTP-aware fault proxy between the Flink job and the object store.

Toxiproxy sees TCP only; S3 faults that matter to an exactly-once file sink are about *requests*: the store
answering ``503 SlowDown``, a ``CompleteMultipartUpload`` (the moment a part file becomes visible) failing or
hanging.  The job's S3 traffic goes Flink -> Toxiproxy (route ``s3``) -> this gate -> MinIO; the harness's
own S3 clients talk to MinIO directly, so a gate fault hits the job and never the judge.

Standalone (standard library only), run as ``python harness/s3gate.py --listen P --upstream U --control C
--log FILE``.  Every request is forwarded byte for byte (headers too: the SigV4 signature covers ``Host``),
and logged as one JSON line (op, status, bytes, ms, injected; ``code``: the S3 error code of an error answer
from the store, e.g. ``RequestTimeTooSkewed``).  The control port answers:

- ``GET /health``; ``GET /stats``: requests and injected faults by S3 operation since start;
- ``PUT /fault`` ``{"mode": "slowdown" | "fail" | "hang", "ops": [...], "probability": p, "hang_ms": n,
  "exclude": [...]}``: from now on answer matching requests (of those operations, whose path contains none of
  the ``exclude`` strings) with 503 SlowDown, 500 InternalError, or hold them ``hang_ms`` before forwarding;
  ``DELETE /fault`` ends it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ERRORS = {"slowdown": (503, "SlowDown", "Please reduce your request rate."),
          "fail": (500, "InternalError", "We encountered an internal error. Please try again.")}
#: hop-by-hop headers a proxy does not forward
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}
#: not forwarded either: the gate answered ``Expect: 100-continue`` itself and holds the whole body
NOT_FORWARDED = HOP | {"content-length", "expect"}


#: (method, query parameter present, operation), tried in order: the multipart and batch calls
_QUERY_OPS = (("POST", "uploads", "CreateMultipartUpload"), ("POST", "uploadId", "CompleteMultipartUpload"),
              ("POST", "delete", "DeleteObjects"), ("PUT", "partNumber", "UploadPart"),
              ("DELETE", "uploadId", "AbortMultipartUpload"), ("GET", "uploadId", "ListParts"))
#: method -> (operation on an object, operation on a bucket)
_PLAIN_OPS = {"PUT": ("PutObject", "CreateBucket"), "GET": ("GetObject", "ListObjects"),
              "HEAD": ("HeadObject", "HeadBucket"), "DELETE": ("DeleteObject", "DeleteBucket")}


def s3_operation(method: str, path: str) -> str:
    """The S3 API operation of a path-style request (bucket/key in the path), from method and query."""
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    for verb, param, op in _QUERY_OPS:
        if method == verb and param in query:
            return op
    if method in _PLAIN_OPS:
        on_object, on_bucket = _PLAIN_OPS[method]
        return on_object if parts.path.strip("/").count("/") >= 1 else on_bucket
    return f"{method}?"


def error_code(body: bytes) -> str | None:
    """The S3 error code of an error answer's XML body (``RequestTimeTooSkewed``, ``AccessDenied``, ...)."""
    m = re.search(rb"<Code>([^<]{1,64})</Code>", body[:4096])
    return m.group(1).decode("ascii", "replace") if m else None


class Gate:
    def __init__(self, upstream: tuple[str, int], log_path: str | None) -> None:
        self.upstream = upstream
        self.lock = threading.Lock()
        self.fault: dict[str, Any] | None = None
        self.stats: dict[str, dict[str, int]] = {}
        self.rng = random.Random()
        self.log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115 - lives with the process

    def decide(self, op: str, path: str = "") -> dict[str, Any] | None:
        with self.lock:
            self.stats.setdefault(op, {"requests": 0, "injected": 0, "unreachable": 0})["requests"] += 1
            f = self.fault
            if f is None or (f.get("ops") and op not in f["ops"]) \
                    or any(x in path for x in f.get("exclude", ())) or self.rng.random() >= f.get("probability", 1.0):
                return None
            self.stats[op]["injected"] += 1
            return dict(f)

    def record(self, entry: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write(json.dumps(entry) + "\n")


def make_handler(gate: Gate) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # TCP_NODELAY: an answer leaves in two writes (headers, then body), and with Nagle on the body waited for
        # the client's delayed ACK of the headers, 40 ms on Linux: every S3 call with an answer body
        # (CreateMultipartUpload, CompleteMultipartUpload, ListObjects) took ~45 ms instead of ~4 through the gate
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:   # one JSON line per request instead
            return

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            length = str(len(body))
            for k, v in headers:
                if k.lower() == "content-length" and self.command == "HEAD":
                    length = v      # a HEAD answer has no body but says how long the object is
                elif k.lower() not in HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self) -> None:
            started = time.monotonic()
            op = s3_operation(self.command, self.path)
            body = self._body()
            fault = gate.decide(op, self.path)
            entry: dict[str, Any] = {"ts_ms": int(time.time() * 1000), "method": self.command, "op": op,
                                     "path": self.path[:200], "bytes_in": len(body), "injected": None}
            if fault is not None and fault["mode"] in ERRORS:
                status, code, message = ERRORS[fault["mode"]]
                xml = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}'
                       f"</Message><Resource>{self.path}</Resource><RequestId>s3gate</RequestId></Error>").encode()
                self._reply(status, [("Content-Type", "application/xml")], xml)
                gate.record({**entry, "status": status, "injected": fault["mode"],
                             "ms": round((time.monotonic() - started) * 1000)})
                return
            if fault is not None and fault["mode"] == "hang":
                time.sleep(float(fault.get("hang_ms", 5000)) / 1000)
                entry["injected"] = "hang"
            conn = http.client.HTTPConnection(*gate.upstream, timeout=300)
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    if k.lower() not in NOT_FORWARDED:
                        conn.putheader(k, v)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                self._reply(resp.status, resp.getheaders(), data)
                err = error_code(data) if resp.status >= 400 else None
                gate.record({**entry, "status": resp.status, "bytes_out": len(data), **({"code": err} if err else {}),
                             "ms": round((time.monotonic() - started) * 1000)})
            except OSError as exc:
                with gate.lock:   # the store was not there for this request of the job (evidence of an outage)
                    gate.stats[op]["unreachable"] += 1
                self._reply(502, [("Content-Type", "text/plain")], f"s3gate: upstream {exc}".encode())
                gate.record({**entry, "status": 502, "error": str(exc)[:200]})
            finally:
                conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler


def make_control(gate: Gate) -> type[BaseHTTPRequestHandler]:
    class Control(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _json(self, status: int, data: Any) -> None:
            out = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._json(200, {"ok": True})
            elif self.path == "/stats":
                with gate.lock:
                    self._json(200, {"fault": gate.fault, "ops": gate.stats})
            else:
                self._json(404, {"error": self.path})

        def do_PUT(self) -> None:
            spec = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if spec.get("mode") not in (*ERRORS, "hang"):
                self._json(400, {"error": f"unknown mode {spec.get('mode')!r}: slowdown, fail or hang"})
                return
            with gate.lock:
                gate.fault = spec
            gate.record({"ts_ms": int(time.time() * 1000), "control": "fault", **spec})
            self._json(200, spec)

        def do_DELETE(self) -> None:
            with gate.lock:
                gate.fault = None
            gate.record({"ts_ms": int(time.time() * 1000), "control": "clear"})
            self._json(200, {"fault": None})

    return Control


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--upstream", type=int, required=True)
    ap.add_argument("--control", type=int, required=True)
    ap.add_argument("--log")
    args = ap.parse_args()
    gate = Gate(("127.0.0.1", args.upstream), args.log)
    control = ThreadingHTTPServer(("127.0.0.1", args.control), make_control(gate))
    threading.Thread(target=control.serve_forever, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", args.listen), make_handler(gate))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
