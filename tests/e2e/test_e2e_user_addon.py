"""A user's own addon beside the gateway (seams/addon_chain.py): a real mitmdump with the gateway and a user
script that hooks flows. The script's hooks run under mitmproxy's own event dispatch and message checks (it
records who called each hook, and whose check makes messages), the gateway serves whole and streamed answers
all the same, and when the script is reloaded without its flow hooks the gateway's seams come back — each
change one log line."""

from __future__ import annotations

import json
import os
import time

import openai
import pytest

from helpers.procs import until

pytestmark = pytest.mark.e2e

COUNTS = '''
import json, os, sys
from mitmproxy import http

def _note(hook):
    caller = sys._getframe(2).f_code.co_name  # what called the hook: mitmproxy's invoke_addon, or the gateway's
    with open(os.environ["QWEN_TEST_COUNTS"], "a") as f:
        f.write(json.dumps({"hook": hook, "caller": caller, "checks": http.MessageData.__post_init__.__module__}) + "\\n")

def requestheaders(flow):
    _note("requestheaders")

def response(flow):
    _note("response")
'''

STAND_ASIDE = "qwen: the gateway's event dispatch and message checks: mitmproxy's own serve instead"
BACK = "qwen: the gateway's event dispatch and message checks: back"


def _chat(gw) -> None:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "ping"}]
    assert client.chat.completions.create(model="gpt-4o", messages=messages).choices[0].message.content == "Echo: ping"
    chunks = client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: ping"


def test_a_users_addon_runs_under_mitmproxys_own_dispatch_and_the_gateway_serves(make_gateway, emu, oauth_home,
                                                                                 tmp_path):
    script, counts = tmp_path / "counts.py", tmp_path / "counts.jsonl"
    script.write_text(COUNTS)
    gw = make_gateway("user", env={**oauth_home["env"], "QWEN_TEST_COUNTS": str(counts)}, args=("-s", str(script)))
    _chat(gw)
    # a streamed answer's response hook runs once its last chunk went out: the client may read it first
    until(lambda: len(counts.read_text().splitlines()) >= 4, "the user's addon's four hook calls")
    notes = [json.loads(line) for line in counts.read_text().splitlines()]
    assert sorted(n["hook"] for n in notes) == ["requestheaders"] * 2 + ["response"] * 2
    assert {n["caller"] for n in notes} == {"invoke_addon"}  # mitmproxy's dispatch called them
    assert {n["checks"] for n in notes} == {"mitmproxy.http"}  # and mitmproxy's check made the messages
    aside = [line for line in gw.log().splitlines() if STAND_ASIDE in line]
    assert len(aside) == 1 and f"{script} (requestheaders, response)" in aside[0], gw.log()

    script.write_text("def running():\n    pass\n")  # reloaded (mitmproxy polls the file) without its flow hooks
    later = time.time() + 2
    os.utime(script, (later, later))
    until(lambda: BACK in gw.log(), "the gateway's seams back after the reload", limit=20)
    _chat(gw)
    log = gw.log()
    assert log.count(STAND_ASIDE) == 1 and log.count(BACK) == 1 and "Traceback" not in log, log
