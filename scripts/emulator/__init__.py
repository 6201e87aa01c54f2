"""A Qwen emulator: Qwen's OAuth device flow and its OpenAI-compatible chat API, for offline use.

    handle = emulator.start()          # background thread, free loopback port
    handle.url, handle.port, handle.state
    handle.stop()
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .server import EmulatorServer
from .state import State

__all__ = ["EmulatorHandle", "State", "start"]


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


def start(host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True, api_keys=(), seed_tokens=()
          ) -> EmulatorHandle:
    state = State(api_keys=api_keys, seed_tokens=seed_tokens)
    server = EmulatorServer((host, port), state, quiet)
    state.url = f"http://{_url_host(host)}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="qwen-emulator",
                              daemon=True)
    thread.start()
    return EmulatorHandle(server, thread)
