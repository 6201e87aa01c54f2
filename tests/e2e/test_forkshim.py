"""The docs' shell runs the project's programs through shims (tests/helpers/forkshim.py): a program forked by a fork
server in the shell's own network namespace is the process the shell would have exec'd (compared field by field,
started in the background as a block starts a server), its signals pass both ways, its exit code and its death by
a signal come back to the shell, a killed shim takes its program with it, and an environment the server cannot
stand for runs the program itself."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from helpers import forkclient, forkshim, sandbox
from helpers.procs import ROOT

pytestmark = pytest.mark.e2e

SNAPSHOT = ROOT / "tests" / "helpers" / "process_snapshot.py"
DIFFERS = ("pid", "id", "random", "netns")  # netns: each shell has its own (compared with the shell's below)
SIGNALLED = """import os, signal, sys, time
signal.signal(signal.SIGINT, lambda *_: sys.exit(7))
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(60)
"""


@pytest.fixture
def world(tmp_path):
    """A folder of programs (as .venv/bin holds console scripts), shims for them, and a shell of each kind."""
    if sandbox.namespace_problem():
        pytest.skip(sandbox.namespace_problem())
    if forkclient.server() is None:
        pytest.skip("the fork server is turned off (QWEN_TEST_NO_FORKSERVER=1)")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, body in (("snapshot", SNAPSHOT.read_text()), ("signalled", SIGNALLED)):
        (bin_ / name).write_text(f"#!{sys.executable}\n{body}")
        (bin_ / name).chmod(0o755)
    shims = forkshim.Shims(bin_, sandbox.sandbox_env(tmp_path), {"snapshot": ("email.message",),
                                                                 "signalled": ("signal",)})
    shells = []

    def shell(shimmed: bool) -> sandbox.Shell:
        home = tmp_path / f"home{len(shells)}"
        home.mkdir()
        shells.append(sandbox.Shell(home, sandbox.sandbox_env(home), shims=shims if shimmed else None))
        return shells[-1]
    yield bin_, shims, shell
    for s in shells:
        s.close()


def run(shell: sandbox.Shell, text: str) -> str:
    out, failures = shell.run(text, timeout=60)
    assert not failures, (failures, out)
    return out


def test_a_shimmed_program_is_the_process_the_shell_would_have_exec_d(world, tmp_path):
    bin_, shims, shell = world
    taken = {}
    for kind, shimmed in (("exec", False), ("forked", True)):
        sh = shell(shimmed)
        run(sh, f"{bin_}/snapshot email.message > {tmp_path}/{kind}.json & wait $!; "
                f"readlink /proc/self/ns/net > {tmp_path}/{kind}.ns")
        taken[kind] = json.loads((tmp_path / f"{kind}.json").read_text())
        taken[kind]["environ"].pop("_", None)  # bash's: the path it ran
        assert taken[kind]["netns"] == (tmp_path / f"{kind}.ns").read_text().strip()
    assert shims.runs() == ["snapshot forked"]
    exec_d, forked = taken["exec"], taken["forked"]
    assert exec_d["signals"][str(2)] == "<Handlers.SIG_IGN: 1>"  # `&`: SIGINT ignored, for both
    assert forked["netns"] != os.readlink("/proc/self/ns/net")
    # each shell has its own HOME and terminal, each run its file
    own = re.compile(r"/home\d|/dev/pts/\d+|(exec|forked)\.json")
    exec_d, forked = (json.loads(own.sub("*", json.dumps(t))) for t in (exec_d, forked))
    for field in exec_d:
        if field not in DIFFERS:
            assert forked[field] == exec_d[field], field


def test_signals_pass_to_the_program_and_its_end_comes_back(world, tmp_path):
    bin_, shims, shell = world
    outs = {}
    for kind, shimmed in (("exec", False), ("forked", True)):
        sh = shell(shimmed)
        pidfile = tmp_path / f"{kind}.pid"
        lines = []
        for sig in ("INT", "TERM"):
            pidfile.unlink(missing_ok=True)
            run(sh, f"{bin_}/signalled {pidfile} & p=$!")
            deadline = time.monotonic() + 30
            while not pidfile.exists() or not pidfile.read_text():
                assert time.monotonic() < deadline, sh.text()
                time.sleep(0.05)
            lines.append(run(sh, f'kill -{sig} "$p"; rc=0; wait "$p" || rc=$?; echo "{sig} rc=$rc"').strip())
        outs[kind] = lines
    assert outs["exec"] == outs["forked"] == ["INT rc=7", "TERM rc=143"]
    assert shims.runs() == ["signalled forked"] * 2


def test_a_killed_shim_takes_its_program_with_it(world, tmp_path):
    bin_, _, shell = world
    sh = shell(True)
    pidfile = tmp_path / "pid"
    run(sh, f"{bin_}/signalled {pidfile} & p=$!")
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, sh.text()
        time.sleep(0.05)
    child = int(pidfile.read_text())
    run(sh, 'kill -KILL "$p"; wait "$p" || true')
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, f"the program {child} outlived its shim"
        time.sleep(0.05)


def test_an_environment_the_server_cannot_stand_for_runs_the_program_itself(world, tmp_path):
    bin_, shims, shell = world
    sh = shell(True)
    run(sh, f"LANG=C {bin_}/snapshot email.message > {tmp_path}/c.json; {bin_}/snapshot > {tmp_path}/d.json")
    exec_d, forked = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "cd")
    assert exec_d["environ"]["LANG"] == "C" and exec_d["argv"][1:] == ["email.message"]
    assert forked["argv"][1:] == []
    assert shims.runs() == ["snapshot exec: sets LANG, read when a process starts", "snapshot forked"]


def test_a_command_that_execs_mitmdump_has_its_fork_server_started(tmp_path):
    """`.venv/bin/qwen-gateway …` execs mitmdump: its shim finds a fork server only if naming qwen-gateway started one."""
    if forkclient.server() is None:
        pytest.skip("the fork server is turned off (QWEN_TEST_NO_FORKSERVER=1)")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "mitmdump").write_text(f"#!{sys.executable}\nimport email.message\n")
    shims = forkshim.Shims(bin_, sandbox.sandbox_env(tmp_path), {"mitmdump": ("email.message",)})
    shims.ensure("curl -s http://127.0.0.1:8080/v1/models")
    assert "socket" not in shims.entries["mitmdump"]
    shims.ensure(".venv/bin/qwen-gateway --set qwen_default_model=qwen3-coder-plus > ~/gateway.log 2>&1 &")
    assert "socket" in shims.entries["mitmdump"]
    again = forkshim.Shims(bin_, sandbox.sandbox_env(tmp_path), {"mitmdump": ("email.message",)})
    again.ensure("bash scripts/gateway.sh")  # README's first command: it runs qwen-gateway
    assert "socket" in again.entries["mitmdump"]
