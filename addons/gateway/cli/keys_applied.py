"""qwen-keys returns when its change holds: every running gateway of the team applied it — or, after WAIT_S, the
ones that did not say so are named and the exit status is NOT_EVERYWHERE (the change itself is recorded).

- State folder: each gateway running on it is told through its socket and answers once applied
  (tenancy/source_folder.py).
- Shared database: a notification asks every gateway to read the key again and acknowledge (tenancy/source_pg.py);
  the running gateways are those seen alive within the holds' DEAD_S (tenancy/holds.py) and those whose LISTEN
  session is open (storage/pg_follow.py names it): a gateway whose pool is down still counts, and still answers
  over its listener's route. A gateway that cannot read the change refuses the key (503) until it can: that is
  applied too, and said."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from ..storage.pg import CHANNEL
from ..storage.pg_follow import SESSION_NAME
from ..tenancy.holds import DEAD_S
from ..tenancy.source_folder import TELL_S, tell_gateways
from ..tenancy.team_pg import ACK

WAIT_S = TELL_S  # how long qwen-keys waits for every running gateway's word
NOT_EVERYWHERE = 3  # the exit status when some running gateway did not say it applied the change
POLL_S = 0.05
# Asked again this often while a running gateway is silent: one starting has its session open (it counts as
# running) a moment before its LISTEN, and a notification sent in between passes it by.
ASK_AGAIN_S = 1.0
# A gateway on the database not seen for this long is taken for gone (a stop deletes its row; a SIGKILL leaves it).
# Before that, one not seen for DEAD_S — cut off from the database, an outage it is not back from yet — still
# serves from memory: a change it did not confirm is named (exit 3), never left out (before: "Applied on 7" of 8
# running, exit 0, and the eighth served the revoked key). A dead one is named as long.
GONE_S = 300.0
KEEP_ACKS_S = 3600.0  # acknowledgements older than this are deleted by the next qwen-keys change


def in_folder(state_dir: Path, bound: float = WAIT_S) -> tuple[str, int]:
    """The folder's running gateways told: (the line to print, the exit status)."""
    line, _, status = confirmed_in_folder(state_dir, bound)
    return line, status


def confirmed_in_folder(state_dir: Path, bound: float = WAIT_S) -> tuple[str, list[str], int]:
    """`in_folder` with the gateways that did not confirm, each named: (the line, those, the exit status)."""
    applied, silent = tell_gateways(state_dir, bound)
    named = [f"pid {pid}" for pid in silent]
    line, status = said(applied, 0, named, bound, "")
    return line, named, status


def in_database(conn: Any, name: str, bound: float = WAIT_S) -> tuple[str, int]:
    """Every running gateway on the database asked to apply `name`'s change and acknowledge it (`conn`: the
    command's autocommit connection, after the change was committed)."""
    line, _, status = confirmed_in_database(conn, name, bound)
    return line, status


def confirmed_in_database(conn: Any, name: str, bound: float = WAIT_S) -> tuple[str, list[str], int]:
    """`in_database` with the gateways that did not confirm, each named: (the line, those, the exit status)."""
    token = secrets.token_hex(8)
    deadline = time.monotonic() + bound
    asked = float("-inf")
    while True:
        if time.monotonic() - asked >= ASK_AGAIN_S:  # (the same token: a gateway answers it once)
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{ACK}:{token}:{name}"))
            asked = time.monotonic()
        alive = running(conn)
        acked = dict(conn.execute("SELECT gateway, refusing FROM key_acks WHERE token = %s", (token,)).fetchall())
        silent = [label for gid, label in sorted(alive.items()) if gid not in acked]
        if not silent or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    conn.execute("DELETE FROM key_acks WHERE at < extract(epoch FROM clock_timestamp()) - %s", (KEEP_ACKS_S,))
    refusing = sum(1 for gid, refuses in acked.items() if refuses and gid in alive)
    line, status = said(sum(1 for gid in acked if gid in alive) - refusing, refusing, silent, bound,
                        " (its log says when its LISTEN hears nothing: qwen_state_listen_url)")
    return line, silent, status


def running(conn: Any) -> dict[str, str]:
    """The gateways running on the database: id -> "host:pid" (holding their LISTEN session on this database — the
    server's other databases are other teams' — or not quiet for GONE_S). One without its session and quiet for
    DEAD_S is cut off from the database (or died without stopping): it may still serve clients, so it counts, named
    with how long it has been quiet, until it answers or GONE_S passes. Quiet is what the gateways still on the
    database saw of its beat on their own monotonic clocks (tenancy/liveness.py); the database's clock only where
    none saw it beat, so a step of that clock hides no gateway that is cut off."""
    rows = conn.execute("SELECT id, host, pid, extract(epoch FROM clock_timestamp()) - seen, quiet "
                        "FROM qwen_gateways").fetchall()
    where = {gid: f"{host}:{pid}" for gid, host, pid, _, _ in rows}
    found: dict[str, str] = {}
    for (app,) in conn.execute("SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
                               "AND application_name LIKE %s", (SESSION_NAME + "%",)).fetchall():  # (not another team's)
        gid, _, named = app[len(SESSION_NAME):].partition(" ")
        found.setdefault(gid, where.get(gid) or named or "unknown host")
    observed: dict[str, float] = {}  # by the gateways on the database now: the shortest quiet each saw
    for gid, _, _, _, quiet in rows:
        if gid in found and quiet:
            for peer, seconds in json.loads(quiet).items():
                observed[peer] = min(seconds, observed.get(peer, seconds))
    for gid, _, _, unseen, _ in rows:
        quiet = observed.get(gid, float(unseen))
        if gid in found or quiet > GONE_S:
            continue
        found[gid] = where[gid] if quiet <= DEAD_S else \
            f"{where[gid]} (not seen for {quiet:.0f} s: cut off from the database, or dead)"
    return found


def said(applied: int, refusing: int, silent: list[str], bound: float, hint: str) -> tuple[str, int]:
    if not applied and not refusing and not silent:
        return "No gateway is running on it: each reads the keys when it starts.", 0
    parts = [f"Applied on {_count(applied)}"] if applied else []
    if refusing:
        one = refusing == 1
        parts.append(f"{_count(refusing)} could not read the change and refuse{'s' if one else ''} the key (503) "
                     f"until {'it' if one else 'they'} can")
    line = "; ".join(parts) + "." if parts else ""
    if not silent:
        return line, 0
    return (line + (" " if line else "") + f"Not confirmed within {bound:g} s by {', '.join(silent)}: such a "
            f"gateway applies the change when it next reads the keys{hint}."), NOT_EVERYWHERE


def _count(n: int) -> str:
    return f"{n} running gateway{'' if n == 1 else 's'}"
