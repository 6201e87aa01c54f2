"""For the account tests that run against the session's emulator: look-ups on it, a login it knows written
as qwen-code writes it, and the installed `qwen-auth` command run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from qwen_gateway.auth.credfile import LOGIN_ORDER, write_creds
from qwen_gateway.settings.auth import INTERVAL_ENV, AuthSettings

from . import commands
from .procs import BIN, ROOT, Emulator

# No proxy for loopback calls, and no interval settings from the caller's shell.
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k.lower() not in ("http_proxy", "https_proxy", "all_proxy") and k not in INTERVAL_ENV.values()}
NODE_FETCH = {"user-agent": "node", "accept-encoding": "gzip, deflate", "accept-language": "*",
              "sec-fetch-mode": "cors"}


class Server(Emulator):
    """The session's emulator process, with the look-ups these tests use."""

    def requests(self, path: str | None = None) -> list[dict]:
        return [r for r in super().requests() if path is None or r["path"] == path]

    def issue(self, expires_in: float = 3600, kind: str = "oauth") -> dict:
        return self.admin("POST", "tokens", {"expires_in": expires_in, "kind": kind})

    def accepts(self, token: str) -> bool:
        return self.http.get("/v1/models", headers={"authorization": f"Bearer {token}"}).status_code == 200

    def oauth_requests(self) -> list[dict]:
        return [r for r in self.requests() if r["path"].startswith("/api/v1/oauth2/")]


def settings_for(tmp_path: Path, srv: Server) -> AuthSettings:
    return AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                 oauth_base_url=srv.url, default_api_base=srv.url + "/v1")


def seed(srv: Server, settings: AuthSettings, *, expires_in: float, name: str | None = None,
         file_expires_in: float | None = None) -> tuple[str, str, Path]:
    """A login the emulator knows, written exactly as qwen-code writes it."""
    issued = srv.issue(max(expires_in, 1))
    path = settings.creds_path(name)
    expiry = int((time.time() + (expires_in if file_expires_in is None else file_expires_in)) * 1000)
    write_creds(path, {"access_token": issued["access_token"], "refresh_token": issued["refresh_token"],
                       "token_type": "Bearer", "resource_url": srv.url, "expiry_date": expiry}, LOGIN_ORDER)
    return issued["access_token"], issued["refresh_token"], path


def _pointed(settings: AuthSettings) -> list[str]:
    return ["--qwen-dir", str(settings.qwen_dir), "--state-dir", str(settings.state_dir), "--oauth-base-url",
            settings.oauth_base_url, "--api-base", settings.default_api_base]


def cli(settings: AuthSettings, *args: str, env: dict | None = None) -> subprocess.Popen:
    """The installed `qwen-auth`, pointed at these folders and the emulator."""
    return subprocess.Popen([str(BIN / "qwen-auth"), *_pointed(settings), *args],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**CLEAN_ENV, **(env or {})})


def run_cli(settings: AuthSettings, *args: str, stdin: str | None = None, env: dict | None = None):
    if stdin is None:  # forked by the fork server when it can (helpers/commands.py), its stdin /dev/null
        r = commands.run([BIN / "qwen-auth", *_pointed(settings), *args], env={**CLEAN_ENV, **(env or {})}, cwd=ROOT)
        return r.returncode, r.stdout, r.stderr
    p = cli(settings, *args, env=env)
    out, err = p.communicate(stdin, timeout=60)
    return p.returncode, out, err


def read_until(stream, marker: str, limit: float = 20) -> str:
    seen = ""
    deadline = time.monotonic() + limit
    while marker not in seen:
        line = stream.readline()
        assert line and time.monotonic() < deadline, f"no {marker!r} in {seen!r}"
        seen += line
    return seen
