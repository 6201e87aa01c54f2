"""A self-hosted server's own model list (upstream/selfhosted/models.py): its models, their windows and what serves
them, read from `GET /models` by a real HTTP server here; what the account names that it does not serve, said."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.models.model_map import LiveModels
from qwen_gateway.upstream.selfhosted import models

VLLM_LIST = {"object": "list", "data": [
    {"id": "Qwen/Qwen3-8B", "object": "model", "created": 1, "owned_by": "vllm", "root": "Qwen/Qwen3-8B",
     "parent": None, "max_model_len": 40960, "permission": []},
    {"id": "qwen3-8b", "object": "model", "created": 1, "owned_by": "vllm", "root": "Qwen/Qwen3-8B",
     "max_model_len": 40960}]}


def test_the_list_gives_each_model_its_window_and_server():
    listed = models.parse("gpu", json.dumps(VLLM_LIST).encode())
    assert listed is not None and list(listed.models) == ["Qwen/Qwen3-8B", "qwen3-8b"]
    assert listed.models["qwen3-8b"].context == 40960 and listed.models["qwen3-8b"].served_by == "vllm"
    assert "Qwen/Qwen3-8B (40,960-token window)" in models.said(listed) and models.said(listed).startswith("vllm")
    bare = models.parse("gpu", b'{"data": [{"id": "m"}]}')
    assert bare is not None and bare.models["m"].context is None  # not given: unknown, never 0
    assert models.parse("gpu", b"<html>") is None and models.parse("gpu", b'{"detail": "Not Found"}') is None


def test_what_the_account_names_that_the_server_does_not_serve():
    listed = models.parse("gpu", json.dumps(VLLM_LIST).encode())
    assert listed is not None
    cred = Credential("gpu", KEY, "http://h/v1", "k", provider="selfhosted", default_model="Qwen/Qwen3.6-27B")
    said = models.not_served(cred, listed)
    assert "Qwen/Qwen3.6-27B named by the account but not served" in said and "go to Qwen/Qwen3-8B" in said
    ok = Credential("gpu", KEY, "http://h/v1", "k", provider="selfhosted", default_model="qwen3-8b")
    assert models.not_served(ok, listed) == ""


class _Server(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_GET(self):  # noqa: N802
        _Server.seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
        raw = json.dumps({"version": "0.20.0"} if self.path == "/version" else VLLM_LIST).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


async def test_the_list_is_read_from_the_server_with_the_accounts_key(caplog):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        live = LiveModels()
        base = f"http://127.0.0.1:{server.server_address[1]}/v1"
        cred = Credential("gpu", KEY, base, "sk-gpu", provider="selfhosted", default_model="Qwen/Qwen3.6-27B")
        fetch = models.ServerModels(live, "gpu", lambda: cred)
        live.register("gpu", (), fetch.refresh_soon)
        with caplog.at_level("INFO", logger="qwen"):
            await fetch.refresh()
        assert live.ids("gpu") == ("Qwen/Qwen3-8B", "qwen3-8b") and live.is_live("gpu")
        assert {"path": "/v1/models", "auth": "Bearer sk-gpu"} in _Server.seen
        assert live.model_list("gpu").models["qwen3-8b"].server_version == "0.20.0"
        assert any("vllm 0.20.0 serves Qwen/Qwen3-8B" in r.getMessage() for r in caplog.records)
        assert any("WARNING: Qwen/Qwen3.6-27B named by the account" in r.getMessage() for r in caplog.records)
        assert not any("sk-gpu" in r.getMessage() for r in caplog.records)
    finally:
        server.shutdown()
        server.server_close()
