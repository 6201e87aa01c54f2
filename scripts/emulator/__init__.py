"""A Qwen emulator: Qwen's OAuth device flow and its OpenAI-compatible chat API, for offline use.

    handle = emulator.start()          # background thread, free loopback port
    handle.url, handle.port, handle.state
    handle.stop()
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass

from . import sglang, vllm, vllm_template, vllm_tools
from .server import EmulatorServer
from .state import State

__all__ = ["EmulatorHandle", "State", "sglang", "start", "vllm", "vllm_template", "vllm_tools"]


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


@dataclass
class EmulatorHandle:
    server: EmulatorServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return self.server.state.url

    @property
    def state(self) -> State:
        return self.server.state

    def stop(self) -> None:
        """Stops accepting, ends open connections (and stalls or delays in progress), closes the socket."""
        self.server.stopping.set()
        self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()
        self.thread.join(5)


def start(host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True, api_keys=(), seed_tokens=(),
          tls: ssl.SSLContext | None = None, vllm=None) -> EmulatorHandle:
    """`tls`: serve HTTPS with this server context (Qwen's real endpoints are HTTPS; tests of proxies and
    trusted CAs need a TLS origin). `vllm`: a vllm.Config, to play a self-hosted vLLM server instead (vllm.py)."""
    state = State(api_keys=api_keys, seed_tokens=seed_tokens, vllm=vllm)
    server = EmulatorServer((host, port), state, quiet)
    if tls is not None:
        # The handshake happens in the connection's own thread (its first read), not in the accept loop:
        # a client that never completes it (or refuses the certificate) holds up no one else.
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    scheme = "https" if tls is not None else "http"
    state.url = f"{scheme}://{_url_host(host)}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="qwen-emulator",
                              daemon=True)
    thread.start()
    return EmulatorHandle(server, thread)
