"""The admin API's views besides the keys (docs/admin-api.md), each the function the CLI prints from: spend and the
ledger by key, model, day, account and conversation and its newest requests (qwen-usage: cli/usage.py,
cli/usage_conversations.py), the accounts' state (qwen-auth status --json: cli/auth_status.py), learned facts and
forgetting them (qwen-usage learned: cli/usage_learned.py). Read where this gateway keeps them: its folder, or the
shared database of qwen_state_url."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..models.learned import FACTS
from ..observe.ledger import FILENAME, Ledger, SharedLedger
from ..settings.auth import AuthSettings
from ..storage.pg import Database
from . import auth_status, usage, usage_conversations, usage_learned
from .usage_args import parse_since, positive

log = logging.getLogger("qwen")
SPEND_BY = {"key": "", "model": "models", "day": "days", "account": "accounts", "today": "today"}


class BadQuery(ValueError):
    """A query parameter refused: its name, and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class View:
    methods: tuple[str, ...]
    run: Callable[[AuthSettings, str, dict[str, str], str], Any]  # (where, method, query, who) -> the JSON body


def _only(query: dict[str, str], *allowed: str) -> None:
    if unknown := sorted(set(query) - set(allowed)):
        raise BadQuery(unknown[0], f"not a parameter here (these are: {', '.join(allowed) or 'none'})")


def _filters(query: dict[str, str]) -> usage.Filters:
    try:
        since = parse_since(query["since"]) if "since" in query else None
    except argparse.ArgumentTypeError as e:
        raise BadQuery("since", str(e)) from None
    return usage.Filters(since=since, account=query.get("account"), model=query.get("model"), key=query.get("key"))


def _ledger(where: AuthSettings) -> Ledger | SharedLedger | None:
    if where.state_url:
        return SharedLedger(Database(where.state_url))
    path = where.state_dir / FILENAME
    return Ledger(path) if path.exists() else None


def _limit(query: dict[str, str]) -> int:
    try:
        return positive(query.get("limit", "20"))
    except argparse.ArgumentTypeError as e:
        raise BadQuery("limit", str(e)) from None


def spend(where: AuthSettings, method: str, query: dict[str, str], who: str) -> dict:
    """qwen-usage's sums: by=key (--by key), model, day, account, today (the default view)."""
    _only(query, "by", "since", "account", "model", "key")
    by = query.get("by", "key")
    if by not in SPEND_BY:
        raise BadQuery("by", f"one of {', '.join(SPEND_BY)}")
    filters = _filters(query)
    ledger = _ledger(where)
    if ledger is None:
        return {"by": by, "rows": []}
    try:
        rows = usage.by_key(ledger, "all", filters) if by == "key" else usage.report(ledger, SPEND_BY[by], filters)
    finally:
        ledger.close()
    return {"by": by, "rows": rows}


def conversations(where: AuthSettings, method: str, query: dict[str, str], who: str) -> dict:
    """qwen-usage conversations: the newest conversations, their cache hits and misses."""
    _only(query, "since", "account", "model", "key", "limit")
    filters, limit = _filters(query), _limit(query)
    return {"rows": _read(where, lambda ledger: usage_conversations.conversations(ledger, *filters.sql(), limit))}


def requests(where: AuthSettings, method: str, query: dict[str, str], who: str) -> dict:
    """qwen-usage requests: the newest requests, oldest first."""
    _only(query, "since", "account", "model", "key", "limit")
    filters, limit = _filters(query), _limit(query)
    return {"rows": _read(where, lambda ledger: usage.recent(ledger, filters, limit))}


def _read(where: AuthSettings, rows: Callable[[Any], list]) -> list:
    """`rows` of the ledger, which is closed after; none when there is no ledger yet."""
    ledger = _ledger(where)
    if ledger is None:
        return []
    try:
        return rows(ledger)
    finally:
        ledger.close()


def accounts(where: AuthSettings, method: str, query: dict[str, str], who: str) -> dict:
    """qwen-auth status --json: each account's state (never a token or key)."""
    _only(query)
    return {"accounts": auth_status.status_rows(where)}


def learned(where: AuthSettings, method: str, query: dict[str, str], who: str) -> dict:
    """qwen-usage learned (GET), and --forget MODEL [--fact F] (DELETE ?model=M[&fact=F])."""
    _only(query, *(("model", "fact") if method == "DELETE" else ()))
    forget = fact = None
    if method == "DELETE":
        if not (forget := query.get("model", "").strip()):
            raise BadQuery("model", "the model whose facts to forget")
        if (fact := query.get("fact")) is not None and fact not in FACTS:
            raise BadQuery("fact", f"one of {', '.join(FACTS)}")
    rows, gone = usage_learned.facts(where.state_dir, where.state_url or None, forget, fact)
    if forget is not None:
        log.info("qwen: admin API: %s forgot %d learned fact%s of %s%s", who, gone, "" if gone == 1 else "s",
                 forget, f" ({fact})" if fact else "")
    return {"facts": [{**f._asdict(), "expires": f.expires} for f in rows],
            **({"forgot": gone} if forget is not None else {})}


VIEWS = {"spend": View(("GET",), spend), "conversations": View(("GET",), conversations),
         "requests": View(("GET",), requests), "accounts": View(("GET",), accounts),
         "learned": View(("GET", "DELETE"), learned)}
