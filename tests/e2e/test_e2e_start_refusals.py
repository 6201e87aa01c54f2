"""Start-up refusals that say what to fix (issue 60, item 6): a real mitmdump run as nobody (`setpriv`,
helpers/runas.py) on a state folder it cannot read — a volume made by another user (root's, 0700), or a
`keys.sqlite3` restored 0600 as root into the gateway's own folder. The gateway never starts keyless and never
prints a traceback: it stops before it listens, with one line naming the path, the user it runs as and the
command that fixes it; that command, run as printed, lets the next start serve — with the keys' door."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from helpers import runas
from helpers.home import CODING_PLAN, Home
from helpers.procs import Gateway
from helpers.team import add_key, openai_client, qwen_keys  # noqa: F401

pytestmark = pytest.mark.e2e

FIX = re.compile(r"sudo (chown -R \S+ \S+)")


@pytest.fixture
def as_nobody(emu):
    """A factory of gateways run as nobody, on a state folder the test lays out (`.state`) in a folder under /tmp
    nobody may enter; the state's files are the test's (root's) until it gives them away."""
    reason = runas.problem()
    if reason:
        pytest.skip(reason)
    top = runas.open_folder("qwen-runas-")
    home = top / "home"
    home.mkdir()
    state = top / "state"
    state.mkdir(mode=0o700)
    gateway_home = Home(home, emu, state=state)
    gateway_home.key("k", path=CODING_PLAN, key_env="KEY_K", default_model="qwen3-coder-plus")
    env = gateway_home.env()
    started: list[Gateway] = []

    def start(name: str) -> Gateway:
        work = home / name
        work.mkdir()
        runas.give(home)
        gw = Gateway(work, env=env, prefix=runas.prefix(top / f"spare-{name}"))
        started.append(gw)
        try:
            gw.start()
        except RuntimeError:  # it stopped before it listened: the test reads why
            pass
        return gw

    start.state, start.env = state, env  # type: ignore[attr-defined]
    yield start
    for gw in started:
        gw.stop()
    runas.remove(top)


def _refused(gw: Gateway, path: Path) -> str:
    """The one line a refused start printed (exit status 2, no traceback), naming `path` and nobody."""
    assert gw.proc is not None
    status = gw.proc.wait(30)
    log = gw.log()
    assert status == 2, f"exit status {status}, not a refusal:\n{log}"
    assert "Traceback" not in log and "PermissionError" not in log and "unable to open" not in log, log
    [line] = [ln for ln in log.splitlines() if "qwen: the gateway cannot start:" in ln]
    assert f" {path} " in line + " " and "nobody" in line and FIX.search(line), line
    print("\n" + line)
    return line


def _fix(line: str) -> None:
    """The command the line names, run as printed (the test is root: without sudo)."""
    subprocess.run(FIX.search(line).group(1).split(), check=True, timeout=30)


def test_a_state_folder_made_by_another_user_stops_the_start_in_one_line_that_says_what_to_run(as_nobody):
    state = as_nobody.state
    line = _refused(as_nobody("first"), state)
    assert f"sudo chown -R nobody {state}" in line, line
    _fix(line)
    gw = as_nobody("fixed")
    assert gw.alive(), gw.log()
    chat = openai_client(gw.url, "any").chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "ping"}])
    assert chat.choices[0].message.content == "Echo: ping"


def test_a_keys_file_restored_for_another_user_is_never_read_keyless(as_nobody):
    state = as_nobody.state
    alice = add_key(as_nobody.env, "alice")  # as root: keys.sqlite3 root's
    (state / "keys.sqlite3").chmod(0o600)
    runas.give(state)
    subprocess.run(["chown", "root:root", str(state / "keys.sqlite3")], check=True, timeout=30)  # restored as root
    line = _refused(as_nobody("first"), state / "keys.sqlite3")
    _fix(line)
    gw = as_nobody("fixed")
    assert gw.alive(), gw.log()
    assert httpx.post(gw.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": []}, trust_env=False,
                      timeout=10).status_code == 401  # the entrance as the keys say
    chat = openai_client(gw.url, alice).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "ping"}])
    assert chat.choices[0].message.content == "Echo: ping"
