"""The cache doctor's memory shared by the gateways of one PostgreSQL (qwen_state_url). A team's balancer sends a
conversation's turns to any of its gateways, and a client names in its diagnostics (`previous_message_id`,
`comparison_response_id`) a response another gateway gave: each gateway alone numbered the turns it saw and found
none of the others' responses.

    put      each turn the doctor records, written in the background: its tenant, conversation, number, the id a
             client may name, when, and its print (hashes and sizes: never prompt text)
    recall   before a turn goes upstream (a check, turn/runner.py): the conversation's newest turn, when another
             gateway answered it since this one last did (so turns are numbered once for the team, and the doctor
             compares with the turn this one continues), and a response this gateway does not hold, read from
             the database into its memory (memory.py), at most RECALL_S; a response named a moment ago on another
             gateway, whose row is still on its way, is asked for again within that time

What asks the database: a response this gateway does not hold; a conversation's first turn here (not an opening
turn: it has nothing before it); a turn another gateway numbered past this one's, as its NOTIFY said (each write
notifies: `cache_turn:<turn>/<tenant>/<conversation>`). A conversation this gateway answers alone costs nothing
more after its first turn here; after a full look (every REFRESH_S, and when the listener is back) each is read
once again, for a notification missed meanwhile.

The doctor's words are never worth a request: a database away or slow leaves the turn to this gateway's memory,
as without sharing (never a 503). Rows are kept a day (memory.ID_AGE_S), the oldest dropped every TRIM_EVERY
writes."""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from typing import TYPE_CHECKING, Any

import orjson

from ..storage.health import StateUnavailable
from .compare import Turn
from .memory import ID_AGE_S, Kept, Memory
from .prints import Print

if TYPE_CHECKING:
    from ..storage.pg import Database

log = logging.getLogger("qwen")
COMPONENT, KIND = "cache_turns", "cache_turn"
STEPS = (
    "CREATE TABLE qwen_cache_turns (tenant TEXT NOT NULL, conversation TEXT NOT NULL, turn INTEGER NOT NULL, "
    "answer_id TEXT, at DOUBLE PRECISION NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (tenant, conversation, turn))",
    "CREATE INDEX qwen_cache_turns_by_answer ON qwen_cache_turns (tenant, answer_id)",
    "CREATE INDEX qwen_cache_turns_by_age ON qwen_cache_turns (at)",
)
RECALL_S = 1.0  # how long a turn may wait for what the database holds of its conversation
AGAIN_S = 0.1  # a response not found is asked for again this often, within RECALL_S (its row on its way)
TRIM_EVERY = 500
REFRESH_S = 300.0
HEARD_MOST = 65536  # conversations whose newest turn the notifications told: beyond, forgotten (each read once more)
_PUT = ("INSERT INTO qwen_cache_turns (tenant, conversation, turn, answer_id, at, data) VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (tenant, conversation, turn) DO UPDATE SET answer_id = EXCLUDED.answer_id, at = EXCLUDED.at, "
        "data = EXCLUDED.data")
_NEWEST = ("SELECT turn, data FROM qwen_cache_turns WHERE tenant = %s AND conversation = %s AND at > %s "
           "ORDER BY turn DESC LIMIT 1")
_BY_ID = "SELECT turn, data FROM qwen_cache_turns WHERE tenant = %s AND answer_id = %s AND at > %s"
_TRIM = "DELETE FROM qwen_cache_turns WHERE at < %s"


def encode(turn: Turn) -> bytes:
    """A turn as a row keeps it: its own blocks of its print, Qwen's usage, where and when it went."""
    p = turn.print
    n = turn.blocks
    return orjson.dumps({
        "kinds": p.kinds[:n], "raw": p.raw[:8 * n].hex(), "sizes": list(p.sizes[:n]), "first": p.first_message,
        "texts": {str(i): h for i, h in (p.texts or {}).items() if i < n}, "settings": p.settings,
        "lifetime": p.lifetime, "marks": list(turn.marks), "spans": {str(i): c for i, c in (p.spans or {}).items()},
        "at": turn.at, "account": turn.account, "route": turn.route, "turn_lifetime": turn.lifetime,
        "prompt": turn.prompt, "cached": turn.cached, "written": turn.written, "explicit": turn.explicit})


def decode(data: bytes, tenant: str, number: int) -> Turn:
    d = orjson.loads(data)
    p = Print(d["kinds"], bytes.fromhex(d["raw"]), array("I", d["sizes"]), d["first"],
              {int(i): h for i, h in d["texts"].items()} or None, d["settings"], d["lifetime"], None,
              tuple(d["marks"]), {int(i): c for i, c in d["spans"].items()} or None)
    turn = Turn(p, at=d["at"], account=d["account"], route=d["route"], lifetime=d["turn_lifetime"], tenant=tenant)
    turn.turn, turn.prompt, turn.cached, turn.written, turn.explicit = \
        number, d["prompt"], d["cached"], d["written"], d["explicit"]
    return turn


class SharedTurns:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._puts = 0
        self._newest: dict[tuple[str, str], int] = {}  # (tenant, conversation) -> its newest turn, as notified
        self._read: set[tuple[str, str]] = set()  # conversations read from the database since the last full look
        self._follower: asyncio.Task | None = None

    def start(self) -> None:
        """Hear the team's turns (on the event loop; nothing without one: a script)."""
        if self._follower is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._follower = loop.create_task(self.db.follow(COMPONENT, STEPS, KIND, self._heard, every=REFRESH_S,
                                                             what="the team's cache turns"), name="qwen: cache turns")

    def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            self._follower = None

    async def _heard(self, said: str | None) -> None:
        if said is None or len(self._newest) >= HEARD_MOST:  # a full look: each conversation read once more
            self._newest.clear()
            self._read.clear()
            return
        number, tenant, conversation = said.split("/", 2)
        where = (tenant, conversation)
        self._newest[where] = max(self._newest.get(where, 0), int(number))

    def put(self, conversation: str, turn: Turn, answer_id: str | None) -> None:
        """The doctor recorded `turn` (numbered): written off the request's path."""
        args = (turn.tenant, conversation, turn.turn, answer_id, turn.at, encode(turn))
        self._puts += 1
        trim = self._puts % TRIM_EVERY == 0
        try:
            self.db.background(self._write(args, trim), "qwen: share a cache turn")
        except RuntimeError:  # no event loop (a script): this gateway's memory only
            pass

    async def _write(self, args: tuple, trim: bool) -> None:
        try:
            await self.db.amigrate(COMPONENT, STEPS)
            await self.db.execute(_PUT, args, notify=f"{KIND}:{args[2]}/{args[0]}/{args[1]}")
            if trim:
                await self.db.execute(_TRIM, (time.time() - ID_AGE_S,))
        except StateUnavailable:  # said once by the database's Health
            pass
        except Exception as e:  # the other gateways judge this turn without it, as before sharing
            log.warning("qwen: could not share a cache turn: %s", type(e).__name__)

    async def recall(self, memory: Memory, tenant: str, conversation: str | None, named: str | None,
                     opening: bool = False) -> None:
        """Into `memory`: the newest turn of `conversation` when another gateway may have answered it since
        (`opening`: the conversation's first turn, nothing before it), and the turn of the response `named` when
        this gateway holds none of that id. Bounded by RECALL_S; nothing on any failure."""
        if named is not None and memory.find(tenant, named) is not None:
            named = None
        if conversation is not None:
            where = (tenant, conversation)
            kept = memory.conversations.get(where)
            if opening or (where in self._read and self._newest.get(where, 0) <= (kept.count if kept else 0)):
                conversation = None
            elif len(self._read) < HEARD_MOST:
                self._read.add(where)
        if conversation is None and named is None:
            return
        try:
            await asyncio.wait_for(self._recall(memory, tenant, conversation, named), RECALL_S)
        except (TimeoutError, StateUnavailable):
            pass
        except Exception as e:
            log.warning("qwen: could not read the team's cache turns: %s", type(e).__name__)

    async def _recall(self, memory: Memory, tenant: str, conversation: str | None, named: str | None) -> None:
        await self.db.amigrate(COMPONENT, STEPS)
        since = time.time() - ID_AGE_S
        if conversation is not None:
            rows = await self.db.fetch(_NEWEST, (tenant, conversation, since))
            if rows:
                number, data = rows[0]
                kept = memory.conversations.get((tenant, conversation))
                if kept is None or number > kept.count:
                    seed(memory, tenant, conversation, decode(bytes(data), tenant, number))
        while named is not None:
            rows = await self.db.fetch(_BY_ID, (tenant, named, since))
            if rows:
                number, data = rows[0]
                memory.keep_id(tenant, named, decode(bytes(data), tenant, number))
                return
            await asyncio.sleep(AGAIN_S)  # within RECALL_S: its gateway may be writing it now


def seed(memory: Memory, tenant: str, conversation: str, newest: Turn) -> Kept:
    """A turn another gateway answered since: the conversation's count is its number, and it is the newest turn,
    the one the next continues."""
    kept = memory.kept(conversation, tenant, newest)
    if newest.turn > kept.count:
        kept.count = newest.turn - 1
        memory.add(kept, newest)
    return kept


def recall_args(ex: Any) -> tuple[str, str | None, str | None, bool]:
    """(tenant, conversation, the response it names, whether it is the conversation's opening turn) of an exchange."""
    asked = ex.cache_ask
    named = asked.compare_to if asked is not None and asked.compare else None
    messages = ex.chat_body.get("messages") if isinstance(ex.chat_body, dict) else None
    opening = isinstance(messages, list) and sum(
        1 for m in messages if not (isinstance(m, dict) and m.get("role") in ("system", "developer"))) <= 1
    return ex.key.name, ex.conversation.key if ex.conversation is not None else None, named, opening
