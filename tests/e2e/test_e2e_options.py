"""Fail closed on configuration, with real processes (ingress/startup.py, settings/option_specs.py): every gateway
option given a value it refuses — generated from the options' own declarations — stops mitmdump before it
serves, with one line naming the option, and nothing reaches the reverse target (no byte: mitmproxy's
default eager strategy may open a connection for a client accepted before any script has loaded, and the
gateway switches it to lazy only once loaded); an unknown `qwen_*` name
and a bad config.yaml value likewise; at run time (mitmweb's options editor) a bad value is refused, the
previous one kept, and the gateway goes on serving."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import pytest

from helpers import forkclient
from helpers.procs import ADDON, BIN, free_port, mitmweb_api
from qwen_gateway.settings.config import SPECS
from qwen_gateway.settings.option_specs import OptionSpec
from e2e.test_e2e_fail_closed import Target

pytestmark = pytest.mark.e2e


def invalid_values(spec: OptionSpec, a_file: Path) -> list[str]:
    """What the declaration says the option refuses: by its type, choices, least value and kind."""
    if spec.typespec is bool:
        return ["maybe"]
    if spec.typespec is int:
        return ["ten"] + ([str(spec.minimum - 1)] if spec.minimum is not None else [])
    if spec.choices:
        return ["bogus"]
    return [{
        "url": "not a url", "postgresql_url": "mysql://db.example/x", "file": str(a_file.parent / "missing.txt"),
        "folder": str(a_file), "model": "two words", "optional_model": "two words", "host": "api.openai.com/v1",
        "text": "a\x1bb",
        "model_map": "gpt-4o", "limits": "coder-model=many", "routes": "long-context", "listen": "port 80",
    }[spec.kind or "text"]]


# mitmproxy parses a value's type (int, bool, a choice) before the addon sees it; the gateway then checks
# what the value means (a least value, a URL, a readable file…): every option in one of the two runs
TYPED = [(name, invalid_values(spec, Path("/x"))[0]) for name, spec in SPECS.items()
         if spec.typespec in (int, bool) or spec.choices]
MEANT = [name for name, spec in SPECS.items() if (spec.kind and not spec.choices) or spec.minimum is not None]


def run_gateway(tmp: Path, target: Target, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, list]:
    """mitmdump with the gateway in reverse mode to `target`, a client knocking all the while it runs."""
    port = free_port()
    environ = {**os.environ, "HOME": str(tmp), "QWEN_DIR": str(tmp / ".qwen"),
               "QWEN_GATEWAY_HOME": str(tmp / "state"), **(env or {})}
    output = tmp / f"mitmdump-{port}.out"
    with open(output, "w") as out:  # forked where it can: the same process (tests/e2e/test_forkserver.py)
        proc = forkclient.popen([str(BIN / "mitmdump"), "--set", f"confdir={tmp / 'conf'}", "-s", str(ADDON),
                                 "--mode", f"reverse:http://127.0.0.1:{target.port}", "-p", str(port),
                                 "--listen-host", "127.0.0.1", *args], env=environ, cwd=str(tmp), log=out.fileno())
    answers: list = []

    def knock() -> None:  # every answer the client got while mitmdump lived
        with httpx.Client(trust_env=False, timeout=2) as c:
            for _ in range(400):  # bounded: ~20 s at most
                if proc.poll() is not None:
                    return
                try:
                    answers.append(c.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "m"}).status_code)
                except httpx.HTTPError:
                    threading.Event().wait(0.05)

    t = threading.Thread(target=knock, daemon=True)
    t.start()
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        t.join(5)
    return proc.returncode, output.read_text(), answers


@pytest.fixture
def target():
    t = Target()
    yield t
    t.close()


@pytest.mark.parametrize("kind", ["typed", "meant"])
def test_every_option_given_a_value_it_refuses_stops_the_gateway_before_it_serves(tmp_path, target, kind):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    bad = TYPED if kind == "typed" else [(name, invalid_values(SPECS[name], a_file)[-1]) for name in MEANT]
    status, out, answers = run_gateway(tmp_path, target, *(a for name, v in bad for a in ("--set", f"{name}={v}")))
    assert status != 0, out
    lines = [ln for ln in out.splitlines() if "the gateway cannot start" in ln]
    for name, _ in bad:  # one line for each, naming the option, what it got and what it accepts
        assert sum(f"option {name}: got " in ln and "accepts " in ln for ln in lines) == 1, (name, out)
    assert len(lines) == len(bad), out
    assert "listening at" not in out and "Traceback" not in out, out
    assert target.received == b"" and answers == [], (target.received, answers)


def test_bad_values_of_both_kinds_each_get_their_own_line(tmp_path, target):
    """A choice mitmproxy parses (`qwen_web_pin=bogus`) beside values only the gateway's bounds refuse
    (issue 51: the first stopped the gateway before the others were looked at: one line for three)."""
    bad = [("qwen_web_pin", "bogus"), ("qwen_max_body_mb", "0"), ("qwen_upstream_timeout", "-1")]
    status, out, _ = run_gateway(tmp_path, target, *(a for name, v in bad for a in ("--set", f"{name}={v}")))
    assert status == 2, out
    lines = [ln for ln in out.splitlines() if "the gateway cannot start" in ln]
    assert [next(name for name, _ in bad if f"option {name}: got " in ln) for ln in lines] == [n for n, _ in bad], out


def test_a_misspelt_mitmproxy_option_is_reported_with_the_name_meant(make_gateway, emu, oauth_home):
    """`--set flow_detial=1`: mitmproxy keeps a name no addon declared for an addon that may declare it later, and
    says nothing; once every addon has loaded, the gateway says it is unknown and which name was meant."""
    gw = make_gateway(args=("--set", "flow_detial=1"), env=oauth_home["env"])
    assert httpx.get(gw.url + "/health", timeout=10).status_code == 200  # it serves: the option was only ignored
    assert "qwen: mitmproxy ignores unknown option flow_detial (did you mean flow_detail?)" in gw.log(), gw.log()
    assert gw.log().count("flow_detial") == 1


def test_the_two_runs_cover_every_option():
    assert {n for n, _ in TYPED} | set(MEANT) == set(SPECS)


def test_an_unknown_option_name_stops_the_gateway_and_names_the_close_one(tmp_path, target):
    status, out, answers = run_gateway(tmp_path, target, "--set", "qwen_default_modle=qwen3-coder-plus")
    assert status != 0
    assert "unknown option qwen_default_modle (did you mean qwen_default_model?)" in out, out
    assert target.received == b"" and answers == []


def test_a_bad_value_in_config_yaml_stops_the_gateway(tmp_path, target):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("qwen_upstream_keepalive: ten\nqwen_allow_open: maybe\n")
    status, out, answers = run_gateway(tmp_path, target)
    assert status != 0
    assert "option qwen_upstream_keepalive: got 'ten'" in out and "option qwen_allow_open: got 'maybe'" in out, out
    assert target.received == b"" and answers == []


def test_listening_beyond_loopback_without_keys_stops_the_gateway(tmp_path, target):
    status, out, answers = run_gateway(tmp_path, target, "--listen-host", "0.0.0.0")
    assert status != 0 and "would listen beyond loopback without client keys" in out, out
    assert target.received == b"" and answers == []


def test_a_gateway_that_cannot_import_stops_mitmproxy(tmp_path, target):
    broken = tmp_path / "shadow" / "qwen_gateway"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("")
    (broken / "addon.py").write_text("raise ImportError('a broken install')\n")
    status, out, answers = run_gateway(tmp_path, target, env={"PYTHONPATH": str(tmp_path / "shadow")})
    assert status != 0 and "the gateway cannot load: ImportError: a broken install" in out, out
    assert target.received == b"" and answers == []


def test_every_declared_option_has_values_it_refuses():
    assert all(invalid_values(spec, Path("/x")) for spec in SPECS.values())


def test_a_bad_value_set_at_run_time_is_refused_and_the_gateway_goes_on(make_gateway, emu, oauth_home):
    web_port = free_port()
    gw = make_gateway("web", tool="mitmweb", env=oauth_home["env"], args=(
        "--set", "web_password=pw", "--set", f"web_port={web_port}", "--set", "web_host=127.0.0.1",
        "--set", "qwen_default_model=qwen3-coder-plus"))
    api = mitmweb_api(gw, web_port, "pw")
    xsrf = {"X-XSRFToken": "c0ffee", "Cookie": "_mitmproxy_xsrf=c0ffee"}
    for bad in ({"qwen_upstream_keepalive": "ten"}, {"qwen_default_model": "two words"},
                {"qwen_max_body_mb": 0}, {"qwen_remote_login": "bogus"}):
        r = api.put("/options", json=bad, headers=xsrf)
        assert r.status_code == 400, (bad, r.status_code, r.text)
    assert api.get("/options").json()["qwen_default_model"]["value"] == "qwen3-coder-plus"
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": [
        {"role": "user", "content": "still here"}]}, timeout=20, trust_env=False)
    assert r.status_code == 200 and r.json()["model"] == "gpt-4o"
    assert emu.chat_requests()[-1]["body"]["model"] == "qwen3-coder-plus"
    assert gw.alive()
