"""The fork server (tests/helpers/forkserver.py) starts the same gateway Popen would: compared field by field
while running (modules, environment, signal handlers, descriptors, argv...), stopped by SIGTERM's drain and by
SIGKILL, its exit code when it refuses to start; and what cannot go through it goes through Popen."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from helpers import forkclient, netns
from helpers.procs import ROOT, Gateway, free_port
from helpers.team import ANTHROPIC_IMPORTS, ANTHROPIC_PYTHON, NO_ANTHROPIC

pytestmark = pytest.mark.e2e

SNAPSHOT = ROOT / "tests" / "helpers" / "process_snapshot.py"
DIFFERS = ("pid", "id", "random")  # from process to process, whatever started it


def server() -> forkclient.ForkServer:
    forks = forkclient.server()
    if forks is None:
        pytest.skip("the fork server is turned off (QWEN_TEST_NO_FORKSERVER=1)")
    return forks


def snapshot(tmp_path: Path, env: dict, name: str, *, fork: bool, tool: str, web_port: int) -> dict:
    workdir = tmp_path / name
    args = ("-s", str(SNAPSHOT))
    if tool == "mitmweb":  # one port for the three (one after the other): their command lines are the same
        args += ("--set", f"web_port={web_port}", "--set", "web_host=127.0.0.1")
    gw = Gateway(workdir, env={**env, "QWEN_TEST_SNAPSHOT": str(workdir / "snapshot.json")}, args=args, tool=tool,
                 fork=fork).start()
    try:
        assert isinstance(gw.proc, forkclient.ForkedProcess) == fork, gw.started
        deadline = time.monotonic() + 15
        while not (workdir / "snapshot.json").exists():
            assert time.monotonic() < deadline, gw.log()
            time.sleep(0.05)
        text = (workdir / "snapshot.json").read_text().replace(str(workdir), "<workdir>")
        taken = json.loads(text)
        assert taken["pid"] == gw.proc.pid
        return taken
    finally:
        gw.stop()


@pytest.mark.parametrize("tool", ["mitmdump", "mitmweb"])
def test_a_forked_gateway_is_the_process_popen_starts(tmp_path, emu, oauth_home, tool):
    server()
    # a HOME and a TZ of its own: what importing read of them is read again in the child
    env = {**oauth_home["env"], "HOME": str(tmp_path / "home"), "TZ": "Asia/Shanghai"}
    port = free_port()
    started = snapshot(tmp_path, env, "popen", fork=False, tool=tool, web_port=port)
    forked = snapshot(tmp_path, env, "forked", fork=True, tool=tool, web_port=port)
    again = snapshot(tmp_path, env, "again", fork=True, tool=tool, web_port=port)
    assert started["tzname"] == ["CST", "CST"] and started["userbase"] == str(tmp_path / "home" / ".local")
    for field in started:
        if field not in DIFFERS:
            assert forked[field] == started[field], field
    for field in DIFFERS:  # ids and random numbers are not shared by two forks of one server
        assert len({started[field], forked[field], again[field]}) == 3, field


def test_a_gateway_forked_into_a_namespace_is_the_process_nsenter_starts(tmp_path):
    """netns.NsGateway: joined to the namespace holder's network and mounts (its loopback, its /etc/hosts) as
    `nsenter -t PID --net --mount -- timeout … mitmdump` puts it there."""
    server()
    if reason := netns.namespace_unavailable():
        pytest.skip(f"no network namespace: {reason}")
    world = netns.World(tmp_path / "world").start()
    taken = {}
    try:
        for name, fork in (("nsenter", False), ("forked", True)):
            out = tmp_path / f"{name}.json"
            gw = world.gateway(name, "regular", args=["-s", str(SNAPSHOT)], env={"QWEN_TEST_SNAPSHOT": str(out)},
                               fork=fork)
            try:
                assert isinstance(gw.proc, forkclient.ForkedProcess) == fork, gw.why_not_forked
                deadline = time.monotonic() + 15
                while not out.exists():
                    assert time.monotonic() < deadline, gw.log()
                    time.sleep(0.05)
                taken[name] = json.loads(out.read_text().replace(str(gw.workdir), "<workdir>")
                                         .replace(str(out), "<snapshot>"))
                assert taken[name]["pid"] == gw.proc.pid or not fork  # (nsenter's is timeout's child)
            finally:
                gw.stop()
    finally:
        world.stop()
    started, forked = taken["nsenter"], taken["forked"]
    assert started["netns"] != os.readlink("/proc/self/ns/net") and "api.openai.com" in started["hosts"]
    for field in started:
        if field not in DIFFERS:
            assert forked[field] == started[field], field


def _poll_until_ended(proc: forkclient.ForkedProcess, polled: list, errors: list) -> None:
    try:
        while polled[-1:] != [3]:
            polled.append(proc.poll())
            time.sleep(0.001)
    except Exception as e:  # what the test is about: a poll that fails because the other thread read the end
        errors.append(e)


def test_a_forked_process_is_polled_and_waited_for_from_two_threads_at_once(tmp_path):
    """As Popen allows (tests/e2e/test_e2e_options.py: a client thread polls while the test waits): each sees the
    exit code, neither fails on the other's read of it."""
    server()
    script = tmp_path / "ends.py"
    script.write_text("import time\ntime.sleep(0.5)\nraise SystemExit(3)\n")
    for _ in range(3):
        with open(os.devnull, "w") as null:
            proc = server().spawn([sys.executable, str(script)], dict(os.environ), str(tmp_path),
                                  (0, null.fileno(), null.fileno()))
        polled: list = []
        errors: list = []
        t = threading.Thread(target=_poll_until_ended, args=(proc, polled, errors))
        t.start()
        try:
            assert proc.wait(10) == 3
        finally:
            t.join(10)
        assert not errors and polled[-1] == 3, errors


PROGRAMS = {"this venv": (sys.executable, ("email.message",)),
            "anthropic SDK": (str(ANTHROPIC_PYTHON), ANTHROPIC_IMPORTS)}


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_forked_script_is_the_process_popen_starts(tmp_path, program):
    python, modules = PROGRAMS[program]
    if not Path(python).exists():
        pytest.skip(NO_ANTHROPIC)
    server()
    cmd = [python, str(SNAPSHOT), *modules]  # a program whose first lines import `modules`
    env = {**forkclient.without_proxies(os.environ), "HOME": str(tmp_path), "TZ": "Asia/Shanghai"}
    started = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                                        stdin=subprocess.DEVNULL).stdout)
    runs = [forkclient.run(cmd, modules=modules, env=env, timeout=120, cwd=str(tmp_path)) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    forked, again = (json.loads(r.stdout) for r in runs)
    assert forkclient.PROGRAMS[-1]["forked"], forkclient.PROGRAMS[-1]
    assert started["tzname"] == ["CST", "CST"] and started["modules"].keys() >= set(modules)
    for field in started:
        if field not in DIFFERS:
            assert forked[field] == started[field], field
    for field in DIFFERS:
        assert started[field] is None or len({started[field], forked[field], again[field]}) == 3, field


def test_a_forked_script_gets_its_exit_code_output_and_timeout(tmp_path):
    server()
    script = tmp_path / "script.py"
    script.write_text("import sys, time\nprint('out', sys.argv[1:])\nprint('err', file=sys.stderr)\n"
                      "time.sleep(float(sys.argv[1]))\nraise SystemExit(int(sys.argv[2]))\n")
    env = forkclient.without_proxies(os.environ)
    r = forkclient.run([sys.executable, str(script), "0", "3"], modules=("time",), env=env, timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out ['0', '3']\n", "err\n")
    assert forkclient.PROGRAMS[-1]["forked"]
    with pytest.raises(subprocess.TimeoutExpired):
        forkclient.run([sys.executable, str(script), "30", "0"], modules=("time",), env=env, timeout=1)
    script.write_text("import time\nraise ValueError('no')\n")
    r = forkclient.run([sys.executable, str(script)], modules=("time",), env=env, timeout=30)
    assert r.returncode == 1 and r.stderr.rstrip().endswith("ValueError: no"), r.stderr


def test_the_fork_server_imports_no_module_a_gateway_loads_only_at_first_need():
    hello = server().hello
    assert not {"httpx", "tiktoken", "qwen_gateway.observe.otlp", "opentelemetry"} & set(hello["modules"])
    # the generators seeded once at import, each seeded again in a child (forkserver._refresh)
    assert hello["generators"] == ["qwen_gateway.ids._rng", "random._inst"]


def test_sigterm_drains_a_forked_gateway_and_it_exits_0(make_gateway, emu, oauth_home):
    server()
    emu.switches(chunk_count=4, gap_ms=300)  # a stream of about a second, in progress when SIGTERM comes
    gw = make_gateway(env=oauth_home["env"])
    assert isinstance(gw.proc, forkclient.ForkedProcess)
    assert gw.proc.pid not in (os.getpid(), server().proc.pid)
    assert Path(f"/proc/{gw.proc.pid}/cwd").resolve() == gw.workdir.resolve()
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=60)
    stream = iter(client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a b"}],
                                                 stream=True))
    got = [next(stream)]
    assert gw.proc.poll() is None
    gw.proc.send_signal(signal.SIGTERM)
    got += list(stream)  # the drain lets it finish
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "Echo: a b"
    assert gw.proc.wait(20) == 0, gw.log()
    assert gw.proc.poll() == 0 and gw.proc.returncode == 0
    assert "qwen: SIGTERM: draining: 1 request in progress" in gw.log(), gw.log()
    assert "qwen: drain: nothing in progress; stopping" in gw.log(), gw.log()


def test_sigkill_ends_a_forked_gateway_with_minus_9(make_gateway, emu, oauth_home):
    server()
    gw = make_gateway(env=oauth_home["env"])
    with pytest.raises(subprocess.TimeoutExpired):
        gw.proc.wait(0.2)
    gw.proc.kill()
    assert gw.proc.wait(10) == -signal.SIGKILL
    gw.proc.kill()  # once it ended: nothing sent, no error (as Popen)
    with pytest.raises(httpx.ConnectError):
        httpx.get(gw.url + "/health/liveness", timeout=5, trust_env=False)


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "popen"])
def test_a_gateway_that_refuses_to_start_reports_its_exit_code(tmp_path, fork):
    if fork:
        server()
    env = {"QWEN_GATEWAY_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
    gw = Gateway(tmp_path / "gw", env=env, args=("--set", "qwen_state_url=postgresql://gw@db.example:5432/qwen?x"),
                 fork=fork)
    with pytest.raises(RuntimeError, match="mitmdump exited with 2 before it was ready"):
        gw.start()
    assert isinstance(gw.proc, forkclient.ForkedProcess) == fork
    assert gw.proc.returncode == 2 and "the gateway cannot start:" in gw.log()


def test_what_the_fork_server_cannot_start_as_popen_would_goes_through_popen(tmp_path, emu, oauth_home, monkeypatch):
    forks = server()
    env = oauth_home["env"]
    assert forks.reason_not_to_fork({**forks.env, **env}) is None
    assert "PYTHONPATH" in forks.reason_not_to_fork({**forks.env, "PYTHONPATH": str(tmp_path)})
    assert "LANG" in forks.reason_not_to_fork({**forks.env, "LANG": "de_DE"})
    prefixed = Gateway(tmp_path / "prefixed", env=env, prefix=("env",)).start()  # namespaces, prlimit...
    asked = Gateway(tmp_path / "asked", env=env, fork=False).start()
    try:
        assert isinstance(prefixed.proc, subprocess.Popen) and isinstance(asked.proc, subprocess.Popen)
        assert (prefixed.started["why_not"], asked.started["why_not"]) == ("a prefix", "fork=False")
    finally:
        prefixed.stop()
        asked.stop()
    assert forkclient.fork_tool(["/bin/true"], forks.env, str(tmp_path), (0, 1, 2)) == (
        None, "/bin/true is not mitmdump or mitmweb")
    monkeypatch.setenv("QWEN_TEST_NO_FORKSERVER", "1")
    assert forkclient.server() is None
    off = Gateway(tmp_path / "off", env=env).start()
    off.stop()
    assert isinstance(off.proc, subprocess.Popen) and off.started["why_not"] == "QWEN_TEST_NO_FORKSERVER=1"


def test_a_fork_server_whose_session_ends_stops_its_gateways(tmp_path, emu, oauth_home):
    own = forkclient.ForkServer(sys.executable, str(forkclient.BIN), forkclient.GATEWAY)  # not the session's
    try:
        workdir = tmp_path / "gw"
        workdir.mkdir()
        env = {**own.env, **oauth_home["env"], "QWEN_TEST_PORTFILE": str(workdir / "ports.json")}
        cmd = [str(forkclient.BIN / "mitmdump"), "--set", f"confdir={workdir / 'conf'}", "--mode",
               "reverse:https://portal.qwen.ai@127.0.0.1:0", "-s", str(ROOT / "tests" / "helpers" / "portfile.py"),
               "-s", str(ROOT / "addons" / "qwen.py")]
        with open(workdir / "log", "w") as log:
            proc = own.spawn([sys.executable, *cmd], env, str(workdir), (0, log.fileno(), log.fileno()))
        deadline = time.monotonic() + 30
        while not (workdir / "ports.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, (workdir / "log").read_text()
            time.sleep(0.05)
    finally:
        own.stop()  # closes the session's connection: the server stops the gateway (SIGTERM), then itself
    assert own.proc.returncode == 0
    assert proc.wait(5) == 0  # SIGTERM's drain: nothing ran


def test_a_process_that_never_becomes_ready_is_stopped_not_left_running(tmp_path):
    from helpers.procs import _wait_for_file
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(RuntimeError, match="did not start within 0.5s"):
            _wait_for_file(tmp_path / "never", proc, "sleeper", timeout=0.5)
        assert proc.poll() is not None, "left running"
    finally:
        proc.kill()
        proc.wait()
