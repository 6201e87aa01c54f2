"""Which store a command reads — the one the folder's gateway uses — for every command alike (qwen-usage and each of
its views, qwen-keys).

A gateway moved to PostgreSQL (`qwen_state_url`) writes its ledger, keys and learned facts there, and notes so in
its folder (`gateway-store.json`, tenancy/place.py); `qwen-keys migrate` leaves a note in the folder's keys file
naming the database its keys went to. A command without `--state-url` read the folder all the same, and said
nothing (`qwen-usage`: 14 requests instead of 181; `qwen-usage learned` the folder's old facts; `qwen-keys list`
none of the moved keys). Each now follows the notes, and says which store it read on stderr; `--state-url URL`
reads that database, `--state-url ''` the folder's own.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..tenancy.place import STORE_NOTE, gateway_store, moved_to
from ..observe.ledger import SharedLedger
from ..storage.pg import Database, StateUrlError


def database(state: Path, asked: str | None, tool: str = "qwen-usage", moved: bool = False) -> tuple[str | None, str]:
    """The database to read (None: the folder), and a line saying where it came from ("" when the user named it, or
    there is none). `moved`: the keys file's note of a move is followed too (qwen-keys: the keys went there)."""
    if asked is not None:  # --state-url (or $QWEN_STATE_URL): "" is the folder's own
        return asked or None, ""
    also = " --state-url URL reads another database, --state-url '' this folder's own."
    used = gateway_store(state)
    if used is not None:
        url, since = used
        return url, (f"{tool}: the gateway on {state} uses the shared database {url} (since {_when(since)}; "
                     f"{state / STORE_NOTE}): read there.{also}")
    went = moved_to(state) if moved else None
    if went is not None:
        url, when = went
        return url, (f"{tool}: the keys of {state} were moved to the shared database {url} on {_when(when)} "
                     f"(qwen-keys migrate): read there.{also}")
    return None, ""


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def open_ledger(ap: argparse.ArgumentParser, url: str) -> SharedLedger:
    """The shared database's ledger (an error naming the problem, never a password)."""
    try:
        return SharedLedger(Database(url))
    except StateUrlError as e:
        ap.error(str(e))
    except Exception as e:  # psycopg's errors name host, port and user, never the password
        ap.exit(1, f"qwen-usage: cannot read the shared database: {type(e).__name__}: {e}\n")
