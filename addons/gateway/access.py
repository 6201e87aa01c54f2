"""Who may spend the user's Qwen quota: client keys, loopback by default, request size limit."""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy import mode_specs

from .errors import GatewayError

KEYS_ENV = "QWEN_GATEWAY_KEYS"


def load_keys(path: str, env_value: str | None) -> list[bytes]:
    keys = [k.strip() for k in (env_value or "").split(",") if k.strip()]
    if path:
        try:
            lines = Path(path).expanduser().read_text().splitlines()
        except OSError as e:
            raise exceptions.OptionsError(f"qwen_client_keys_file: cannot read {path}: {e.strerror}") from e
        keys += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return [k.encode() for k in keys]


def key_matches(presented: bytes, keys: list[bytes]) -> bool:
    """Constant time over every key: no early exit that would tell which prefix matched."""
    ok = False
    for k in keys:
        ok |= hmac.compare_digest(presented, k)
    return ok


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposed_listeners(modes: list[str], listen_host: str) -> list[str]:
    """Mode specs that would listen beyond loopback. An empty listen host counts as loopback: the
    gateway binds 127.0.0.1 itself when the user did not choose (see addon._bind_loopback_by_default)."""
    out = []
    for spec in modes:
        mode = mode_specs.ProxyMode.parse(spec)
        if mode.listen_port(None) is None and isinstance(mode, mode_specs.LocalMode):
            continue
        host = mode.custom_listen_host if mode.custom_listen_host is not None else listen_host
        if host and not _is_loopback(host):
            out.append(f"{spec} (on {host})")
    return out


class AccessControl:
    """Runs before the gateway: answers 401/413 itself, so nothing goes upstream."""

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.keys: list[bytes] = []
        self.max_body = 32 << 20

    def load(self, loader) -> None:
        loader.add_option("qwen_client_keys_file", str, "",
                          f"File of client keys (one per line) the gateway requires; also ${KEYS_ENV} "
                          "(comma-separated). Keys are never options.")
        loader.add_option("qwen_allow_open", bool, False,
                          "Allow listening beyond loopback without client keys (anyone reaching the port spends "
                          "your Qwen quota).")
        loader.add_option("qwen_max_body_mb", int, 32, "Largest request body accepted, in MiB (OpenAI 413 above).")

    def configure(self, updated: set[str]) -> None:
        o = ctx.options
        if {"qwen_client_keys_file"} & updated:
            self.keys = load_keys(o.qwen_client_keys_file, os.environ.get(KEYS_ENV))
        if "qwen_max_body_mb" in updated:
            if o.qwen_max_body_mb <= 0:
                raise exceptions.OptionsError("qwen_max_body_mb must be positive")
            self.max_body = o.qwen_max_body_mb << 20
        if {"mode", "listen_host", "qwen_client_keys_file", "qwen_allow_open"} & updated and "mode" in o:
            exposed = exposed_listeners(list(o.mode), o.listen_host)
            if exposed and not self.keys and not o.qwen_allow_open:
                raise exceptions.OptionsError(
                    "The Qwen gateway would listen beyond loopback without client keys: "
                    + ", ".join(exposed) + f". Set ${KEYS_ENV} or --set qwen_client_keys_file=FILE, "
                    "or --set qwen_allow_open=true to accept that anyone reaching the port spends your quota.")

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or not self.gateway.claims(flow):
            return
        length = flow.request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            self._refuse(flow, self._too_large())

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or not self.gateway.claims(flow):
            return
        if len(flow.request.raw_content or b"") > self.max_body:
            return self._refuse(flow, self._too_large())
        if self.keys and flow.request.path.split("?", 1)[0] != "/health" and not flow.is_replay:
            if not key_matches(_presented_key(flow.request), self.keys):
                self._refuse(flow, GatewayError(401, "Incorrect API key provided. This gateway requires one of "
                                                     "its client keys (Authorization: Bearer KEY or x-api-key).",
                                                type="invalid_request_error", code="invalid_api_key"))

    def _too_large(self) -> GatewayError:
        return GatewayError(413, f"Request body too large: the limit is {self.max_body >> 20} MiB "
                                 "(qwen_max_body_mb).", code="request_too_large")

    @staticmethod
    def _refuse(flow: http.HTTPFlow, e: GatewayError) -> None:
        flow.response = http.Response.make(e.status, e.to_bytes(), {"content-type": "application/json"})
        flow.metadata.setdefault("qwen", {})["error"] = {"status": e.status, "code": e.code, "message": e.message}


def _presented_key(req: http.Request) -> bytes:
    auth = req.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip().encode()
    return req.headers.get("x-api-key", "").strip().encode()



