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
