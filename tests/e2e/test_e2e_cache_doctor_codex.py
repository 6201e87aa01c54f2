"""The cache doctor (issue 53, item 1) on a Codex session whose tools are reordered: two real `codex exec` turns of
one session (the second `exec resume --last`) on a custom provider (HTTPS `POST /v1/responses`) through a real
mitmweb writing a flow file, against the emulator (whose prompt cache follows Model Studio's). Codex cannot be
made to reorder its tools, so its second request, as mitmweb recorded it, is sent again with its tools in
reverse order and nothing else changed (its `prompt_cache_key` keeps it in the session). mitmweb's JSON API shows
that turn's verdict in the flow's comment and its prefix diff in the "Qwen cache doctor" view; `qwen-usage
conversations` names the turn and the cause."""

from __future__ import annotations

import json
import os
import re
from urllib.parse import quote

import httpx
import pytest

from helpers import commands
from helpers.procs import ROOT, free_port, mitmweb_api, until
from helpers.team import QWEN_USAGE
from e2e.test_e2e_codex import Codex, assert_clean, custom_config

pytestmark = pytest.mark.e2e

PASSWORD = "doctor"
VIEW = quote("Qwen cache doctor")
DOCS = ROOT / "docs" / "observability.md"


def doc_block(anchor: str) -> str:
    """The fenced block of docs/observability.md that holds `anchor`."""
    (found,) = [b for b in DOCS.read_text().split("```")[1::2] if anchor in b]
    return found.strip("\n")


def shape(text: str) -> list[str]:
    """Lines as the docs print them, with what differs between runs as one mark each: hashes and digests, then
    numbers (token counts follow the run's folder names, times the clock); runs of spaces and dashes as one."""
    text = re.sub(r"\b[0-9a-f]{8,32}\b", "#", text)
    text = re.sub(r"[0-9][0-9,:. -]*[0-9]|[0-9]", "9", text)
    return [re.sub(r"-+", "-", re.sub(r" +", " ", line)).strip() for line in text.strip().splitlines()]


def responses_flows(api: httpx.Client) -> list[dict]:
    return [f for f in api.get("/flows").json() if f["type"] == "http" and f.get("response")
            and f["request"]["path"].startswith("/v1/responses") and f["request"]["method"] == "POST"]


def test_codex_tools_reordered_is_the_miss_and_its_cause(make_gateway, emu, key_home, tmp_path):
    web_port = free_port()
    gw = make_gateway("doctor", tool="mitmweb", env=key_home, args=(
        "-w", str(tmp_path / "flows.mitm"), "--set", f"web_password={PASSWORD}", "--set", f"web_port={web_port}",
        "--set", "web_host=127.0.0.1"))
    api = mitmweb_api(gw, web_port, PASSWORD)
    codex = Codex(tmp_path, "doctor", custom_config(gw), QWENPROXY_API_KEY="client-key")
    log, _ = codex.run("say pong")
    assert_clean(log)
    log, _ = codex.run("say pong again", resume=True)
    assert_clean(log)
    real = until(lambda: len(responses_flows(api)) >= 2 and responses_flows(api), "Codex's two turns shown")
    second = real[-1]
    sent = json.loads(api.get(f"/flows/{second['id']}/request/content.data").content)
    assert len(sent["tools"]) >= 3 and sent.get("prompt_cache_key")
    reordered = {**sent, "tools": sent["tools"][::-1]}  # the one change
    r = httpx.post(gw.url + "/v1/responses", json=reordered, timeout=60, trust_env=False,
                   headers={"authorization": "Bearer client-key", "accept": "text/event-stream"})
    assert r.status_code == 200 and "response.completed" in r.text, r.text[-2000:]

    flows = until(lambda: len(responses_flows(api)) >= 3 and responses_flows(api), "the replay shown")
    comments = [f["comment"] for f in flows]
    assert "cache: turn 1 read" in comments[0] and "cache: turn 2 read" in comments[1], comments
    assert "lost" not in comments[1]  # the second turn read the first's prefix
    verdict = comments[2].split(" ┃ ")[1]
    assert verdict.startswith("cache: turn 3 read") and "the tools were reordered (tools[0] " in verdict, comments[2]
    view = api.get(f"/flows/{flows[2]['id']}/response/content/{VIEW}.json").json()
    assert view["view_name"] == "Qwen cache doctor", view
    text = view["text"]
    assert text.splitlines()[0] == verdict and "prefix vs turn 2: first change at block" in text
    assert any(line.startswith("→") and " tool " in line for line in text.splitlines()), text
    print("\n" + text)
    assert shape(text) == shape(doc_block("cache: turn 3 read 0 of"))

    (row,) = json.loads(until(lambda: _conversations(key_home), "the ledger's rows"))
    assert row["turns"] == 3 and row["missed_turns"] == 1 and row["causes"] == "tool_order (turn 3)", row
    table = commands.run([QWEN_USAGE, "conversations"], timeout=60,
                           env={**os.environ, **key_home}).stdout
    print(table)
    assert shape(table) == shape(doc_block("$ .venv/bin/qwen-usage conversations").split("\n", 1)[1])


def _conversations(env: dict) -> str | None:
    r = commands.run([QWEN_USAGE, "conversations", "--json"], timeout=60,
                       env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout or "[]")
    return r.stdout if rows and rows[0]["turns"] >= 3 else None
