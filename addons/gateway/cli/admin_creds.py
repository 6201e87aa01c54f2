"""The admin API's credentials (docs/admin-api.md): each a name and the SHA-256 of a secret that is printed once by
`qwen-keys add-admin NAME` and never stored. Kept in `<state_dir>/admin-keys.json` (0600, written atomically,
never deleted: a revoked credential stays listed as revoked) — the folder of the gateway whose admin API takes them.

An admin credential is no client key: its prefix differs (`sk-qga-`), it is not in the keyring, so /v1 refuses it
as any unknown key; and a client key is not here, so the admin API refuses it (401)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ..auth.credfile import atomic_write

FILENAME = "admin-keys.json"
PREFIX = "sk-qga-"  # "qwen gateway admin"


class AdminNameError(ValueError):
    """A name that exists (add) or does not (revoke)."""


@dataclass(frozen=True)
class Admin:
    name: str
    digest: str  # hex SHA-256 of the secret
    created: float
    revoked: float | None = None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def read(state_dir: Path) -> list[Admin]:
    path = state_dir / FILENAME
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [Admin(a["name"], a["digest"], a["created"], a.get("revoked")) for a in data.get("admins", [])]


def _write(state_dir: Path, admins: list[Admin]) -> None:
    atomic_write(state_dir / FILENAME, json.dumps({"admins": [
        {"name": a.name, "digest": a.digest, "created": a.created, "revoked": a.revoked} for a in admins]},
        indent=2) + "\n")


def add(state_dir: Path, name: str) -> str:
    """A new credential named `name`: its secret, to be shown once."""
    admins = read(state_dir)
    if any(a.name == name and not a.revoked for a in admins):
        raise AdminNameError(f"admin credential {name!r} exists; revoke it first (qwen-keys revoke-admin {name})")
    secret = PREFIX + secrets.token_urlsafe(32)
    _write(state_dir, [a for a in admins if a.name != name] + [Admin(name, _digest(secret), time.time())])
    return secret


def revoke(state_dir: Path, name: str) -> None:
    admins = read(state_dir)
    if not any(a.name == name and not a.revoked for a in admins):
        raise AdminNameError(f"no active admin credential named {name!r} (qwen-keys list-admins shows them)")
    now = time.time()
    _write(state_dir, [Admin(a.name, a.digest, a.created, now) if a.name == name else a for a in admins])


def who(state_dir: Path, presented: str) -> str | None:
    """The name of the active credential whose secret was presented, else None (compared in constant time)."""
    if not presented.startswith(PREFIX):
        return None
    seen = _digest(presented)
    found = None
    for a in read(state_dir):
        if hmac.compare_digest(a.digest, seen) and not a.revoked:
            found = a.name
    return found


COMMANDS = ("add-admin", "list-admins", "revoke-admin")


def add_parsers(sub, common, name_type) -> None:  # noqa: ANN001  (argparse's private subparsers action)
    """qwen-keys add-admin NAME, list-admins, revoke-admin NAME."""
    sub.add_parser("add-admin", parents=[common], help="a credential for the admin API, printed once as the last "
                   "line").add_argument("name", type=name_type)
    sub.add_parser("list-admins", parents=[common], help="the admin API's credentials (names, never secrets)")
    sub.add_parser("revoke-admin", parents=[common], help="an admin credential stops working").add_argument(
        "name", type=name_type)


def run(command: str, state_dir: Path, name: str | None) -> int:
    """One of COMMANDS: what it says, and its exit status."""
    import sys
    try:
        if command == "add-admin":
            assert name is not None
            secret = add(state_dir, name)
            print(f"Added admin credential {name} to {state_dir / FILENAME}: the admin API (qwen_admin_listen) "
                  "takes it as Authorization: Bearer. It is shown once, here; only its SHA-256 is stored:")
            print(secret)
        elif command == "revoke-admin":
            assert name is not None
            revoke(state_dir, name)
            print(f"Revoked admin credential {name}: the admin API refuses it (401).")
        else:
            admins = read(state_dir)
            print("\n".join(f"{a.name}  {'revoked' if a.revoked else 'active'}  created "
                            + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(a.created)) for a in admins)
                  or "No admin credential yet (qwen-keys add-admin NAME).")
    except AdminNameError as e:
        print(f"qwen-keys: {e}", file=sys.stderr)
        return 1
    return 0
