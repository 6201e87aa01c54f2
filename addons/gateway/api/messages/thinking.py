"""Thinking blocks' signatures: the gateway signs Qwen's reasoning when it hands it to the client and checks
the signature when the block comes back (the client must return it unchanged, as with Anthropic). The
signature is a sealed token (seal.py) holding the thinking's SHA-256: it verifies without storing anything,
and a block edited by the client, or signed by someone else, is refused."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from ...seal import Sealer

KIND = "thinking"


def _digest(thinking: str) -> str:
    return hashlib.sha256(thinking.encode("utf-8", "surrogatepass")).hexdigest()


class Signer:
    def __init__(self, sealer: Callable[[], Sealer]) -> None:
        self.sealer = sealer  # opened at first use (its key lives in the state folder)

    def sign(self, thinking: str) -> str:
        return self.sealer().seal(KIND, {"sha256": _digest(thinking)})

    def verify(self, thinking: str, signature: str) -> bool:
        payload = self.sealer().open(KIND, signature)
        return payload is not None and payload.get("sha256") == _digest(thinking)
