"""Which other gateways on the shared database are gone, judged on no wall clock: a gateway's beat (its row's `seen`,
written every HEARTBEAT_S) that has not changed for DEAD_S of this gateway's own monotonic clock. A step of the
database's clock (or of this machine's) moves every beat's value but stops none of them, so it declares nobody dead
who is alive (trust round 6: a +60 s step of the database's clock had every running stream's hold settled as a dead
gateway's). A gateway first seen is given DEAD_S from then: one that started after a peer died settles it DEAD_S
later, never sooner."""

from __future__ import annotations

from collections.abc import Iterable


class Peers:
    def __init__(self, dead_s: float) -> None:
        self.dead_s = dead_s
        # gateway → (its beat as last read, when it changed, whether a change was seen: else when it was first read)
        self._beats: dict[str, tuple[object, float, bool]] = {}

    def gone(self, beats: Iterable[tuple[str, object]], now: float, me: str) -> list[str]:
        """The gateways among `beats` (each (id, its `seen` as read), those holding something) whose beat has not
        changed for dead_s by `now` (monotonic); the others' last change noted. Only those read are remembered."""
        seen: dict[str, tuple[object, float, bool]] = {}
        for gateway, beat in beats:
            if gateway == me:
                continue
            was = self._beats.get(gateway)
            seen[gateway] = was if was is not None and was[0] == beat else (beat, now, was is not None)
        self._beats = seen
        return sorted(g for g, (_, changed, _) in seen.items() if now - changed >= self.dead_s)

    def quiet(self, now: float) -> dict[str, float]:
        """How long each peer's beat has not changed, by this gateway's monotonic clock — for the peers seen beating
        (one only ever read unchanged has an unknown quiet: not said). `qwen-keys` reads it from the gateways on the
        database (cli/keys_applied.py) to judge a cut-off gateway on no database clock."""
        return {g: round(now - changed, 1) for g, (_, changed, exact) in self._beats.items() if exact}
