"""The unpriced models that carried traffic since the gateway started, for /health (local_answers.health): the
settlement counts each answered request nothing priced (turn/settlement.py). Model names may come from clients,
so the table is bounded: past `most` (billing, model) pairs the others are only counted."""

from __future__ import annotations

MOST = 100


class UnpricedSeen:
    def __init__(self, most: int = MOST) -> None:
        self.most = most
        self.requests: dict[tuple[str, str], int] = {}  # (billing, model) -> answered requests
        self.more = 0  # requests of pairs beyond `most`

    def count(self, billing: str, model: str) -> None:
        key = (billing, model)
        if key in self.requests or len(self.requests) < self.most:
            self.requests[key] = self.requests.get(key, 0) + 1
        else:
            self.more += 1

    def listed(self) -> list[dict]:
        """What /health shows: each model, the billing it had no price on ("": not known), its requests."""
        return [{"model": model, "billing": billing, "requests": n} for (billing, model), n in self.requests.items()]
