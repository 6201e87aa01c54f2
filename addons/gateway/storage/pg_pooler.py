"""A pooler in session mode named at start: `qwen_state_url` through PgBouncer with `pool_mode = session` (a common
mistake: PgBouncer's default) shares nothing — each of a gateway's connections holds a server connection of its own
for as long as it is open — so a team's gateways exhaust the pooler's servers and wait on each other (docs/deploy.md:
transaction mode). Nothing else tells: every statement works.

How it is told, on two connections through the URL (blocking: from a thread, once per URL and process):
- a pooler is between when the backend pid the server reports is not the one the connection was given at start
  (PgBouncer hands its clients cancel keys of its own);
- it pools by session when each client keeps its server connection across transactions, distinct from the other
  client's, while they take turns (in transaction mode, turns taken one after the other share the server that was
  just let go)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("qwen")
ROUNDS = 4  # turns each client takes: in transaction mode one of them lands on the other's server
_checked: set[str] = set()


def session_pooled(opened: Callable[[], Any]) -> bool:
    """Whether the URL `opened()` connects to (pg_follow.plain_connection) goes through a pooler in session mode."""
    with opened() as a, opened() as b:
        def pid(conn: Any) -> int:
            return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])

        first = pid(a)
        if first == a.info.backend_pid:
            return False  # the server itself: no pooler between
        seen_a, seen_b = {first}, set()
        for _ in range(ROUNDS):
            seen_b.add(pid(b))
            seen_a.add(pid(a))
        return len(seen_a) == 1 and len(seen_b) == 1 and not seen_a & seen_b


WARNING = ("qwen: WARNING: qwen_state_url %s goes through a pooler in session mode (PgBouncer's pool_mode = "
           "session): each of this gateway's connections (up to %d at once) holds a server connection for as long as "
           "it is open, so the pooler shares nothing — the gateways of a team exhaust its servers and wait on each "
           "other (requests 503 after 10 s). Set pool_mode = transaction for this database (docs/deploy.md), and "
           "qwen_state_listen_url to the database itself.")


def check(url: str, shown: str, pool_max: int, opened: Callable[[], Any]) -> None:
    """Blocking, once per URL and process: the warning when `url` is pooled by session; a failure says nothing (the
    stores say the database's own failures)."""
    if url in _checked:
        return
    _checked.add(url)
    try:
        pooled = session_pooled(opened)
    except Exception as e:
        log.debug("qwen: could not tell how %s is pooled: %s", shown, type(e).__name__)
        return
    if pooled:
        log.warning(WARNING, shown, pool_max)
