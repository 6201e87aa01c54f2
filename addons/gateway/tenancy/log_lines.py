"""What the gateway says of its named keys in its log: at start-up, that named keys are active and how many
(a developer who tried `qwen-keys` in their own home learns why their own client gets 401s), and one line
when that changes while it runs: the first key added, the last one deleted (keyless again), none active."""

from __future__ import annotations

from .ring import Keyring

# where the keys were read: after the counts in the start-up line
SHARED = " (the shared database)"
COPY = " (this gateway's copy of the shared keys, keys-shared.sqlite3: the database not read yet)"


def counts(ring: Keyring) -> str:
    return f"{ring.active} active, {ring.revoked} revoked"


def describe(ring: Keyring, where: str = "") -> str:
    if ring.active:
        return (f"qwen: named client keys: {counts(ring)}: every request needs a key (Authorization: Bearer KEY or "
                f"x-api-key; qwen-keys list shows them){where}")
    return (f"qwen: WARNING: named client keys: none active, {ring.revoked} revoked: every request is refused until "
            f"a key is added (qwen-keys add NAME) or the revoked ones are deleted (qwen-keys delete NAME){where}")


def keyless(flat: bool) -> str:
    return "qwen: no named client key is left: " + (
        "requests need one of the keys file's keys (qwen_client_keys_file, $QWEN_GATEWAY_KEYS)" if flat else
        "the gateway no longer requires a key (it serves its loopback clients, as before any key existed)")


def locked(exposed: list[str]) -> str:
    return ("qwen: WARNING: no named client key is left, but this gateway listens beyond loopback ("
            + ", ".join(exposed) + ") without client keys: it refuses every request until a key is added "
            "(qwen-keys add NAME); restart it to listen on loopback only")


def change(old: Keyring, new: Keyring, *, first: bool, where: str, flat: bool, exposed: list[str]) -> str | None:
    """The line for `old` becoming `new` (None: nothing worth a line). `first`: the keys as first read."""
    if new.locked and not old.locked:
        return locked(exposed)
    if first:
        return describe(new, where) if new.records else keyless(flat) if old.loaded and old.required else None
    if old.required and not new.required:
        return keyless(flat)
    if new.required and not old.required:
        return f"qwen: a named client key was added: every request now needs a key ({counts(new)}; docs/keys.md)"
    if old.active and not new.active and new.records:
        return describe(new, where)
    return None
