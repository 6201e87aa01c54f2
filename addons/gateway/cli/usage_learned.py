"""qwen-usage learned: what Qwen's own refusals taught the gateways (models/learned.py), and how to forget it.

    qwen-usage learned                        each fact: model, what it bounds, the value, when it was learned,
                                              until when it holds (then Qwen is asked again)
    qwen-usage learned --forget MODEL         forget a model's facts (--fact output|budget|input: one of them);
                                              a running gateway reads its folder again within 30 s, gateways
                                              on PostgreSQL at once

    --json, --state-dir DIR, --state-url URL  as for qwen-usage
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

from ..models.learned import FACTS, FILE, Fact, LearnedFacts
from ..models.learned_pg import _ROWS, COMPONENT, KIND, STEPS
from ..settings.auth import resolve_state_dir
from ..storage.pg import CHANNEL, Database, StateUrlError
from . import usage_store

HEAD = ("model", "fact", "value", "learned", "holds until")
_VALUED = ("--since", "--status", "--account", "--model", "--key", "--by", "--limit", "--out", "-o", "--output",
           "--state-dir", "--state-url", "--forget", "--fact")  # qwen-usage's options that take a value


def asked(argv: list[str]) -> list[str] | None:
    """The arguments for this view when qwen-usage's view (its first word that is no option and no option's
    value) is `learned`, else None."""
    for i, word in enumerate(argv):
        if not word.startswith("-") and (i == 0 or argv[i - 1] not in _VALUED):
            return argv[:i] + argv[i + 1:] if word == "learned" else None
    return None


def _shared(ap: argparse.ArgumentParser, url: str, forget: str | None, fact: str | None) -> tuple[list[Fact], int]:
    """The shared database's facts (and what --forget removed, said to every gateway at once)."""
    try:
        return shared_facts(url, forget, fact)
    except StateUrlError as e:
        ap.error(str(e))
    except Exception as e:  # psycopg's errors name host, port and user, never the password
        ap.exit(1, f"qwen-usage: cannot read the shared database: {type(e).__name__}: {e}\n")


def shared_facts(url: str, forget: str | None, fact: str | None) -> tuple[list[Fact], int]:
    """`_shared` for a caller of its own (the admin API): the database's errors raised."""
    db = Database(url)
    db.migrate(COMPONENT, STEPS)
    with db.connect() as conn:
        gone = 0
        if forget is not None:
            where, args = ("model=%s AND fact=%s", (forget, fact)) if fact else ("model=%s", (forget,))
            gone = conn.execute(f"DELETE FROM learned_facts WHERE {where}", args).rowcount
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{KIND}:{forget}"))
        rows = conn.execute(_ROWS).fetchall()
    return sorted(LearnedFacts.read_rows(rows, "the shared database").values()), gone


def facts(folder, url: str | None, forget: str | None = None, fact: str | None = None) -> tuple[list[Fact], int]:
    """What was learned, where the gateways keep it (and what `forget` removed): qwen-usage learned's rows."""
    return shared_facts(url, forget, fact) if url else _local(folder, forget, fact)


def _local(folder, forget: str | None, fact: str | None) -> tuple[list[Fact], int]:
    facts = LearnedFacts(folder) if (folder / FILE).exists() or forget is not None else None
    if facts is None:
        return [], 0
    with contextlib.closing(facts):
        gone = facts.forget(forget, fact) if forget is not None else 0
        return facts.rows(), gone


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="qwen-usage learned", description=__doc__.split("\n", 1)[0],
                                 epilog=__doc__.split("\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--forget", metavar="MODEL", help="forget this model's facts")
    ap.add_argument("--fact", choices=FACTS, help="with --forget: only this fact")
    ap.add_argument("--json", action="store_true", help="print rows as JSON")
    ap.add_argument("--state-dir", metavar="DIR", help="the gateway's state folder")
    ap.add_argument("--state-url", metavar="URL", default=os.environ.get("QWEN_STATE_URL"),
                    help="the shared PostgreSQL database (default $QWEN_STATE_URL, else the one the folder's gateway "
                         "uses: said on stderr); '' the folder's own")
    a = ap.parse_args(argv)
    if a.fact and not a.forget:
        ap.error("--fact goes with --forget")
    folder = resolve_state_dir(a.state_dir)
    url, followed = usage_store.database(folder, a.state_url, "qwen-usage learned")
    if followed:
        print(followed, file=sys.stderr)
    rows, gone = _shared(ap, url, a.forget, a.fact) if url else _local(folder, a.forget, a.fact)
    where = "the shared database" if url else str(folder / FILE)
    if a.json:
        print(json.dumps([{**f._asdict(), "expires": f.expires} for f in rows], indent=2))
    else:
        if a.forget is not None:
            print(f"forgot {gone} fact{'s' if gone != 1 else ''} of {a.forget} in {where}")
        print(_table(rows, where))
    return 0


def _table(rows: list[Fact], where: str) -> str:
    if not rows:
        return f"nothing learned from Qwen yet ({where})"
    now = time.time()
    lines = [(f.model, f.fact, f"{f.value:,}", _when(f.learned),
              _when(f.expires) if f.expires > now else "expired: asked again") for f in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(HEAD, *lines, strict=True)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
                     for row in (HEAD, *lines)) + f"\n({where})"
