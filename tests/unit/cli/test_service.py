"""`qwen-gateway` (addons/gateway/cli/service.py): mitmdump with scripts/gateway.sh's defaults, arguments passed
through, and a systemd user unit that reads the keys from a 0600 environment file.

What runs for real here: the console script (it execs mitmdump: a real gateway answers through the
emulator), install/uninstall in a temporary HOME, `systemd-analyze --user verify` on the unit written
(skipped, saying so, where systemd-analyze is missing), and the unit's own ExecStart command with the
environment the unit gives it (Environment= lines + the environment file, read the way systemd reads such
a simple file). No systemd user manager runs in the test machine, so `systemctl --user` itself is not
exercised."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from helpers import commands
from helpers.procs import ADDON, BIN, PORTFILE_ADDON, ROOT, _stop, _wait_for_file
from qwen_gateway.cli import service

DEFAULTS = ["--mode", "reverse:https://portal.qwen.ai", "-p", "8080", "--listen-host", "127.0.0.1"]
SECRET = "sk-service-test-key-0123456789"


def test_defaults_are_those_of_gateway_sh():
    assert service.addon_script() == ADDON
    assert service.mitmproxy_args([]) == ["-s", str(ADDON), *DEFAULTS]
    assert "exec \"$root/.venv/bin/qwen-gateway\" \"$@\"" in (ROOT / "scripts" / "gateway.sh").read_text()


@pytest.mark.parametrize(("args", "dropped"), [
    (["-p", "9000"], ["-p", "8080"]),
    (["--listen-port=9000"], ["-p", "8080"]),
    (["--set", "listen_port=9000"], ["-p", "8080"]),
    (["--mode", "regular"], ["--mode", "reverse:https://portal.qwen.ai"]),
    (["-mregular"], ["--mode", "reverse:https://portal.qwen.ai"]),
    (["--mode=transparent"], ["--mode", "reverse:https://portal.qwen.ai"]),
    (["--listen-host", "0.0.0.0"], ["--listen-host", "127.0.0.1"]),
    (["--set", "listen_host=::1"], ["--listen-host", "127.0.0.1"]),
])
def test_an_option_the_user_sets_replaces_its_default(args, dropped):
    kept = list(DEFAULTS)
    at = kept.index(dropped[0])
    assert kept[at:at + 2] == dropped
    del kept[at:at + 2]  # the other two defaults stay
    assert service.mitmproxy_args(args) == ["-s", str(ADDON), *kept, *args]


def test_other_arguments_pass_through_after_the_defaults():
    extra = ["--set", "qwen_default_model=qwen3-coder-plus", "-q", "--set", "flow_detail=2"]
    assert service.mitmproxy_args(extra) == ["-s", str(ADDON), *DEFAULTS, *extra]


# ---- real processes ----------------------------------------------------------------------------------


def _env(home: Path, **extra: str) -> dict[str, str]:
    # no QWEN_* settings, and no way to reach a real user manager: uninstall-service runs `systemctl --user`
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("QWEN_", "XDG_", "DBUS_SESSION_BUS_ADDRESS"))}
    env.update(HOME=str(home), QWEN_GATEWAY_HOME=str(home / "state"), QWEN_DIR=str(home / ".qwen"), **extra)
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(k, None)
    return env


def _add_key_account(home: Path, base_url: str) -> None:
    r = commands.run([BIN / "qwen-auth", "add-key", "demo", "--base-url", base_url, "--key-env", "DEMO_KEY"],
                       env=_env(home), timeout=60)
    assert r.returncode == 0, r.stderr


def _serve(cmd: list[str], env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen, int, Path]:
    """Start `cmd` (a gateway with the test's port-file addon) and return it with its port and log."""
    portfile, log = workdir / "ports.json", workdir / "gateway.log"
    env = {**env, "QWEN_TEST_PORTFILE": str(portfile)}
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=str(workdir))
    try:
        ports = json.loads(_wait_for_file(portfile, proc, "qwen-gateway"))
    except BaseException:
        _stop(proc)
        raise
    return proc, next(iter(ports.values())), log


def _chat(port: int) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", trust_env=False, timeout=20,
                      json={"model": "gpt-4o", "messages": [{"role": "user", "content": "service"}]})


def _wait_line(log: Path, text: str) -> str:
    deadline = time.monotonic() + 10
    while text not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return log.read_text()


TEST_ARGS = ["-s", str(PORTFILE_ADDON), "--mode", "reverse:https://portal.qwen.ai@127.0.0.1:0"]


@pytest.mark.e2e
def test_qwen_gateway_runs_mitmdump_with_the_addon(tmp_path, emu):
    _add_key_account(tmp_path, emu.url + "/v1")
    env = _env(tmp_path, DEMO_KEY=emu.seed_token(SECRET, kind="key"))
    proc, port, log = _serve([str(BIN / "qwen-gateway"), *TEST_ARGS], env, tmp_path)
    try:
        r = _chat(port)
        assert r.status_code == 200, r.text
        text = _wait_line(log, "acct=demo 200")
    finally:
        _stop(proc)
    first = text.splitlines()[0]
    assert first == "qwen-gateway: " + shlex.join(["mitmdump", "-s", str(ADDON), "-p", "8080", "--listen-host",
                                                   "127.0.0.1", *TEST_ARGS])
    assert SECRET not in text


def _verify(unit: Path, home: Path) -> subprocess.CompletedProcess:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package `systemd`): the unit was not verified")
    runtime = home / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    # --user needs a runtime folder; verify loads the unit as the user manager would, offline
    return subprocess.run([analyze, "--user", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          env={**_env(home), "XDG_RUNTIME_DIR": str(runtime)})


def _install(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "qwen-gateway"), "install-service", *args], capture_output=True, text=True,
                          timeout=60, env=_env(home, **env))


@pytest.mark.e2e  # starts a process
def test_install_service_dry_run_changes_nothing(tmp_path):
    r = _install(tmp_path, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"# would write {tmp_path}/.config/systemd/user/qwen-gateway.service:" in r.stdout
    assert f"EnvironmentFile={tmp_path}/.config/qwen-gateway/env" in r.stdout
    assert f"# would create {tmp_path}/.config/qwen-gateway/env (mode 0600):" in r.stdout
    assert not (tmp_path / ".config").exists()


@pytest.mark.e2e  # starts a process
def test_install_service_writes_a_unit_that_verifies_and_a_private_env_file(tmp_path, emu):
    _add_key_account(tmp_path, emu.url + "/v1")
    r = _install(tmp_path, "--", "--set", "qwen_default_model=qwen3-coder-plus", DEMO_KEY=SECRET)
    assert r.returncode == 0, r.stderr
    unit = tmp_path / ".config" / "systemd" / "user" / "qwen-gateway.service"
    env_file = tmp_path / ".config" / "qwen-gateway" / "env"
    text = unit.read_text()
    exec_start = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    assert exec_start == f"ExecStart={BIN / 'qwen-gateway'} --set qwen_default_model=qwen3-coder-plus"
    assert f'Environment="QWEN_GATEWAY_HOME={tmp_path / "state"}"' in text
    assert f"EnvironmentFile={env_file}" in text
    assert SECRET not in text and SECRET not in r.stdout  # the key never goes into the unit
    # every client connection takes a descriptor: not systemd's default soft limit of 1,024 (verified below)
    assert "LimitNOFILE=65536" in text.splitlines()
    assert "TimeoutStopSec=60" in text.splitlines()  # SIGKILL only after the drain (30 s) and the last writes
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert "#DEMO_KEY=" in env_file.read_text().splitlines()  # the account's variable, named for the user
    assert SECRET not in env_file.read_text()
    v = _verify(unit, tmp_path)
    assert v.returncode == 0 and v.stderr.strip() == "" and v.stdout.strip() == "", v.stdout + v.stderr

    # installed again: the unit is written anew, the environment file (now with the key) is kept
    env_file.write_text(f"DEMO_KEY={SECRET}\n")
    r = _install(tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"Kept {env_file} as it is." in r.stdout
    assert env_file.read_text() == f"DEMO_KEY={SECRET}\n"
    assert next(ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")) == \
        f"ExecStart={BIN / 'qwen-gateway'}"


@pytest.mark.e2e  # starts a process
def test_verify_catches_a_broken_unit(tmp_path):
    """The verification above can fail: the same check on a unit with a bad command and a bad value."""
    unit = tmp_path / "qwen-gateway.service"
    unit.write_text("[Service]\nExecStart=/nonexistent/qwen-gateway\nRestart=sometimes\n")
    v = _verify(unit, tmp_path)
    assert v.returncode != 0 or v.stderr.strip(), v
    assert "not executable" in v.stderr and "restart specifier" in v.stderr


@pytest.mark.e2e
def test_the_units_command_serves_with_the_key_from_the_env_file(tmp_path, emu):
    """Start what the unit starts, with only the environment the unit gives it: the key comes from the
    environment file, not from the test's environment."""
    _add_key_account(tmp_path, emu.url + "/v1")
    env_file = tmp_path / ".config" / "qwen-gateway" / "env"
    r = _install(tmp_path, "--", *TEST_ARGS)
    assert r.returncode == 0, r.stderr
    with env_file.open("a") as f:
        f.write(f"DEMO_KEY={emu.seed_token(SECRET, kind='key')}\n")
    text = (tmp_path / ".config" / "systemd" / "user" / "qwen-gateway.service").read_text()
    cmd = shlex.split(next(ln for ln in text.splitlines() if ln.startswith("ExecStart=")).removeprefix("ExecStart="))
    unit_env = dict(shlex.split(ln.removeprefix("Environment="))[0].split("=", 1)
                    for ln in text.splitlines() if ln.startswith("Environment="))
    file_env = dict(ln.split("=", 1) for ln in env_file.read_text().splitlines()
                    if ln.strip() and not ln.startswith("#"))
    # what systemd's user manager passes (PATH, HOME), the unit's Environment= lines, the environment file
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), **unit_env, **file_env}
    assert unit_env["PYTHONUNBUFFERED"] == "1"  # the journal gets each line when it is written
    assert "DEMO_KEY" not in unit_env and set(file_env) == {"DEMO_KEY"}
    proc, port, log = _serve(cmd, env, tmp_path)
    try:
        r = _chat(port)
        assert r.status_code == 200, r.text
        _wait_line(log, "acct=demo 200")
    finally:
        _stop(proc)
    assert SECRET not in log.read_text()


@pytest.mark.e2e  # starts a process
def test_uninstall_service_removes_the_unit_and_keeps_the_env_file(tmp_path):
    assert _install(tmp_path).returncode == 0
    unit = tmp_path / ".config" / "systemd" / "user" / "qwen-gateway.service"
    env_file = tmp_path / ".config" / "qwen-gateway" / "env"
    run = lambda *a: subprocess.run([str(BIN / "qwen-gateway"), "uninstall-service", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=60, env=_env(tmp_path))
    r = run("--dry-run")
    assert r.returncode == 0 and f"# would remove {unit}" in r.stdout and unit.exists()
    r = run()
    assert r.returncode == 0, r.stderr
    assert f"Removed {unit}." in r.stdout and not unit.exists()
    assert env_file.exists() and f"Left {env_file} (your keys) in place" in r.stdout
    r = run()
    assert r.returncode == 0 and f"{unit} does not exist." in r.stdout


@pytest.mark.e2e  # starts a process
def test_help_names_every_command():
    r = subprocess.run([str(BIN / "qwen-gateway"), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    for word in ("install-service", "uninstall-service", "mitmweb", "--dry-run", "systemctl --user"):
        assert word in r.stdout


@pytest.mark.e2e  # starts a process
def test_version_names_the_gateway_beside_mitmproxy():
    """`qwen-gateway --version` said only mitmproxy's version (issue #51): the gateway's own comes first, then
    mitmproxy's lines, then whether each seam fits the mitmproxy installed (one that does not is left out)."""
    r = subprocess.run([str(BIN / "qwen-gateway"), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    from importlib.metadata import version

    lines = r.stdout.splitlines()
    assert lines[0] == f"qwen-gateway {version('qwen-gateway')}"
    assert any(ln.startswith("Mitmproxy:") for ln in lines)
    seams = [ln for ln in lines if ln.startswith("Seams:")]
    assert seams and ("fit" in seams[0] or "left out" in seams[0])


@pytest.mark.e2e  # runs the real command, which would start mitmdump
def test_a_port_in_use_is_said_with_the_option_that_changes_it(tmp_path):
    """issue 82: mitmproxy's hint for a port in use is to change `--mode`; the gateway's own is -p."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([str(BIN / "qwen-gateway"), "-p", str(port)], capture_output=True, text=True,
                           timeout=60, env=_env(tmp_path))
    assert r.returncode == 1, r.stderr
    assert f"qwen-gateway: 127.0.0.1:{port} is in use" in r.stderr and "-p PORT" in r.stderr, r.stderr
    assert "--mode" not in r.stderr and "Traceback" not in r.stderr
