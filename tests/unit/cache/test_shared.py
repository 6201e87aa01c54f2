"""The doctor's turns shared by a team's gateways (cache/shared.py): a turn as its row keeps it, a conversation
another gateway answered since numbered on, and a database away that costs the turn nothing. Through two real
gateways on PostgreSQL: tests/e2e/test_e2e_cache_team.py."""

from __future__ import annotations

import asyncio

from qwen_gateway.cache.compare import Turn
from qwen_gateway.cache.memory import Memory
from qwen_gateway.cache.prints_chat import of_chat
from qwen_gateway.cache.shared import SharedTurns, decode, encode, seed
from qwen_gateway.storage.health import StateUnavailable

SYSTEM = {"role": "system", "content": "You answer briefly. " * 20}


def turn(*said: str, at: float = 1000.0) -> Turn:
    body = {"model": "qwen3-coder-plus", "messages": [SYSTEM, *({"role": "user", "content": s} for s in said)]}
    return Turn(of_chat(body, True), at=at, account="ds", route="", lifetime=300.0, tenant="alice")


def test_a_turn_read_back_is_the_turn_written():
    t = turn("hi", "and again")
    t.turn, t.prompt, t.cached, t.written, t.explicit = 3, 1200, 1000, 0, True
    back = decode(encode(t), "alice", 3)
    assert (back.print.kinds, back.print.raw, list(back.print.sizes), back.print.settings) == \
        (t.print.kinds, t.print.raw, list(t.print.sizes), t.print.settings)
    assert (back.turn, back.prompt, back.cached, back.explicit, back.account, back.at, back.tenant) == \
        (3, 1200, 1000, True, "ds", 1000.0, "alice")
    assert b"You answer" not in encode(t)  # hashes and sizes, never the prompt


def test_a_conversation_another_gateway_answered_since_is_numbered_on():
    memory = Memory()
    kept = memory.kept("conv", "alice", turn("hi"))
    memory.add(kept, turn("hi"))
    memory.add(kept, turn("hi", "two"))
    assert kept.count == 2
    theirs = decode(encode(turn("hi", "two", "three")), "alice", 5)  # turns 3-5 answered elsewhere
    seed(memory, "alice", "conv", theirs)
    assert kept.count == 5 and kept.turns[-1] is theirs
    seed(memory, "alice", "conv", decode(encode(turn("hi")), "alice", 4))  # older than what is kept: nothing
    assert kept.count == 5
    new = turn("hi", "two", "three", "four")
    memory.add(kept, new)
    assert new.turn == 6


class Away:
    """A database that is away, or hangs."""

    def __init__(self, hang: bool = False) -> None:
        self.hang, self.asked = hang, 0

    async def amigrate(self, component, steps) -> None:
        self.asked += 1
        if self.hang:
            await asyncio.sleep(3600)
        raise StateUnavailable("the shared state is unavailable")


async def test_a_database_away_or_hanging_costs_the_turn_nothing(monkeypatch):
    from qwen_gateway.cache import shared
    monkeypatch.setattr(shared, "RECALL_S", 0.2)
    memory = Memory()
    for db in (Away(), Away(hang=True)):
        await SharedTurns(db).recall(memory, "alice", "conv", "msg_1")  # neither raises, the hang is bounded
        assert db.asked == 1
    assert memory.conversations == {} and memory.find("alice", "msg_1") is None


class Rows:
    """A database whose table holds `newest` for a conversation; counts what is asked of it."""

    def __init__(self, newest: tuple | None = None) -> None:
        self.newest, self.asked = newest, []

    async def amigrate(self, component, steps) -> None:
        pass

    async def fetch(self, sql: str, args: tuple) -> list[tuple]:
        self.asked.append("conversation" if "ORDER BY turn" in sql else "id")
        return [self.newest] if self.newest is not None and "ORDER BY turn" in sql else []


async def test_a_conversation_this_gateway_answers_alone_asks_the_database_once_until_another_numbers_it_on():
    memory = Memory()
    kept = memory.kept("conv", "alice", turn("hi"))
    memory.add(kept, turn("hi"))
    memory.add(kept, turn("hi", "two"))
    db = Rows()
    shared = SharedTurns(db)
    await shared.recall(memory, "alice", "conv", None, opening=True)  # an opening turn: nothing before it
    assert db.asked == []
    for _ in range(3):
        await shared.recall(memory, "alice", "conv", None)
    assert db.asked == ["conversation"]  # once: then the notifications say when another gateway answered it
    await shared._heard("2/alice/conv")  # its own turn, heard back: nothing newer
    await shared.recall(memory, "alice", "conv", None)
    assert db.asked == ["conversation"]
    db.newest = (4, encode(turn("hi", "two", "three")))
    await shared._heard("4/alice/conv")  # another gateway answered turns 3 and 4
    await shared.recall(memory, "alice", "conv", None)
    assert db.asked == ["conversation"] * 2 and kept.count == 4
    await shared._heard(None)  # a full look (a listener back after an outage): each read once more
    await shared.recall(memory, "alice", "conv", None)
    await shared.recall(memory, "alice", "conv", None)
    assert db.asked == ["conversation"] * 3
