"""The emulator's HTTP plumbing: sockets, request bodies, whole and chunked (SSE) answers, the request log and
the queued faults that need the socket itself (resets, stalls, non-JSON bodies). `server.Handler` routes on top."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl

from . import faults
from .faults import dumps
from .state import State

# Credentials the Anthropic base's request log never shows (docs/emulator.md: "Request log").
SECRET_HEADERS = ("authorization", "x-api-key")


class StreamCut(Exception):
    """The stream was cut where its `cut` fault said: nothing more is written (Handler.dispatch ends quietly)."""


class Wire(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "QwenEmulator/1.0"
    sys_version = ""
    cut: dict | None = None  # the `cut` fault of the stream being written, until it is played
    cut_sent = 0  # bytes of the stream's body written so far

    # ---- socket plumbing -------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Without it small writes wait for the peer's delayed ACK: a fake ~40 ms stall in benchmarks.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def wait_unless_abandoned(self, seconds: float) -> bool:
        """Wait before answering, as a slow model does; False (and counted in stats["abandoned"]) when the
        client closes its connection meanwhile, as a real server notices: a gateway that cancels the upstream
        request of a client that left shows here."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.server.stopping.wait(min(left, 0.05)):
                return True
            try:
                self.connection.setblocking(False)
                closed = self.connection.recv(1, socket.MSG_PEEK) == b""
            except (BlockingIOError, InterruptedError):
                closed = False
            except OSError:
                closed = True
            finally:
                self.connection.setblocking(True)
            if closed:
                self.state.bump("abandoned")
                self.close_connection = True
                return False
        return True

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, fmt, *args) -> None:
        if not self.server.quiet:
            super().log_message(fmt, *args)

    @property
    def state(self) -> State:
        return self.server.state

    def send_bytes(self, status: int, body: bytes, ctype: str | None, headers: dict | None = None) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, body, headers: dict | None = None) -> None:
        self.send_bytes(status, dumps(body), "application/json", headers)

    def send_text(self, status: int, text: str, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_bytes(status, text.encode(), ctype)

    def reset_connection(self) -> None:
        """Close with RST (SO_LINGER 0), as a crashed upstream does."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def start_stream(self, headers: dict | None = None, fault: dict | None = None) -> None:
        self.send_response(200)
        self.arm_cut(fault)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def arm_cut(self, fault: dict | None) -> None:
        """A `cut` fault plays on the stream about to be written: at byte `at` of its body (0: before the first),
        however the events fall — or, with `inside`, in the middle of that text where an event first holds it (a
        cut inside a `data:` line whatever the lengths before it) — `how` one of CUT_WAYS."""
        self.cut = fault if fault is not None and fault.get("kind") == "cut" else None
        self.cut_sent = 0

    def write_event(self, data: bytes, split: bool) -> None:
        """One SSE event as HTTP chunk(s); split: several writes cut at arbitrary byte positions."""
        inside = str(self.cut.get("inside") or "").encode() if self.cut is not None else b""
        if inside and inside in data:
            self.cut["at"] = self.cut_sent + data.index(inside) + len(inside) // 2
        if self.cut is not None and (not inside or "at" in self.cut) and \
                self.cut_sent + len(data) > int(self.cut.get("at", 0)):
            data = data[:int(self.cut.get("at", 0)) - self.cut_sent]
            if data:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.cut_now()
        self.cut_sent += len(data)
        parts = [data]
        if split and len(data) > 4:
            rnd = random.Random(len(data))
            cuts = sorted({1, rnd.randrange(2, len(data) - 1), len(data) - 1})
            parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        for part in parts:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            if split:
                time.sleep(0.001)  # separate TCP segments, not one coalesced write

    def end_stream(self) -> None:
        if self.cut is not None:  # a cut at or past the body's end: before its last chunk
            self.cut_now()
        self.wfile.write(b"0\r\n\r\n")
        self.state.streamed(self.cut_sent)

    def cut_now(self) -> None:
        """The stream's `cut` played: the connection ends as `how` says; raises StreamCut (nothing more is written)."""
        fault, self.cut = self.cut, None
        assert fault is not None
        how = fault.get("how") or "fin"
        self.close_connection = True
        if how == "end":
            self.wfile.write(b"0\r\n\r\n")
        elif how == "stall":  # silent, the connection open, until the client gives up or the time is over
            self.wait_unless_abandoned(float(fault.get("seconds", self.state.snapshot()["stall_seconds"])))
        if how in ("rst", "stall"):
            self.reset_connection()
        else:
            try:
                self.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        raise StreamCut(how)

    # ---- requests --------------------------------------------------------------------------------

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return bytes(out)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def parse_body(self, raw: bytes):
        """A form as a dict, JSON as parsed, else None."""
        try:
            if "x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
                return dict(parse_qsl(raw.decode(), keep_blank_values=True))
            return json.loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            return None

    def record(self, raw: bytes, parsed, redact: bool = False, extra: dict | None = None) -> None:
        """Logs the request; redact: credentials become "<redacted>", and `key_sha256` (the first 16 hex
        digits of the presented key's SHA-256) still tells a test which key arrived; `extra`: more keys for the entry
        (the vLLM mode's `ignored_fields`)."""
        headers: dict[str, str] = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        entry = {"method": self.command, "path": self.path, "headers": headers, "body": parsed,
                 "raw_body_len": len(raw), "time": time.time()}
        if redact:
            key = self.headers.get("x-api-key") or self.bearer()
            entry["key_sha256"] = hashlib.sha256(key.encode()).hexdigest()[:16] if key else None
            headers.update({k: "<redacted>" for k in SECRET_HEADERS if k in headers})
        self.state.log({**entry, **(extra or {})})

    def bearer(self) -> str:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth[:7].lower() == "bearer " else ""

    # ---- queued faults that need the socket ------------------------------------------------------

    def fault_answered(self, f: dict, stream: bool, partial: bytes = b"", headers: dict | None = None) -> bool:
        """Answers with a queued fault; False for stream faults the stream itself will play."""
        kind = f["kind"]
        extra = {"Retry-After": str(f["retry_after"])} if f.get("retry_after") is not None else {}
        extra.update(headers or {})
        if kind in faults.IMMEDIATE:
            self.send_json(*faults.IMMEDIATE[kind], headers=extra)
        elif kind == "auth401":
            self.send_json(401, faults.auth_401(), extra)
        elif kind == "echo_header400":
            name = str(f.get("header") or "User-Agent")
            self.send_json(400, faults.echo_header(self.headers.get(name, "")), extra)
        elif kind == "arrears400":
            self.send_json(400, faults.arrears_400(), extra)
        elif kind == "timeout504" or (kind == "midstream504" and not stream):
            self.send_bytes(504, b"stream timeout", "text/plain", extra)
        elif kind == "server500_empty":
            self.send_bytes(500, b"", None, extra)
        elif kind == "invalid_json" or (kind == "invalid_sse" and not stream):
            self.send_bytes(200, b"{not json", "application/json", headers)
        elif kind == "reset_before_headers":
            self.reset_connection()
        elif kind in ("stall", "reset_midstream") and not stream and partial:
            # A whole-body answer cut short: headers and half the body, then silence or RST.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(partial)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(partial[:len(partial) // 2])
            if kind == "stall":
                self.server.stopping.wait(float(f.get("seconds", self.state.snapshot()["stall_seconds"])))
            self.reset_connection()
        elif kind == "nested_error" and f.get("status"):
            # The wrapped refusal as an HTTP error's body (its `status`), stream asked or not: its shape kept
            body = faults.nested_error(faults.nested_fault_error(f), f"chatcmpl-{time.time_ns()}")
            self.send_bytes(int(f["status"]), body, "text/event-stream", extra)
        elif kind == "no_usage" and not stream and partial:
            # The whole answer without its `usage` (a proxy between that rewrote it, a body cut before it)
            answer = json.loads(partial)
            answer.pop("usage", None)
            self.send_bytes(200, dumps(answer), "application/json", headers)
        else:
            return False
        return True
