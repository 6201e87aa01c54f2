"""A shared database's schema (pg.py's `Database.migrate`): each store brings its own numbered steps, and
`schema_version` remembers how far each component got."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_LOCK_SCHEMA = 0x7177_6E00  # advisory lock key for migrations ("qwn\0")


_SCHEMA_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"


def migrate_sync(conn: Any, component: str, steps: Sequence[str]) -> int:
    """Bring `component`'s tables to version len(steps) (step i is version i+1), under an advisory lock held
    for the transaction: two gateways starting at once take turns, the second finds the work done."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_SCHEMA,))
        conn.execute(_SCHEMA_TABLE)
        row = conn.execute("SELECT version FROM schema_version WHERE component=%s", (component,)).fetchone()
        have = row[0] if row else 0
        for version, step in enumerate(steps[have:], start=have + 1):
            conn.execute(step)
            conn.execute("INSERT INTO schema_version VALUES (%s, %s) ON CONFLICT (component) DO UPDATE SET "
                         "version = EXCLUDED.version", (component, version))
        return len(steps)
