"""The HTTP server: routing, and the OpenAI-compatible API's answers (JSON, SSE, faults) on top of `wire.Wire`
(sockets, bodies, streams). The Anthropic-compatible base (`/apps/anthropic/…`) is `anthropic.py`'s."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from http.server import ThreadingHTTPServer
from socketserver import TCPServer
from urllib.parse import parse_qsl, urlsplit

from . import admin, anthropic, batches, chat, faults, model_list, oauth, plans, responses, rules, vllm, web
from .cache import text_of, tokens
from .faults import dumps
from .state import State
from .wire import StreamCut, Wire

API_PREFIXES = ("/v1", "/compatible-mode/v1")
NOT_FOUND = {"error": {"code": "NotFound", "message": "Not found", "param": None, "type": "invalid_request_error"}}


class Handler(Wire):
    server: "EmulatorServer"

    def do_GET(self) -> None:
        self.dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def dispatch(self) -> None:
        try:
            self.route()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client went away mid-answer
        except StreamCut:
            self.close_connection = True  # a `cut` fault ended the stream (wire.Wire.cut_now)

    def route(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, dict(parse_qsl(url.query))
        raw = self.read_body()
        parsed = self.parse_body(raw)
        if path.startswith("/_emulator/"):
            body = parsed if isinstance(parsed, dict) else {}
            browser = "x-www-form-urlencoded" in self.headers.get("Content-Type", "")
            return admin.handle(self, path[len("/_emulator/"):], {**body, **query}, browser)
        if self.state.vllm is not None:  # --serve vllm: a self-hosted vLLM server, none of Qwen's services
            return vllm.route(self, path, raw, parsed)
        if responses.owns(path):  # Model Studio's own Responses API (before web.py, which owns the rest of /api/v2/)
            self.record(raw, parsed)
            return responses.route(self, path, parsed)
        if batches.owns(path):  # pay-as-you-go's Files and Batch APIs
            self.record(raw, parsed)
            return batches.serve(self, path, query, raw, parsed)
        if web.owns(path):  # the Qwen Chat web API (chat.qwen.ai, auth.qwen.ai): web.py
            return web.route(self, path, query, raw, parsed)
        on_anthropic = path.startswith(anthropic.PREFIX + "/")
        self.record(raw, parsed, redact=on_anthropic)
        if plans.refuses(path, self.headers.get("User-Agent", ""), self.state.switches):  # the Coding Plan's rule
            return self.send_json(405, plans.REFUSAL)
        if on_anthropic:  # Model Studio's Anthropic-compatible base: its own errors, even for 404 and 405
            return anthropic.route(self, path[len(anthropic.PREFIX):], parsed)
        form = parsed if isinstance(parsed, dict) else {}
        api = next((path[len(p):] for p in API_PREFIXES if path.startswith(p + "/")), None)
        routes = {
            "/api/v1/oauth2/device/code": {"POST": lambda: oauth.device_code(self, form)},
            "/api/v1/oauth2/token": {"POST": lambda: oauth.token(self, form)},
            "/api/v1/indices/plugin/web_search": {"POST": lambda: self.api(lambda _: (200, chat.web_search(parsed)))},
            model_list.PATH: {"GET": lambda: self.model_list(query)},  # Model Studio's own list, with prices
            "/authorize": {"GET": lambda: self.send_text(200, admin.authorize_page(query.get("user_code", "")),
                                                         "text/html; charset=utf-8")},
        }
        if api == "/chat/completions":
            routes[path] = {"POST": lambda: self.chat(raw)}
        elif api == "/embeddings":
            routes[path] = {"POST": lambda: self.api(lambda _: chat.embeddings(parsed), "embedding_requests")}
        elif api == "/models" or (api or "").startswith("/models/"):
            routes[path] = {"GET": lambda: self.listing(api[len("/models/"):])}
        methods = routes.get(path)
        if methods is None:
            return self.send_json(404, NOT_FOUND)
        if self.command not in methods:
            return self.send_bytes(405, b"", None, {"Allow": ", ".join(methods)})
        methods[self.command]()

    # ---- the API ---------------------------------------------------------------------------------

    def authorised(self) -> str | None:
        token = self.bearer()
        if self.state.valid(token):
            return token
        self.send_json(401, faults.auth_401())
        return None

    def api(self, answer, counter: str | None = None, metered: bool = True) -> None:
        """A JSON endpoint: auth, then (if metered) queued faults and rate limits, then answer(token)."""
        token = self.authorised()
        if token is None:
            return
        if counter:
            self.state.bump(counter)
        f = self.state.take_fault(faults.API_FAULTS, token, self.path) if metered else None
        if f and self.fault_answered(f, stream=False):
            return
        if metered and not self.within_limits(token):
            return
        status, body = answer(token)
        data = dumps(body)
        if f and self.fault_answered(f, False, data):
            return
        self.send_bytes(status, data, "application/json")

    def listing(self, model_id: str) -> None:
        """GET /models[/{id}]: held unanswered when the `model_list` drift hangs this key's lists (`compatible`)."""
        sw, key = self.state.snapshot(), self.bearer() or ""
        if not model_id and model_list.compatible_too(sw) and model_list.unreadable(sw, key) == model_list.HANG \
                and self.state.valid(key):
            return model_list.hold(self)
        self.api(lambda _: self.models(model_id), metered=False)

    def models(self, model_id: str) -> tuple[int, dict]:
        entry = lambda m: {"id": m, "object": "model", "created": 0, "owned_by": "qwen"}  # noqa: E731
        sw = self.state.snapshot()
        broken = model_list.unreadable(sw, self.bearer() or "") if model_list.compatible_too(sw) else None
        if not model_id and broken in model_list.UNREADABLE:  # the chat API's own error shape for that status
            return broken, chat.error(model_list.UNREADABLE[broken]["code"], model_list.UNREADABLE[broken]["message"])
        if not model_id:  # a key's list: what its plans serve, never the OAuth portal's own names (model_list.py)
            return 200, {"object": "list", "data": [entry(m) for m in model_list.listed(sw, self.key_models(sw))]}
        if model_id in chat.known_models(sw) and not rules.retired(model_id, sw.get("today")):
            return 200, entry(model_id)
        return 404, chat.error("model_not_found", f"The model `{model_id}` does not exist or you do not have "
                                                  "access to it.")

    def model_list(self, query: dict) -> None:
        """Model Studio's own list (`/api/v1/models`): the models this key's OpenAI-compatible list names, and the
        embedding models, with prices (model_list.py). Never metered; the `model_list` switch plays its drift, which
        changes the list only: chat still serves a model it omits (refusals stay `key_models`' and the rules')."""
        token = self.authorised()
        if token is not None:
            sw = self.state.snapshot()
            if model_list.unreadable(sw, token) == model_list.HANG:
                return model_list.hold(self)
            models = model_list.listed(sw, self.key_models(sw), embeddings=True)
            self.send_bytes(*model_list.answer(query, sw, models, token), "application/json")

    def key_models(self, sw: dict) -> list | None:
        """The models the presented key unlocks (the `key_models` switch), None: every model it serves."""
        lists = sw.get("key_models")
        own = lists.get(self.bearer() or "") if isinstance(lists, dict) else None
        return own if isinstance(own, list) else None

    def within_limits(self, token: str, prompt: int = 0) -> bool:
        """Counted against the key's account's limits (limits.py); False: refused as Model Studio refuses it."""
        refused = self.state.count(token, prompt, path=self.path)
        if refused:
            self.send_json(429, faults.LIMITS[refused])
        return not refused

    def chat(self, raw: bytes) -> None:
        token = self.authorised()
        if token is None:
            return
        self.state.bump("chat_requests")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = None
        stream = isinstance(body, dict) and body.get("stream") is True
        fault = self.state.take_fault(faults.API_FAULTS, token, self.path)
        if fault and self.fault_answered(fault, stream):
            return
        if body is None:
            return self.send_json(400, chat.error("invalid_parameter_error", "The request body is not valid JSON."))
        sw = self.state.snapshot()
        problem = chat.validate(body, sw)
        said = (problem[1].get("error") or {}) if problem else {}
        if stream and any(t in str(said.get("message")) for t in faults.STREAMED_REFUSALS):
            return self.streamed_refusal(said)
        if problem:
            return self.send_json(*problem)
        own = self.key_models(sw)
        if own is not None and body.get("model") not in own:  # a model this key does not unlock
            return self.send_json(403, faults.DENIED)
        if not self.within_limits(token, tokens("".join(text_of(m.get("content")) for m in body["messages"]))):
            return
        if not self.state.enter(token):
            return self.send_json(429, faults.CONCURRENCY)
        try:
            self.answer_chat(token, body, sw, stream, fault)
        finally:
            self.state.leave(token)

    def answer_chat(self, token: str, body: dict, sw: dict, stream: bool, fault: dict | None) -> None:
        plan = chat.plan(body, sw, self.state.cache.serve(token, body))
        self.state.served(token, plan["usage"])
        if sw["first_byte_delay_ms"] and not self.wait_unless_abandoned(sw["first_byte_delay_ms"] / 1000):
            return  # the client left before the answer began
        if not stream:
            answer = dumps(chat.completion(body, plan))
            if fault and self.fault_answered(fault, False, answer):
                return
            return self.send_bytes(200, answer, "application/json")
        self.stream(chat.chunks(body, plan, sw), sw, fault)

    def streamed_refusal(self, error: dict) -> None:
        """A refusal inside a 200 stream, in the wrapped shape Qwen sends it (faults.nested_error)."""
        self.start_stream()
        self.write_event(faults.nested_error(error, f"chatcmpl-{uuid.uuid4()}"), False)
        self.end_stream()

    def stream(self, events, sw: dict, queued: dict | None) -> None:
        fault = queued["kind"] if queued else None
        self.start_stream(fault=queued)
        content_sent = 0
        for i, event in enumerate(events):
            choices = event["choices"]
            tail = not choices or choices[0]["finish_reason"] is not None
            if fault == "stall" and i == 1:
                fault = None
                if self.server.stopping.wait(float(queued.get("seconds", sw["stall_seconds"]))):
                    return self.reset_connection()
            if fault in ("midstream504", "reset_midstream") and (content_sent >= 2 or tail):
                if fault == "reset_midstream":
                    return self.reset_connection()
                self.write_event(faults.MIDSTREAM_504, sw["split_writes"])
                self.end_stream()
                self.close_connection = True
                return
            if fault == "nested_error" and (content_sent >= int(queued.get("after", 0)) or tail):
                self.write_event(faults.nested_error(faults.nested_fault_error(queued), event["id"]), sw["split_writes"])
                self.end_stream()
                self.close_connection = True
                return
            if fault == "error_finish" and (content_sent >= 1 or tail):
                # R6: HTTP 200 all along; the error's text arrives as content with finish_reason error_finish.
                text = str(queued.get("message") or faults.ERROR_FINISH_TEXT)
                self.write_event(b"data: " + dumps({**event, "choices": [{
                    "index": 0, "delta": {"content": text}, "finish_reason": "error_finish", "logprobs": None}],
                    "usage": None}) + b"\n\n", sw["split_writes"])
                break
            if fault == "done_without_finish" and (content_sent >= int(queued.get("after", 1)) or tail):
                break  # part of the text, then [DONE]: no finish, no usage
            if i and sw["gap_ms"]:
                self.server.stopping.wait(sw["gap_ms"] / 1000)
            self.write_event(b"data: " + dumps(event) + b"\n\n", sw["split_writes"])
            if fault == "stall_before_usage" and choices and choices[0]["finish_reason"] is not None:
                # the finish, then silence: no usage, no [DONE], the body never ended
                self.wait_unless_abandoned(float(queued.get("seconds", sw["stall_seconds"])))
                return self.reset_connection()
            delta = choices[0]["delta"] if choices else {}
            content_sent += bool(delta.get("content") or delta.get("tool_calls"))
            if fault == "invalid_sse" and content_sent:
                fault = None
                self.write_event(faults.GARBAGE_SSE, sw["split_writes"])
        self.write_event(b"data: [DONE]\n\n", sw["split_writes"])
        if fault == "open_after_done":  # the whole answer sent, its body kept open (no last chunk) for a long time
            self.close_connection = True
            if not self.wait_unless_abandoned(float(queued.get("seconds", sw["stall_seconds"]))):
                return
        self.end_stream()


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], state: State, quiet: bool) -> None:
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        super().__init__(addr, Handler)
        self.state = state
        self.quiet = quiet
        self.stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # skips HTTPServer's getfqdn(), a DNS lookup that can hang offline
        self.server_name, self.server_port = self.server_address[:2]

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._conns_lock:
            (self._conns.add if alive else self._conns.discard)(conn)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
