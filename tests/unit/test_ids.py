"""ids.uuid_text writes what the uuid module writes for a version-4 UUID of the same 128 random bits."""

from __future__ import annotations

import random
import uuid

from qwen_gateway import ids


def test_uuid_text_is_the_uuid_modules_text_for_the_same_bits(monkeypatch):
    draws = random.Random(1234)
    for bits in [0, (1 << 128) - 1, *(draws.getrandbits(128) for _ in range(2000))]:
        monkeypatch.setattr(ids, "_rng", type("Fixed", (), {"getrandbits": staticmethod(lambda n, b=bits: b)}))
        text = ids.uuid_text()
        assert text == str(uuid.UUID(int=bits, version=4))
        assert uuid.UUID(text).version == 4 and uuid.UUID(text).variant == uuid.RFC_4122


def test_exchange_ids_sort_in_the_order_they_were_made(monkeypatch):
    """The ledger's UNIQUE index on `xid` (observe/ledger_rows.py) took each row at a random leaf page: a
    growing file's every row a page read and a page written. Exchange ids lead with the time in milliseconds:
    later ids sort after earlier ones, and rows append to the index."""
    now = [1_795_500_000.0]
    monkeypatch.setattr(ids.time, "time", lambda: now[0])
    made = []
    for _ in range(200):
        made += [ids.exchange_id() for _ in range(3)]  # the same millisecond: unique all the same
        now[0] += 0.001
    assert [m[:12] for m in made] == sorted(m[:12] for m in made)  # by time: within a millisecond, any order
    assert len(set(made)) == len(made)
    assert all(len(m) == 32 and int(m, 16) >= 0 and m == m.lower() for m in made)


def test_an_exchange_takes_an_exchange_id():
    from qwen_gateway.exchange import ClientRequest, Exchange

    client = ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1:8080/v1/chat/completions")
    first, second = Exchange(client), Exchange(client)
    assert len(first.id) == 32 and first.id[:12] <= second.id[:12] <= ids.exchange_id()[:12]
