"""A Qwen emulator: Qwen's OAuth device flow and its OpenAI-compatible chat API, for offline use."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .server import EmulatorServer
from .state import State

__all__ = ["EmulatorHandle", "start"]


@dataclass
class EmulatorHandle:
    server: EmulatorServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> State:
        return self.server.state

    def stop(self) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def start(host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True, api_keys=(), seed_tokens=()) -> EmulatorHandle:
    state = State()
    server = EmulatorServer((host, port), state, quiet)
    state.url = f"http://{host}:{server.server_address[1]}"
    for key in api_keys:
        state.issue("key", access_token=key)
    for token in seed_tokens:
        state.issue("oauth", expires_in=10 * 365 * 86400, access_token=token)
    thread = threading.Thread(target=server.serve_forever, name="qwen-emulator", daemon=True)
    thread.start()
    return EmulatorHandle(server, thread)
