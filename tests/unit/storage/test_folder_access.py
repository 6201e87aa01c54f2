"""Whether the user the gateway runs as can read its state folder (storage/folder_access.py), asked by a process run
as nobody (helpers/runas.py) of folders and files root made. Through a real gateway: tests/e2e/test_e2e_start_refusals.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import runas
from qwen_gateway.storage import folder_access

ASK = "import json, sys; from pathlib import Path; from qwen_gateway.storage.folder_access import unreadable; " \
      "print(json.dumps(unreadable(Path(sys.argv[1]))))"


@pytest.fixture
def top():
    reason = runas.problem()
    if reason:
        pytest.skip(reason)
    folder = runas.open_folder("qwen-access-")
    yield folder
    runas.remove(folder)


def as_nobody(top: Path, state: Path) -> str | None:
    r = subprocess.run([*runas.prefix(top / "spare"), sys.executable, "-c", ASK, str(state)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_folder_its_user_can_read_or_that_is_not_there_yet_is_no_problem(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "alice.json").write_text("{}")
    (tmp_path / "link").symlink_to("/nowhere")  # a dangling link is not the folder's to read
    assert folder_access.unreadable(tmp_path) is None
    assert folder_access.unreadable(tmp_path / "not-yet") is None


def test_what_nobody_cannot_read_is_named_with_its_owner_and_the_command(top):
    state = top / "state"
    state.mkdir(mode=0o700)  # root's
    (state / "accounts.json").write_text("{}")
    line = as_nobody(top, state)
    assert line == (f"it runs as user nobody (uid {runas.ids()[0]}), which cannot open the folder {state} (owned by "
                    f"root, mode 0700). Give the state folder to that user: sudo chown -R nobody {state} — or run "
                    "the gateway as the user who owns it")
    runas.give(state)
    assert as_nobody(top, state) is None  # the command, run: readable
    (state / "web").mkdir(mode=0o700)  # a folder in it, root's
    assert f"cannot open the folder {state / 'web'} (owned by root, mode 0700)" in as_nobody(top, state)
    runas.give(state)
    keys = state / "keys.sqlite3"
    keys.write_bytes(b"")
    keys.chmod(0o600)  # restored as root
    assert f"cannot read {keys} (owned by root, mode 0600)" in as_nobody(top, state)
    keys.chmod(0o644)  # readable: what cannot be written is the folder's outage, not a refusal
    assert as_nobody(top, state) is None
