"""Qwen4's explicit cache lasts the hour a client asks (issue 61, item 3): through a real mitmdump to the emulator's
Model Studio cache (docs/emulator.md), a qwen4-max conversation marked `ttl: "1h"` reads its prefix after a
six-minute pause (the emulator's clock moved, never waited), a model without the hour does not; OpenAI's
`prompt_cache_retention: "24h"` asks the same hour, and what a model without it does with it is said."""

from __future__ import annotations

import time

import pytest

from e2e.test_e2e_cache_markers import LONG, cache_gw, client, notes, qwen_bodies  # noqa: F401 (cache_gw: a fixture)
from helpers import commands
from helpers.home import Home

pytestmark = pytest.mark.e2e

HOUR = {"type": "ephemeral", "ttl": "1h"}
PAUSE_S = 6 * 60


def conversation(gw, emu, model: str, first: list[dict], **extra) -> tuple[object, object]:
    """Two turns with a six-minute pause between them: the second turn's answer and the first's."""
    c = client(gw)
    one = c.chat.completions.create(model=model, messages=first, max_tokens=16, **extra)
    emu.admin("POST", "cache", {"advance": PAUSE_S})
    two = c.chat.completions.create(model=model, messages=[*first, {"role": "assistant", "content": "Echo."},
                                                           {"role": "user", "content": "And after the pause?"}],
                                    max_tokens=16, **extra)
    return one, two


def marked_hour(model: str) -> list[dict]:
    return [{"role": "system", "content": [{"type": "text", "text": f"{model}: " + LONG, "cache_control": HOUR}]},
            {"role": "user", "content": "The first question."}]


def test_qwen4_max_marked_for_an_hour_reads_its_cache_after_six_minutes(cache_gw, emu):
    since = len(emu.chat_requests())
    one, two = conversation(cache_gw, emu, "qwen4-max", marked_hour("qwen4-max"))
    first, _ = qwen_bodies(emu, since)
    assert first["messages"][0]["content"][0]["cache_control"] == HOUR  # reached Qwen as asked
    assert one.usage.prompt_tokens_details.cached_tokens == 0
    assert two.usage.prompt_tokens_details.cached_tokens > 1024


def test_a_model_without_the_hour_has_forgotten_after_six_minutes(cache_gw, emu):
    since = len(emu.chat_requests())
    _, two = conversation(cache_gw, emu, "qwen3.6-plus", marked_hour("qwen3.6-plus"))
    first, _ = qwen_bodies(emu, since)
    assert first["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert two.usage.prompt_tokens_details.cached_tokens == 0
    time.sleep(1)  # the debug log writes from a thread
    assert any("cache_control ttl 1h sent as Qwen's 5 minutes" in n for n in notes(cache_gw)[-1])


def test_retention_24h_is_qwen4s_hour_and_said_elsewhere(cache_gw, emu):
    first = [{"role": "system", "content": "Retention: " + LONG}, {"role": "user", "content": "The first question."}]
    _, two = conversation(cache_gw, emu, "qwen4-max", first, extra_body={"prompt_cache_retention": "24h"})
    assert two.usage.prompt_tokens_details.cached_tokens > 1024
    _, other = conversation(cache_gw, emu, "qwen3.6-plus", first, extra_body={"prompt_cache_retention": "24h"})
    assert other.usage.prompt_tokens_details.cached_tokens == 0
    time.sleep(1)
    assert any(n.startswith("prompt_cache_retention 24h not sent: qwen3.6-plus") for n in notes(cache_gw)[-1])


def test_a_qwen4_max_hour_is_billed_as_its_page_prices_it(emu, make_gateway, tmp_path):
    """Each turn's ledger row at qwen4-max's own prices (source AE): input $1.50, output $4.50, cache reads $0.075
    (5 %), 1-hour writes $3.00 (200 %) per million tokens — never unpriced for having asked the hour. The emulator's
    account has no billing of its own: `qwen_unpriced_as=qwen4-max` prices it as qwen4-max's international list."""
    import json

    from helpers.ledger import ledger_rows
    from helpers.procs import until

    home = Home(tmp_path, emu)
    home.key("emu")
    state = home.state
    gw = make_gateway(env=home.env(), args=("--set", "qwen_unpriced_as=qwen4-max"))
    one, two = conversation(gw, emu, "qwen4-max", marked_hour("qwen4-max"))
    expected = []
    for answer in (one, two):
        u, d = answer.usage, answer.usage.prompt_tokens_details
        hour = (d.model_extra or {}).get("cache_creation", {}).get("ephemeral_1h_input_tokens", 0)
        written, read = d.cache_write_tokens or 0, d.cached_tokens or 0
        assert hour == written  # all of what was written, written for the hour
        expected.append(((u.prompt_tokens - read - written) * 1.5 + read * 0.075 + written * 3.0
                         + u.completion_tokens * 4.5) / 1e6)
    assert one.usage.prompt_tokens_details.cache_write_tokens > 1024 and two.usage.prompt_tokens_details.cached_tokens
    rows = until(lambda: (lambda r: r if len(r) >= 2 else None)(ledger_rows(state)), "two ledger rows")
    assert [r["cost_unit"] for r in rows] == ["USD", "USD"]
    assert [r["cost"] for r in rows] == pytest.approx(expected, rel=1e-9)
    # the conversation's turns that asked the hour, as qwen-usage conversations lists them
    import os

    from helpers.team import QWEN_USAGE
    r = commands.run([QWEN_USAGE, "conversations", "--json"], timeout=60,
                       env={**os.environ, "QWEN_GATEWAY_HOME": str(state), "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert [(c["turns"], c["hour_turns"]) for c in json.loads(r.stdout)] == [(2, 2)]


def test_auto_lifetime_is_wired_and_said_on_the_flow(emu, make_gateway, tmp_path):
    """`qwen_cache_lifetime=auto` through a real mitmdump: a new key's opening turn on qwen4-max keeps five minutes
    (its whole prompt is new: the hour's premium is largest there), said on the flow; a model without the hour is
    left alone, saying nothing. (The hour chosen after a key's long pauses, onto Qwen's markers:
    tests/unit/turn/test_cache_fixes.py; its money on day shapes: scripts/bench_lifetime.py.)"""
    import json

    home = Home(tmp_path, emu)
    home.key("emu")
    state = home.state
    gw = make_gateway(env=home.env(),
                      args=("--set", "qwen_cache_lifetime=auto", "--set", "qwen_debug_log=true"))
    c = client(gw)
    first = [{"role": "system", "content": "qwen4-max auto: " + LONG}, {"role": "user", "content": "The question."}]
    c.chat.completions.create(model="qwen4-max", messages=first, max_tokens=16)
    c.chat.completions.create(model="qwen3.6-plus", messages=first, max_tokens=16)
    from helpers.procs import until
    said = until(lambda: (n := [json.loads(f.read_text())["summary"]["notes"] for f in
                                sorted((state / "logs").glob("exchange-*.json"))]) and len(n) >= 2 and n, "two flows")
    assert any(x.startswith("cache lifetime 5 minutes kept (qwen_cache_lifetime=auto): 5% of pauses over 5 minutes "
                            "expected (0 of this key's seen)") for x in said[0]), said[0]
    assert not any("cache lifetime" in x for x in said[1]), said[1]
    sent = emu.chat_requests()[-2]["body"]
    assert "ttl" not in json.dumps(sent)  # five minutes: Qwen's default, no ttl sent


def test_retention_24h_from_responses_reaches_qwen_as_from_chat(cache_gw, emu):
    """The same ask from the Responses API (issue 80: its copy list left `prompt_cache_retention` out, and qwen4-max
    got 5-minute markers where chat's ask got the hour): both reach Qwen with the same markers, said the same."""
    instructions = "Retention from both: " + LONG
    since = len(emu.chat_requests())
    client(cache_gw).chat.completions.create(
        model="qwen4-max", max_tokens=16, extra_body={"prompt_cache_retention": "24h"},
        messages=[{"role": "system", "content": instructions}, {"role": "user", "content": "The first question."}])
    client(cache_gw).responses.create(model="qwen4-max", max_output_tokens=16, prompt_cache_retention="24h",
                                      instructions=instructions, input="The first question.")
    from_chat, from_responses = qwen_bodies(emu, since)

    def markers(body: dict) -> list[dict]:
        return [part["cache_control"] for m in body["messages"] if isinstance(m.get("content"), list)
                for part in m["content"] if isinstance(part, dict) and "cache_control" in part]

    assert markers(from_chat) and all(m.get("ttl") == "1h" for m in markers(from_chat))
    assert markers(from_responses) == markers(from_chat)
    time.sleep(1)
    said = [n for n in notes(cache_gw)[-1] if n.startswith("prompt_cache_retention")]
    assert said and said == [n for n in notes(cache_gw)[-2] if n.startswith("prompt_cache_retention")]
