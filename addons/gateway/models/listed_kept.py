"""Where each key account's last model list read from Qwen is kept (models/listed.py: what it says):
- the state folder, `<state>/model_lists/ACCOUNT.json` (0600, written atomically, no key in it): this gateway's
  next start serves it until Qwen's list answers again;
- on PostgreSQL (`qwen_state_url`) the team's table too, one row per account *and key* (a digest of the key and
  its base: two gateways may give one name to different keys, which can call different models): a gateway whose
  account is due adopts the row another gateway wrote within the hour instead of asking Qwen, so a team reads
  each key's list about once an hour, and a new gateway started while Qwen's list cannot be read prices by it.
  An older row serves as the folder's copy does: until Qwen's list is read.
Writes never go back in time (a row is replaced only by a later read). A database away is said by its Health once;
the folder's copy and Qwen's own list serve meanwhile."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from ..storage.health import StateUnavailable
from ..storage.pg import Database
from .listed import ModelList, dumps, loads

log = logging.getLogger("qwen")

FOLDER = "model_lists"
COMPONENT = "model_lists"
STEPS = ("CREATE TABLE model_lists (account TEXT NOT NULL, key_id TEXT NOT NULL, read_at DOUBLE PRECISION NOT NULL, "
         "list TEXT NOT NULL, PRIMARY KEY (account, key_id))",)
_UPSERT = ("INSERT INTO model_lists (account, key_id, read_at, list) VALUES (%s,%s,%s,%s) ON CONFLICT (account, key_id) "
           "DO UPDATE SET read_at=EXCLUDED.read_at, list=EXCLUDED.list WHERE model_lists.read_at < EXCLUDED.read_at")
_ROW = "SELECT list FROM model_lists WHERE account=%s AND key_id=%s"


def key_id(base_url: str, token: str) -> str:
    """Which key read a list, never the key: a digest of it (and its base: one key, two regions' lists)."""
    return hashlib.sha256(f"{base_url}\0{token}".encode()).hexdigest()[:32]


class KeptLists:
    """The state folder's copy; `shared`: False (no team to adopt a list from)."""

    shared = False

    def __init__(self, folder: Path | None, write: Callable[[Path, str], None] | None = None) -> None:
        self.folder = folder / FOLDER if folder is not None and write is not None else None
        self.write = write  # the credentials' atomic 0600 writer (auth/credfile.py), given by the provider

    def last(self, account: str) -> ModelList | None:
        """The folder's copy (a damaged file is no list, said in one line, never a fault)."""
        if self.folder is None:
            return None
        try:
            text = (self.folder / f"{account}.json").read_text(encoding="utf-8")
        except OSError:
            return None
        found = loads(text)
        if found is None:  # skipped, said once: Qwen's list is read at once all the same
            log.warning("qwen: account %s: the model list kept in %s is damaged: not used", account, self.folder)
        return found

    async def keep(self, listed: ModelList, key: str) -> None:
        """Off the loop (an fsync); OSError: a full disk or a read-only folder, for the caller to say."""
        if self.folder is not None and self.write is not None:
            await asyncio.to_thread(self.write, self.folder / f"{listed.account}.json", dumps(listed))

    async def team(self, account: str, key: str) -> ModelList | None:
        return None


class TeamLists(KeptLists):
    """The folder's copy and the team's table on PostgreSQL."""

    shared = True

    def __init__(self, folder: Path | None, write: Callable[[Path, str], None] | None, db: Database) -> None:
        super().__init__(folder, write)
        self.db = db
        self.said = ""

    async def keep(self, listed: ModelList, key: str) -> None:
        try:
            await self.db.amigrate(COMPONENT, STEPS)
            await self.db.execute(_UPSERT, (listed.account, key, listed.read_at, dumps(listed)))
        except StateUnavailable:  # said once by the database's Health: the next read shares it
            pass
        except Exception as e:  # noqa: BLE001 — this gateway keeps its list; the others read Qwen's themselves
            self._say(f"qwen: account {listed.account}: its model list could not be shared ({type(e).__name__})")
        await super().keep(listed, key)

    async def team(self, account: str, key: str) -> ModelList | None:
        """The list the team last read with this key on this account's base; None: none, or the database away."""
        try:
            await self.db.amigrate(COMPONENT, STEPS)
            rows = await self.db.fetch(_ROW, (account, key))
        except StateUnavailable:
            return None
        except Exception as e:  # noqa: BLE001 — Qwen's own list is read instead
            self._say(f"qwen: account {account}: the team's model list could not be read ({type(e).__name__})")
            return None
        found = loads(rows[0][0]) if rows else None
        if rows and (found is None or found.account != account):
            self._say(f"qwen: account {account}: the team's model list in the database is damaged: not used")
            return None
        return found

    def _say(self, line: str) -> None:
        if line != self.said:
            self.said = line
            log.warning(line)


def kept_lists(folder: Path | None, state_url: str | None, write: Callable[[Path, str], None]) -> KeptLists:
    return TeamLists(folder, write, Database(state_url)) if state_url else KeptLists(folder, write)
