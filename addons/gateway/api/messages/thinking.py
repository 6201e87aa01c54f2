"""Thinking blocks' signatures: the gateway signs Qwen's reasoning when it hands it to the client and checks
the signature when the block comes back (the client must return it unchanged, as with Anthropic). The
signature is a sealed token (seal.py) holding the thinking's SHA-256: it verifies without storing anything.
A block the gateway signed and the client edited is refused, as Anthropic refuses it; one signed elsewhere
(another gateway with its own key, or Anthropic: a session resumed from there) cannot be checked or read,
and is dropped with a note, as the Responses side drops a reasoning item it did not seal."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from ...seal import Sealer

KIND = "thinking"
# What `Signer.verify` finds: the gateway's own signature of this thinking, the gateway's signature of other
# thinking (edited by the client), or a signature the gateway did not make.
OURS, ALTERED, FOREIGN = "ours", "altered", "foreign"


def _digest(thinking: str) -> str:
    return hashlib.sha256(thinking.encode("utf-8", "surrogatepass")).hexdigest()


class Signer:
    def __init__(self, sealer: Callable[[], Sealer]) -> None:
        self.sealer = sealer  # opened at first use (its key lives in the state folder)

    def sign(self, thinking: str) -> str:
        return self.sealer().seal(KIND, {"sha256": _digest(thinking)})

    def verify(self, thinking: str, signature: str) -> str:
        payload = self.sealer().open(KIND, signature)
        if payload is None:
            return FOREIGN
        return OURS if payload.get("sha256") == _digest(thinking) else ALTERED
