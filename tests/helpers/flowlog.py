"""Test-only mitmproxy script: one line per request the proxy received, whoever answered it, in the file named
by `--set test_flowlog=PATH`. Each line is JSON: {"method", "host", "port", "path", "status", "auth"} (status null and
"error" set when the flow ended without an answer), written when the flow ends; CONNECT requests (explicit
proxy) get a line of their own. Host and path are recorded as the client sent them, before any addon
rewrote the request; "auth" says whether it carried a credential header (Authorization, x-api-key)."""

from __future__ import annotations

import json

from mitmproxy import ctx, http


class FlowLog:
    def __init__(self) -> None:
        self.seen: dict[str, dict] = {}

    def load(self, loader) -> None:
        loader.add_option("test_flowlog", str, "", "Where to append one JSON line per request (tests only).")

    def _write(self, record: dict) -> None:
        if ctx.options.test_flowlog:
            with open(ctx.options.test_flowlog, "a") as f:
                f.write(json.dumps(record) + "\n")

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._write({"method": "CONNECT", "host": flow.request.host, "port": flow.request.port, "path": "",
                     "status": flow.response.status_code if flow.response else None})

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        r = flow.request
        self.seen[flow.id] = {"method": r.method, "host": r.pretty_host, "port": r.port, "path": r.path,
                              "auth": "authorization" in r.headers or "x-api-key" in r.headers}

    def response(self, flow: http.HTTPFlow) -> None:
        record = self.seen.pop(flow.id, None)
        if record is not None and flow.response is not None:
            self._write({**record, "status": flow.response.status_code})

    def error(self, flow: http.HTTPFlow) -> None:
        record = self.seen.pop(flow.id, None)
        if record is not None:
            self._write({**record, "status": None, "error": str(flow.error)})


addons = [FlowLog()]
