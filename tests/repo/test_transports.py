"""The transports live together under turn/ (docs/architecture.md#how-a-turn-ends): the WebSocket server and the
background runner move bytes and run turns there, importing only the core; api/ keeps dialect translation and checks,
reaching a transport only through the small protocols turn/ defines (`SocketDialect`, `RunRecord`). Read from the
source with `ast`, not imported."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.repo.test_layers import graph, modules, outer

TURN = "qwen_gateway.turn"
# What makes a module a transport: it speaks WebSocket frames, or it drives turns (the turn's runner, a transport's
# own shape, the relay that hands it a connection).
TRANSPORT_IMPORTS = ("wsproto",)
TURN_DRIVERS = {f"{TURN}.TurnRunner", f"{TURN}.Transport", f"{TURN}.relay", f"{TURN}.runner"}
# A turn.Transport's methods: a class with all of them is one.
TRANSPORT_METHODS = {"begin", "send", "whole", "refuse", "cancelled", "ended"}


def transport_parts(path: Path) -> list[str]:
    """What in a module makes it a transport: a WebSocket import, an import of what drives a turn, a class shaped
    as turn.Transport, a task started for a run."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: imports {a.name}" for a in node.names
                      if a.name.split(".")[0] in TRANSPORT_IMPORTS]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in TRANSPORT_IMPORTS:
                found.append(f"line {node.lineno}: imports {module}")
            names = {f"{module.lstrip('.')}.{a.name}" for a in node.names} | {module.lstrip(".")}
            found += [f"line {node.lineno}: imports {n}" for n in sorted(names)
                      if any(n.endswith(d.removeprefix("qwen_gateway.")) for d in TURN_DRIVERS)]
        elif isinstance(node, ast.ClassDef):
            methods = {f.name for f in node.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
            if TRANSPORT_METHODS <= methods:
                found.append(f"line {node.lineno}: class {node.name} is a turn.Transport")
    return found


def test_api_holds_no_transport():
    """No module of api/ speaks WebSocket, drives a turn or is a turn's transport: api/responses/ gives the
    transports its part (socket_messages.py, background.py) through the protocols turn/ defines."""
    inside = {name: transport_parts(path) for name, (path, _) in modules().items() if outer(name) == "api"}
    assert {name: found for name, found in inside.items() if found} == {}


def test_turn_holds_both_transports():
    """The WebSocket server (its lanes, read-ahead budget, flow trimming, turns) and the background runner are turn/'s,
    and import only the core."""
    g = graph()
    transports = {f"{TURN}.{m}" for m in ("socket", "socket_budget", "socket_flow", "socket_lanes", "socket_turns",
                                          "background")}
    assert transports <= set(g)
    assert transport_parts(modules()[f"{TURN}.socket"][0])  # the check sees a transport where one is
    assert transport_parts(modules()[f"{TURN}.socket_turns"][0])
    assert transport_parts(modules()[f"{TURN}.background"][0])
    upward = sorted(f"{m} -> {d}" for m in transports for d in g[m] if outer(d) != "core")
    assert upward == []


def test_only_turn_and_the_seams_speak_websocket():
    """wsproto is read by the transport (turn/) and by the seam that bounds mitmproxy's WebSocket messages."""
    speakers = {name for name, (path, _) in modules().items()
                if any("wsproto" in f for f in transport_parts(path))}
    assert speakers and all(s.startswith((f"{TURN}.", "qwen_gateway.seams.")) for s in speakers), speakers
