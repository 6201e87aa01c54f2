"""qwen-usage batches: the batches the gateway made, the newest first, each with the advice its creation gave
(api/batches/advice.py): per Qwen model, the prefix its lines share and, from 1,024 tokens, what they cost as
a batch against one by one in real time with that prefix read from Qwen's cache (input only: "unpriced" when
the model has no price). Read from the batch store the gateway writes (the state folder's batches.sqlite3, or
the shared PostgreSQL database it uses).

    qwen-usage batches                        the newest 20 batches (--limit N), every key's
    qwen-usage batches --key NAME             only this named client key's

    --json, --state-dir DIR, --state-url URL  as for qwen-usage
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from ..api.batches.advice import Advice
from ..stores.batches import FILENAME, BatchStore, Record, SharedBatchStore
from ..settings.auth import resolve_state_dir
from ..storage.pg import Database, StateUrlError
from . import usage_store
from .usage_args import positive

HEAD = ("batch", "created", "key", "model", "advice")
NONE_READ = "none read"  # a batch made before the gateway gave advice, or of no chat lines
_VALUED = ("--since", "--status", "--account", "--model", "--key", "--by", "--limit", "--out", "-o", "--output",
           "--state-dir",
           "--state-url")  # qwen-usage's options that take a value


def asked(argv: list[str]) -> list[str] | None:
    """The arguments for this view when qwen-usage's view (its first word that is no option and no option's
    value) is `batches`, else None."""
    for i, word in enumerate(argv):
        if not word.startswith("-") and (i == 0 or argv[i - 1] not in _VALUED):
            return argv[:i] + argv[i + 1:] if word == "batches" else None
    return None


def _rows(ap: argparse.ArgumentParser, a: argparse.Namespace) -> tuple[list[tuple[Record, float]], str]:
    folder = resolve_state_dir(a.state_dir)
    url, followed = usage_store.database(folder, a.state_url)
    if followed:
        print(followed.replace("its usage is read there", "its batches are read there"), file=sys.stderr)
    if url:
        try:
            store: BatchStore = SharedBatchStore(Database(url))
        except StateUrlError as e:
            ap.error(str(e))
        where = "the shared database"
    elif (folder / FILENAME).exists():
        store, where = BatchStore(folder), str(folder / FILENAME)
    else:
        return [], str(folder / FILENAME)

    async def read() -> list[tuple[Record, float]]:
        try:
            return await store.batches(a.limit, a.key)
        finally:
            await store.aclose()
    try:
        return asyncio.run(read()), where
    except Exception as e:  # psycopg's errors name host, port and user, never the password
        ap.exit(1, f"qwen-usage: cannot read the batches: {type(e).__name__}: {e}\n")


def said(record: Record) -> str:
    advice = Advice.loads(record.advice)
    return advice.text() if advice is not None and advice.models else NONE_READ


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="qwen-usage batches", description=__doc__.split("\n", 1)[0],
                                 epilog=__doc__.split("\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--key", metavar="NAME", help="only this named client key's batches")
    ap.add_argument("--limit", type=positive, default=20, metavar="N", help="how many (default 20)")
    ap.add_argument("--json", action="store_true", help="print rows as JSON")
    ap.add_argument("--state-dir", metavar="DIR", help="the gateway's state folder")
    ap.add_argument("--state-url", metavar="URL", default=os.environ.get("QWEN_STATE_URL"),
                    help="the shared PostgreSQL database (default $QWEN_STATE_URL, else the one the folder's gateway "
                         "uses); '' the folder's own store")
    a = ap.parse_args(argv)
    rows, where = _rows(ap, a)
    if a.json:
        print(json.dumps([{"batch": r.id, "created": created, "key": r.owner, "model": r.model,
                           "advice": [vars(m) for m in advice.models] if (advice := Advice.loads(r.advice)) else None}
                          for r, created in rows], indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print(f"no batches made through the gateway yet ({where})")
        return 0
    cells = [HEAD, *((r.id, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)), r.owner or "-",
                      r.model or "-", said(r)) for r, created in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEAD) - 1)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]]) for row in cells]
    lines.insert(1, "  ".join([*("-" * w for w in widths), "-" * len(HEAD[-1])]))
    print("\n".join(lines))
    return 0
