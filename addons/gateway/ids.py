"""Ids for records and answers (exchange ids, `chatcmpl-…`, `call_…`, Qwen's promptId): unique, never
secret (an exchange's id shows when it began, as its ledger row does). They come from a Mersenne Twister
seeded once from the OS: `uuid4().hex` (a `getrandom()` system call and a UUID object) costs 2.2 µs here,
`hex_id()` 0.6 µs, a few times per request. Anything secret (the relay's tokens, the sealing key) comes
from `secrets`."""

from __future__ import annotations

import os
import random
import time

_rng = random.Random(os.urandom(32))


def hex_id(n_bytes: int = 16) -> str:
    """`n_bytes` random bytes as lowercase hex (like `uuid4().hex` for 16)."""
    return f"{_rng.getrandbits(n_bytes * 8):0{n_bytes * 2}x}"


def exchange_id() -> str:
    """An exchange's id: 32 hex digits, the time in milliseconds (12) then 80 random bits (20). Ids sort by
    time, so the ledger's rows append to its unique index on them (a random id put each row on a page of its
    own: 14 µs more a row at 60,000 rows, ~40 µs at a million)."""
    return f"{int(time.time() * 1000):012x}{_rng.getrandbits(80):020x}"


_V4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))  # the variant and version fields
_V4_SET = (0x8000 << 48) | (4 << 76)  # RFC 4122's variant, version 4


def uuid_text() -> str:
    """A random (version 4) UUID in its usual text form: what `str(uuid.UUID(int=n, version=4))` writes,
    without building the UUID object (half the time; once per whole answer, the `chatcmpl-` id)."""
    h = f"{_rng.getrandbits(128) & _V4_CLEAR | _V4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
