"""mitmweb's login where its user can read it, and never in the log.

Without `web_password`, mitmweb makes a token for the run and prints its URL (`…:8081/?token=…`); it opens a
browser with it when it can. On a server, or over SSH, there is no browser: the UI answers 403 (a login form
asking for that token), and the gateway redacts the token from the console, as it redacts every secret from the
log. So the URL with the token is written to `<state_dir>/mitmweb-login` (0600, in the 0700 state folder: as
private as the keys beside it), one line says where, and the file goes when the gateway stops. With
`web_password` set there is nothing to write: the login form takes that password.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger("qwen")

FILENAME = "mitmweb-login"
OPTIONS = frozenset({"web_password", "web_port", "web_host"})  # what changes mitmweb's login URL


class Login:
    def __init__(self) -> None:
        self.path: Path | None = None  # the file written for this run

    def keep(self, master: object, state_dir: Path) -> None:
        """From the gateway's configure, when mitmweb's login may have changed: its URL written (or, with a
        password of the user's own, the file removed)."""
        addons = getattr(master, "addons", None)
        auth = addons.get("webauth") if addons is not None else None
        if auth is None:  # mitmdump: no web UI
            return
        self.forget()
        url = auth.web_url
        if "token=" not in url:  # web_password: the login form takes the user's own password
            return
        path = state_dir / FILENAME
        try:
            _write_private(path, url + "\n")
        except OSError as e:
            log.warning(f"qwen: mitmweb's login could not be written to {path} ({e.strerror or e}): set your own "
                        "web_password to log in (docs/mitmweb.md)")
            return
        self.path = path
        log.info(f"qwen: mitmweb's login (its token for this run, kept out of the log) is in {path}: open that URL "
                 "in a browser — from another machine through `ssh -L PORT:127.0.0.1:PORT HOST` — or set "
                 "web_password (docs/mitmweb.md)")

    def forget(self) -> None:
        """The gateway stops (or the login changed): the file written for this run removed."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.path = None


def _write_private(path: Path, text: str) -> None:
    """`text` in `path`, mode 0600 from its first byte, replacing what was there."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
