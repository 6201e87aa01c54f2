"""A Responses WebSocket's warm-up (`generate: false`) is a local answer run through the turn like every other
`response.create` (issue 62, item 1): its checks (a named key's rate limit counts it and refuses it past the
limit, as any turn), its translation (the warm-up's own input is part of the response a later turn continues
from), its one end (one request line, one ledger row). Nothing reaches Qwen."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from e2e.test_e2e_responses_ws import connect, turn, user
from helpers.team import add_key, team_env, until

pytestmark = pytest.mark.e2e

BASE = {"model": "gpt-4o", "store": False}


def rows(env: dict[str, str]) -> list[tuple]:
    path = Path(env["QWEN_GATEWAY_HOME"]) / "usage.sqlite3"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT status, key_name, error FROM usage WHERE endpoint = 'responses' AND "
                          "status != 101 ORDER BY ts").fetchall()  # the upgrade (101) is a row of its own
    except sqlite3.OperationalError:  # the ledger makes its table at its first write
        return []
    finally:
        db.close()


def test_a_warm_up_is_a_turn_counted_refused_and_continued_from_like_any(tmp_path, emu, make_gateway):
    env = team_env(tmp_path, emu)
    key = add_key(env, "codex", "--rpm", "2")
    gw = make_gateway(env=env)
    ws = connect(gw, Authorization=f"Bearer {key}")
    try:
        warm = turn(ws, {**BASE, "generate": False, "input": [user("The secret word is heron.")]})
        assert [e["type"] for e in warm] == ["response.created", "response.in_progress", "response.completed"]
        assert warm[-1]["response"]["output"] == [] and emu.chat_requests() == []
        first = turn(ws, {**BASE, "previous_response_id": warm[-1]["response"]["id"], "input": [user("Which?")]})
        assert first[-1]["type"] == "response.completed"
        sent = json.dumps(emu.chat_requests()[-1]["body"]["messages"])
        assert "The secret word is heron." in sent  # the warm-up's input is the conversation's
        # the key's third request within the minute: a warm-up is refused as any turn is
        (refused,) = turn(ws, {**BASE, "generate": False, "input": []}, validate=False)
        assert refused["type"] == "error" and refused["status"] == 429, refused
    finally:
        ws.close()
    assert len(emu.chat_requests()) == 1
    until(lambda: len(rows(env)) >= 3, "the three turns' ledger rows", limit=10)
    assert [r[:2] for r in rows(env)] == [(200, "codex"), (200, "codex"), (429, "codex")]
    lines = [ln for ln in gw.log().splitlines() if "POST /v1/responses" in ln]
    assert len(lines) == 3 and all("key=codex" in ln for ln in lines), lines
