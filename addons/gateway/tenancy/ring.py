"""Named client keys in memory: the SHA-256 of each key → its record (name, limits, revoked). Pure: no I/O.

A key is 32 random bytes (`sk-qg-…`): its SHA-256 identifies it, and only the digest is ever stored. The
check of a presented key is one hash and one dict lookup, whatever the number of keys; the digests are
then compared in constant time (a dict lookup on the hash of a secret tells an attacker nothing about the
secret, and the last comparison leaks nothing either)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..exchange import Exchange

PREFIX = "sk-qg-"  # "qwen gateway": tells the key's reader what it opens


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def pending(ex: Exchange, key: bytes) -> None:
    """A request's key kept as its digest until the shared keys are read (ingress/admission.admit_late)."""
    ex.key.digest = digest(key)


def take_pending(ex: Exchange) -> bytes | None:
    """The digest `pending` kept, once."""
    key_digest, ex.key.digest = ex.key.digest, None
    return key_digest


@dataclass(frozen=True, slots=True)
class KeyRecord:
    name: str
    digest: bytes = b""
    rpm: int = 0  # requests per minute (0: no limit)
    tpm: int = 0  # tokens per minute
    daily_tokens: int = 0  # tokens per UTC day, as Qwen reported them
    monthly_usd: float = 0.0  # USD per UTC month, from the price table
    revoked: bool = False
    unread: bool = False  # changed in the shared database, and this gateway could not read how: refused until it can
    budgets: tuple[tuple[str, str, float], ...] = ()  # (flag, model or "", amount): tenancy/budgets.py's other budgets

    @property
    def limits(self) -> dict[str, int | float]:
        """The limits set on the key, by option name (a budget of one model's: "flag model")."""
        return {k: v for k, v in (("rpm", self.rpm), ("tpm", self.tpm), ("daily-tokens", self.daily_tokens),
                                  ("monthly-usd", self.monthly_usd),
                                  *((f"{flag} {model}".rstrip(), a) for flag, model, a in self.budgets)) if v}


class Keyring:
    """Immutable: a reload builds a new one (the hot path reads it without a lock)."""

    def __init__(self, records: tuple[KeyRecord, ...] = (), *, loaded: bool = True, provisional: bool = False,
                 locked: bool = False) -> None:
        self.records = records
        self.provisional = provisional  # read from the local copy of the shared keys, not the database yet
        self._by_digest = MappingProxyType({r.digest: r for r in records})
        self.by_name = MappingProxyType({r.name: r for r in records})
        self.loaded = loaded  # False until the shared database was read once: nothing is known yet
        # no key left, but the gateway listens beyond loopback: every request is refused (tenancy/source.py)
        self.locked = locked and not records
        self.revoked = sum(r.revoked for r in records)
        self.active = len(records) - self.revoked

    @property
    def required(self) -> bool:
        """Once any named key exists (revoked ones too: a gateway whose keys were all revoked refuses every
        request, it does not fall open), every request needs a key; `qwen-keys delete` of the last one
        makes the gateway keyless again. Keys not read yet may exist: a key is needed (fail closed)."""
        return bool(self.records) or self.locked or not self.loaded

    def find(self, presented: bytes) -> KeyRecord | None:
        return self.find_digest(digest(presented))

    def find_digest(self, d: bytes) -> KeyRecord | None:
        rec = self._by_digest.get(d)
        return rec if rec is not None and hmac.compare_digest(rec.digest, d) else None

    def change(self, rec: KeyRecord) -> str:
        """What became of `rec` in this ring, when it ends the requests sent with it: deleted, revoked, rotated
        (a new key under its name); "" when nothing did."""
        now = self.by_name.get(rec.name)
        if now is rec:
            return ""
        if now is None:
            return "deleted"
        if now.revoked and not rec.revoked:
            return "revoked"
        return "rotated" if now.digest != rec.digest else ""

    def changes(self, new: Keyring) -> list[tuple[str, str]]:
        """(name, what became of it) of every key `new` revokes, rotates or deletes."""
        return [(name, change) for name, rec in self.by_name.items() if (change := new.change(rec))]

    def replaced(self, name: str, record: KeyRecord | None) -> Keyring:
        """This ring with one key's record replaced (None: it no longer exists)."""
        rest = tuple(r for r in self.records if r.name != name)
        return Keyring(rest + ((record,) if record is not None else ()), loaded=self.loaded,
                       provisional=self.provisional)
