"""Sealed `encrypted_content`: what the gateway hands a client to keep and give back later.

A `store: false` client (Codex) keeps the conversation itself: the gateway's reasoning and its compaction
summaries travel in `encrypted_content` and come back in a later request's input. The gateway seals them
with authenticated encryption (AES-256-GCM, a fresh 96-bit nonce per seal, the kind of content as
associated data), so a client can neither read them nor make the gateway accept anything it did not seal:
a tampered, foreign or other-kind token opens to None.

The key is 32 random bytes in `<state_dir>/seal.key` (0600), created at first use and written atomically
(a private temporary file linked into place: two gateways starting together end up with the same key).
Losing the key only makes older sealed items unreadable (they are dropped with a note).
With shared state on PostgreSQL, the first gateway's key is published in the database and every gateway
adopts it (`Sealer.adopt`): one gateway opens what another sealed. The key published is `load_key`'s: the
folder's when it has one (what it sealed before stays readable), else one made for the database, written to a
folder that takes it and kept in memory only by one that does not (read-only, full): the database keeps it,
so such a folder costs a PostgreSQL gateway nothing. Without PostgreSQL the folder is where the key lives:
`Sealer` refuses to seal with a key it could not keep.

Token format: "qgw1." + base64url(nonce || ciphertext || tag), no padding.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .storage.health import local_failure, local_fault

PREFIX = "qgw1."
KEY_FILE = "seal.key"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_AAD = b"qwen-gateway/"


def load_key(folder: Path) -> bytes:
    """The sealing key to publish in a shared database: the folder's, created (0600, atomically) when there is
    none; a folder that cannot take one (read-only, full, not there) gives a new key, in memory only."""
    try:
        return stored_key(folder)
    except OSError as e:
        if local_fault(e) is None:
            raise
        return secrets.token_bytes(_KEY_BYTES)


def stored_key(folder: Path) -> bytes:
    """The gateway's sealing key, created (0600, atomically) when there is none."""
    path = folder / KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = folder / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64encode(secrets.token_bytes(_KEY_BYTES)) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # never replaces a key another process wrote first
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    raw = path.read_bytes().strip()
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != _KEY_BYTES:
        raise ValueError(f"{path} is not a sealing key (32 bytes, base64): move it away to have a new one made")
    return key


class Sealer:
    """Seals and opens JSON payloads of a named kind ("reasoning", "compaction")."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._aead: AESGCM | None = None
        self._lock = threading.Lock()

    def _cipher(self) -> AESGCM:
        with self._lock:
            if self._aead is None:
                try:
                    self._aead = AESGCM(stored_key(self.folder))
                except OSError as e:  # a folder that cannot keep a key: its outage (503), not a 500
                    raise local_failure(self.folder, e) or e from None
            return self._aead

    def ready(self) -> None:
        """The key loaded now (made if there is none): what cannot be written says so here, not mid-answer
        (StateUnavailable: the folder's outage)."""
        self._cipher()

    def adopt(self, key: bytes) -> None:
        """Seal and open with `key` from now on (the key several gateways share through their database)."""
        if len(key) != _KEY_BYTES:
            raise ValueError("a sealing key is 32 bytes")
        with self._lock:
            self._aead = AESGCM(key)

    def seal(self, kind: str, payload: dict) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        sealed = nonce + self._cipher().encrypt(nonce, data, _AAD + kind.encode())
        return PREFIX + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(self, kind: str, token: object) -> dict | None:
        """The payload, or None for anything this gateway did not seal as `kind`."""
        if not isinstance(token, str) or not token.startswith(PREFIX):
            return None
        body = token[len(PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) <= _NONCE_BYTES:
            return None
        try:
            data = self._cipher().decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _AAD + kind.encode())
            payload = json.loads(data)
        except (InvalidTag, ValueError):
            return None
        return payload if isinstance(payload, dict) else None

