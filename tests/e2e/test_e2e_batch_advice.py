"""Batch advice (issue 61, item 6) through a real mitmdump, the emulator's Files and Batch APIs and openai-python:
a batch of 50 lines sharing a ~3,000-token system prompt is told, at its creation, what it costs as a batch and
what the same lines would cost one by one in real time with that prompt read from Qwen's cache — on the flow
(its record's notes in the flow file, what mitmweb shows), in the gateway's log, and in `qwen-usage batches` after
the gateway stopped; a batch of unrelated lines is told nothing. Neither batch is changed: both run as asked."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from mitmproxy import io

from e2e.test_e2e_batches import MODEL, jsonl, payg_env
from helpers import commands
from helpers.team import QWEN_USAGE, openai_client

pytestmark = pytest.mark.e2e

LINES = 50
SYSTEM = "You grade answers to arithmetic questions: read the rubric, then give a grade from 0 to 5. " * 130
INPUT = 2.0  # USD per million input tokens, the user's price file


def rows(system_of) -> list[dict]:
    return [{"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions", "body": {
        "model": MODEL, "max_completion_tokens": 20, "messages": [{"role": "system", "content": system_of(i)},
                                                                   {"role": "user", "content": f"What is {i} + {i}?"}]}}
            for i in range(LINES)]


def notes(flows: Path) -> dict[str, list[str]]:
    """Each batch creation's notes, by the batch it made (the flow file the gateway wrote)."""
    with open(flows, "rb") as f:
        made = [fl for fl in io.FlowReader(f).stream() if fl.request.path == "/v1/batches"
                and fl.request.method == "POST"]
    return {json.loads(fl.response.content)["id"]: fl.metadata["qwen"]["notes"] for fl in made}


def test_a_batch_sharing_a_long_system_prompt_is_advised_on_and_unrelated_lines_are_not(tmp_path, emu, make_gateway):
    env = payg_env(tmp_path, emu)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"*": {MODEL: {"input": INPUT, "output": 10.0}}}))
    flows = tmp_path / "flows.mitm"
    gw = make_gateway(env=env, args=("--set", f"qwen_prices_file={prices}", "-w", str(flows)))
    c = openai_client(gw.url, "client-key")

    shared = c.files.create(file=("shared.jsonl", jsonl(rows(lambda i: SYSTEM))), purpose="batch")
    advised = c.batches.create(input_file_id=shared.id, endpoint="/v1/chat/completions", completion_window="24h")
    unrelated = c.files.create(file=("unrelated.jsonl", jsonl(rows(lambda i: f"You are assistant number {i}."))),
                               purpose="batch")
    quiet = c.batches.create(input_file_id=unrelated.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert advised.status == quiet.status == "validating"  # made as asked

    assert f"batch advice for {advised.id}" in gw.log() and quiet.id not in "".join(
        line for line in gw.log().splitlines() if "batch advice" in line)
    gw.stop()  # its flow file complete; qwen-usage then reads the batch store the gateway left
    by_batch = notes(flows)
    assert not [n for n in by_batch[quiet.id] if n.startswith("batch advice")], by_batch[quiet.id]
    (note,) = [n for n in by_batch[advised.id] if n.startswith("batch advice")]
    print("\n" + note)
    found = re.search(r"50 lines share a ~([\d,]+)-token prefix.*as a batch \$([\d.]+).*in real time \$([\d.]+)", note)
    assert found, note
    prefix, batch, realtime = int(found[1].replace(",", "")), float(found[2]), float(found[3])
    assert 2_900 <= prefix <= 3_100
    # input only: every line's prompt at half price, against the prefix written once (125 %) and read by the
    # other 49 lines (10 %), the rest of each line (its question) at the full price
    total = batch * 2 * 1e6 / INPUT  # the lines' estimated prompt tokens, as the batch figure counts them
    assert LINES * prefix < total < LINES * (prefix + 40)
    assert realtime == pytest.approx(((total - LINES * prefix) + prefix * (1.25 + 49 * 0.10)) * INPUT / 1e6, abs=2e-6)
    assert realtime < batch / 2  # 50 lines reading a 3,000-token prefix at 10 % beat the batch's 50 %
    assert "real time estimated cheaper" in note and "output unknown" in note

    env_usage = {**os.environ, "QWEN_GATEWAY_HOME": env["QWEN_GATEWAY_HOME"], "HOME": env["HOME"]}
    table = commands.run([QWEN_USAGE, "batches"], timeout=60,
                           env=env_usage)
    assert table.returncode == 0, table.stderr
    print(table.stdout)
    listed = {line.split()[0]: line for line in table.stdout.splitlines()[2:]}
    assert f"as a batch ${found[2]}" in listed[advised.id] and f"in real time ${found[3]}" in listed[advised.id]
    assert "no advice (under the 1,024 tokens Qwen caches)" in listed[quiet.id]


def test_a_document_shared_in_the_first_user_message_no_marker_ends_is_no_cache_read(tmp_path, emu, make_gateway):
    """Issue 71: lines sharing a long document in their first user message (a short system prompt, no tools): the
    gateway marks the system prompt and each line's whole prompt, not the document, so Qwen stores no prefix the
    other lines can read — the advice counts none (it counted the document as read, and advised real time where
    the batch was cheaper), and two of the lines sent one by one show Qwen reading nothing."""
    env = payg_env(tmp_path, emu)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"*": {MODEL: {"input": INPUT, "output": 10.0}}}))
    gw = make_gateway(env=env, args=("--set", f"qwen_prices_file={prices}"))
    c = openai_client(gw.url, "client-key")
    document = "Rubric: a grade from 0 to 5, for the method, the result and the presentation of an answer. " * 130
    lines = [{"custom_id": f"d{i}", "method": "POST", "url": "/v1/chat/completions", "body": {
        "model": MODEL, "max_completion_tokens": 20, "messages": [
            {"role": "system", "content": "You grade answers."}, {"role": "user", "content": document},
            {"role": "user", "content": f"What is {i} + {i}?"}]}} for i in range(LINES)]
    uploaded = c.files.create(file=("doc.jsonl", jsonl(lines)), purpose="batch")
    batch = c.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    (said,) = [ln for ln in gw.log().splitlines() if f"batch advice for {batch.id}" in ln]
    assert "of which Qwen's cache keeps ~0 tokens" in said and "the batch estimated cheaper" in said, said
    one, two = (c.chat.completions.create(**lines[i]["body"]).usage for i in (0, 1))
    assert two.prompt_tokens > 2_000 and not (two.prompt_tokens_details.cached_tokens or 0)  # Qwen read nothing
