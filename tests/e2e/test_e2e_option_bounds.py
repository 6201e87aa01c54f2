"""Absurd option values (issue 50, item 6), with real processes: a number above its option's maximum, a
5,000-digit token limit, a 1 MiB User-Agent stop mitmdump at start with one line each (the option, the
value shortened, the allowed range) and no traceback; set at run time through mitmweb's options API they
are refused, the previous values kept, and requests still work.

Before the bounds: `qwen_head_timeout=10**400` was a traceback at start, the 5,000-digit limit a ValueError
traceback, and at run time `qwen_upstream_timeout=10**400` was accepted and every request then failed with
an OverflowError (500)."""

from __future__ import annotations

import httpx
import pytest

from e2e.test_e2e_fail_closed import Target
from e2e.test_e2e_options import run_gateway
from helpers.procs import free_port, mitmweb_api
from qwen_gateway.settings.config import SPECS

pytestmark = pytest.mark.e2e

HUGE = 10**400  # an int Python holds, but no float, timer or clock does
LIMIT_5000_DIGITS = "coder-model=" + "9" * 5000  # more digits than int() converts (4,300)
USER_AGENT_1MIB = "x" * (1 << 20)  # too long for a command line: given in config.yaml


@pytest.fixture
def target():
    t = Target()
    yield t
    t.close()


def test_absurd_values_stop_the_gateway_at_start_with_one_line_each(tmp_path, target):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(f"qwen_user_agent: {USER_AGENT_1MIB}\n")
    bad = {"qwen_upstream_timeout": str(HUGE), "qwen_stream_idle_timeout": str(HUGE),
           "qwen_head_timeout": str(HUGE), "qwen_context_limits": LIMIT_5000_DIGITS}
    status, out, answers = run_gateway(tmp_path, target, *(a for n, v in bad.items() for a in ("--set", f"{n}={v}")))
    lines = [ln for ln in out.splitlines() if "the gateway cannot start" in ln]
    assert status == 2 and "Traceback" not in out, out[-3000:]
    for name in [*bad, "qwen_user_agent"]:  # one line each: the option, the value shortened, the range
        line = next((ln for ln in lines if f"option {name}: got " in ln), "")
        assert line and len(line) < 400, (name, out[-3000:])
    assert "accepts an integer from 0 to 86400" in next(ln for ln in lines if "qwen_upstream_timeout" in ln)
    assert "tokens from 1 to 1000000000" in next(ln for ln in lines if "qwen_context_limits" in ln)
    assert "at most 512 characters" in next(ln for ln in lines if "qwen_user_agent" in ln)
    assert len(lines) == 5 and "listening at" not in out, out[-3000:]
    assert target.received == b"" and answers == []


def test_1e400_is_no_integer_and_stops_the_gateway_with_the_range(tmp_path, target):
    # mitmproxy refuses it while it reads --set (ingress/startup.py), before the gateway parses its options
    status, out, answers = run_gateway(tmp_path, target, "--set", "qwen_upstream_timeout=1e400")
    assert status == 2 and "Traceback" not in out, out[-3000:]
    assert "qwen: the gateway cannot start: option qwen_upstream_timeout: got '1e400'; accepts an integer from 0 " \
           "to 86400" in out and answers == [], out[-3000:]


def test_every_int_option_just_above_its_maximum_stops_the_gateway(tmp_path, target):
    bounded = {name: spec.maximum for name, spec in SPECS.items() if spec.typespec is int}
    status, out, _ = run_gateway(tmp_path, target, *(a for n, m in bounded.items() for a in ("--set", f"{n}={m + 1}")))
    lines = [ln for ln in out.splitlines() if "the gateway cannot start" in ln]
    assert status == 2 and "Traceback" not in out, out[-3000:]
    for name, maximum in bounded.items():
        assert sum(f"option {name}: got '{maximum + 1}'" in ln and f" to {maximum}" in ln for ln in lines) == 1, \
            (name, out[-3000:])


def test_absurd_values_set_at_run_time_are_refused_and_requests_still_work(make_gateway, emu, oauth_home):
    web_port = free_port()
    gw = make_gateway("web", tool="mitmweb", env=oauth_home["env"], args=(
        "--set", "web_password=pw", "--set", f"web_port={web_port}", "--set", "web_host=127.0.0.1",
        "--set", "qwen_upstream_timeout=30"))
    api = mitmweb_api(gw, web_port, "pw")
    xsrf = {"X-XSRFToken": "c0ffee", "Cookie": "_mitmproxy_xsrf=c0ffee"}
    tries = {"qwen_upstream_timeout": HUGE, "qwen_stream_idle_timeout": HUGE, "qwen_head_timeout": HUGE,
             "qwen_context_limits": [LIMIT_5000_DIGITS], "qwen_user_agent": USER_AGENT_1MIB}
    answers = {name: api.put("/options", json={name: value}, headers=xsrf) for name, value in tries.items()}
    options = api.get("/options").json()
    chat = httpx.post(gw.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": [
        {"role": "user", "content": "still here"}]}, timeout=20, trust_env=False)
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json={"model": "gpt-4o", "stream": True, "messages": [
            {"role": "user", "content": "a stream"}]}, timeout=20, trust_env=False) as r:
        streamed = (r.status_code, r.read().decode())
    seen = {name: (a.status_code, a.text[:300]) for name, a in answers.items()}
    assert all(status == 400 and f"option {name}: got " in text for name, (status, text) in seen.items()), seen
    assert "accepts an integer from 0 to 86400" in seen["qwen_upstream_timeout"][1], seen
    kept = {name: options[name]["value"] for name in tries}
    assert kept == {"qwen_upstream_timeout": 30, "qwen_stream_idle_timeout": 300, "qwen_head_timeout": 60,
                    "qwen_context_limits": [], "qwen_user_agent": ""}, kept
    assert chat.status_code == 200 and chat.json()["model"] == "gpt-4o", chat.text[:500]
    assert streamed[0] == 200 and streamed[1].rstrip().endswith("data: [DONE]"), streamed[1][-500:]
    assert emu.chat_requests()[-1]["headers"]["user-agent"].startswith("QwenCode/")
    assert "Traceback" not in gw.log() and gw.alive(), gw.log()[-3000:]
