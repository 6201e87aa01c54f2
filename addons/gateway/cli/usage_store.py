"""Which usage ledger `qwen-usage` reads: the one the folder's gateway writes.

A gateway moved to PostgreSQL (`qwen_state_url`) writes its ledger there, and notes so in its folder
(`gateway-store.json`, tenancy/place.py). `qwen-usage` without `--state-url` read the folder's old
ledger all the same, and said nothing (the issue: 14 requests instead of 181). It now follows the note, and says
which store it read; `--state-url URL` reads that database, `--state-url ''` the folder's own ledger.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..tenancy.place import STORE_NOTE, gateway_store
from ..observe.ledger import SharedLedger
from ..storage.pg import Database, StateUrlError


def database(state: Path, asked: str | None) -> tuple[str | None, str]:
    """The database to read (None: the folder's ledger), and a line saying where it came from ("" when the user
    named it, or there is none)."""
    if asked is not None:  # --state-url (or $QWEN_STATE_URL): "" is the folder's own ledger
        return asked or None, ""
    used = gateway_store(state)
    if used is None:
        return None, ""
    url, since = used
    return url, (f"qwen-usage: the gateway on {state} uses the shared database {url} (since "
                 f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(since))}; {state / STORE_NOTE}): its usage is "
                 "read there. --state-url URL reads another database, --state-url '' this folder's own ledger.")


def open_ledger(ap: argparse.ArgumentParser, url: str) -> SharedLedger:
    """The shared database's ledger (an error naming the problem, never a password)."""
    try:
        return SharedLedger(Database(url))
    except StateUrlError as e:
        ap.error(str(e))
    except Exception as e:  # psycopg's errors name host, port and user, never the password
        ap.exit(1, f"qwen-usage: cannot read the shared database: {type(e).__name__}: {e}\n")
