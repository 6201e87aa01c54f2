"""What is kept of past turns, bounded: per conversation its turn count and its last TURNS_KEPT turns, and per
response id the turn a client may name for its cache diagnostics. Hashes and sizes only (prints.py), never
prompt text, and each under its tenant (the named client key, "" without one): a key never finds another key's
response, nor continues another key's conversation.

A conversation's turns share their print where a later turn begins with an earlier one's whole prefix (the
common case: it grew), so a long conversation costs its prompt's blocks once — 13 bytes a block — not once a
turn. Bounded in conversations (CONVERSATIONS) and in bytes (BYTES), the least recently seen dropped first;
response ids in count (IDS), bytes (ID_BYTES) and age (ID_AGE_S). A conversation a client names by no session
(its opening's digest changed with its system prompt) is found again by its first message (OPENINGS)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque

from .compare import Turn
from .prints import Print

CONVERSATIONS = 4096
TURNS_KEPT = 4  # the turn a request continues is the closest of them
BYTES = 32 << 20  # the conversations' prints
IDS = 16384
ID_BYTES = 16 << 20
ID_AGE_S = 86400.0  # a response older than a day is not found (Anthropic keeps fingerprints "a limited time")
OPENINGS = 16384


class Kept:
    __slots__ = ("key", "count", "turns", "bytes")

    def __init__(self, key: str) -> None:
        self.key, self.count, self.bytes = key, 0, 0
        self.turns: deque[Turn] = deque(maxlen=TURNS_KEPT)


class Memory:
    def __init__(self) -> None:
        self.conversations: OrderedDict[tuple[str, str], Kept] = OrderedDict()  # (tenant, key) -> its turns
        self.openings: OrderedDict[tuple[str, bytes], tuple[str, str]] = OrderedDict()  # first message -> conversation
        self.ids: OrderedDict[tuple[str, str], Turn] = OrderedDict()  # (tenant, response id) -> its turn
        self.bytes = 0  # the conversations' prints
        self.id_bytes = 0

    def kept(self, key: str, tenant: str, now: Turn, by_opening: bool = False) -> Kept:
        """The conversation `now` belongs to (made when new; `by_opening`: the client named no session, so a
        conversation of the tenant that opened with the same first message is the same one)."""
        where = (tenant, key)
        kept = self.conversations.get(where)
        opening = self._opening(tenant, now) if by_opening else None
        if kept is None and opening is not None:
            found = self.openings.get(opening)
            if found is not None and (kept := self.conversations.get(found)) is not None:
                where = found
        if kept is None:
            kept = self.conversations[where] = Kept(key)
            self._bound()
        else:
            self.conversations.move_to_end(where)
        if opening is not None:
            self.openings[opening] = where
            self.openings.move_to_end(opening)
            if len(self.openings) > OPENINGS:
                self.openings.popitem(last=False)
        return kept

    def newest(self, tenant: str, key: str) -> Print | None:
        """The print of the conversation's newest turn (what the next turn may repeat), if it is kept."""
        kept = self.conversations.get((tenant, key))
        return kept.turns[-1].print if kept is not None and kept.turns else None

    def add(self, kept: Kept, now: Turn, grown: Print | None = None) -> None:
        """`now` becomes the conversation's newest turn; earlier turns it begins with share its print. `grown`: the
        newest turn's print, which `now` begins with whole (compare.grew)."""
        kept.count += 1
        now.turn = kept.count
        made = now.print
        size = made.footprint  # each print's bytes once, however many turns share it (by identity)
        if grown is not None and kept.bytes == grown.footprint:  # every kept turn shares it (another print adds
            for seen in kept.turns:  # its own bytes): all share `now`'s, no bytes compared (a block's hash is of
                seen.print = made  # JSON that names its kind: the same hashes, the same kinds)
            kept.turns.append(now)
        else:
            raw, kinds = made.raw[:8 * now.blocks], made.kinds  # Turn.raw, read without a call
            kept.turns.append(now)  # the oldest dropped beyond TURNS_KEPT
            others = None
            shared = None  # a print `now` begins with, as far as its newest turn has it: its older turns have less
            for seen in reversed(kept.turns):
                p = seen.print
                if p is made:
                    continue
                if p is shared or (raw.startswith(p.raw[:8 * seen.blocks])
                                   and kinds.startswith(p.kinds[:seen.blocks])):
                    shared = p  # Turn.raw and its kinds read here, not by a call
                    seen.print = made  # the same blocks: only its count of them is its own
                elif others is None or p not in others:
                    others = [p] if others is None else others + [p]
                    size += p.footprint
        self.bytes += size - kept.bytes
        kept.bytes = size
        if self.bytes > BYTES:
            self._bound()

    def keep_id(self, tenant: str, answer_id: str, turn: Turn) -> None:
        """The turn of a response a client may name later (Messages' `previous_message_id`, Responses'
        `comparison_response_id`)."""
        where, ids = (tenant, answer_id), self.ids
        if where in ids:  # kept again (commonly a new id: no method called)
            self.id_bytes -= ids.pop(where).print.footprint
        ids[where] = turn
        self.id_bytes += turn.print.footprint
        while ids and (len(ids) > IDS or self.id_bytes > ID_BYTES):
            _, dropped = ids.popitem(last=False)
            self.id_bytes -= dropped.print.footprint

    def find(self, tenant: str, answer_id: str) -> Turn | None:
        """The turn of the tenant's response `answer_id`; None when unknown, another tenant's, or too old."""
        turn = self.ids.get((tenant, answer_id))
        if turn is None or time.time() - turn.at > ID_AGE_S:
            return None
        return turn

    def _opening(self, tenant: str, now: Turn) -> tuple[str, bytes] | None:
        p = now.print
        i = p.first_message
        return (tenant, p.raw[8 * i:8 * i + 8]) if i < now.blocks else None

    def _bound(self) -> None:
        while len(self.conversations) > CONVERSATIONS or (self.bytes > BYTES and len(self.conversations) > 1):
            _, dropped = self.conversations.popitem(last=False)
            self.bytes -= dropped.bytes
