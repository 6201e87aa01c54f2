"""The same ask reaches Qwen the same way from every dialect (issue 80, item 1; request_surface.py): an output cap,
Qwen4's hour of cache, and where the dialect can say them a stop list and a seed, sent from openai-python's chat and
Responses and the `anthropic` SDK's Messages through a real mitmdump to the emulator's Model Studio; the bodies
the emulator recorded are compared. Responses has no `stop` or `seed` (OpenAI refuses them, and so does the gateway);
Messages' `stop_sequences` stay with the gateway (docs/compatibility.md: it answers which sequence matched)."""

from __future__ import annotations

import openai
import pytest

from e2e.test_e2e_cache_markers import LONG, cache_gw, client, needs_sdk, qwen_bodies  # noqa: F401 (a fixture)
from e2e.test_e2e_messages import sdk

pytestmark = pytest.mark.e2e

MODEL = "qwen4-max"
CAP, STOP, SEED = 64, ["END-OF-ANSWER"], 7
HOUR = {"type": "ephemeral", "ttl": "1h"}


def the_ask(body: dict) -> dict:
    """What of a body Qwen got says the ask: the cap, the stop list, the seed, and the lifetime of every marker."""
    lifetimes = {p["cache_control"].get("ttl", "5m") for m in body["messages"] if isinstance(m["content"], list)
                 for p in m["content"] if "cache_control" in p}
    return {"cap": body.get("max_completion_tokens"), "max_tokens": body.get("max_tokens"), "stop": body.get("stop"),
            "seed": body.get("seed"), "lifetimes": lifetimes, "retention": body.get("prompt_cache_retention")}


def one_body(emu, since: int) -> dict:
    bodies = qwen_bodies(emu, since)
    assert len(bodies) == 1, bodies
    assert bodies[0]["model"] == MODEL
    return bodies[0]


@needs_sdk
def test_an_output_cap_a_stop_list_a_seed_and_the_hour_reach_qwen_alike(cache_gw, emu):
    c = client(cache_gw)
    since = len(emu.chat_requests())
    c.chat.completions.create(model=MODEL, messages=[{"role": "system", "content": "Chat. " + LONG},
                                                     {"role": "user", "content": "The question."}],
                              max_tokens=CAP, stop=STOP, seed=SEED, extra_body={"prompt_cache_retention": "24h"})
    chat = the_ask(one_body(emu, since))

    since = len(emu.chat_requests())
    c.responses.create(model=MODEL, instructions="Responses. " + LONG, input="The question.", max_output_tokens=CAP,
                       extra_body={"prompt_cache_retention": "24h"})
    responses = the_ask(one_body(emu, since))

    since = len(emu.chat_requests())
    sdk(cache_gw, "calls", {"calls": [{"op": "create", "params": {
        "model": MODEL, "max_tokens": CAP, "system": "Messages. " + LONG, "stop_sequences": STOP,
        "cache_control": HOUR, "messages": [{"role": "user", "content": "The question."}]}}]})
    messages = the_ask(one_body(emu, since))

    assert chat == {"cap": CAP, "max_tokens": None, "stop": STOP, "seed": SEED, "lifetimes": {"1h"},
                    "retention": None}  # max_tokens by its current name; the hour on every marker
    assert responses == {**chat, "stop": None, "seed": None}  # the Responses API has neither
    assert messages == {**chat, "stop": None, "seed": None}  # its stop list applied by the gateway, no seed


def test_a_responses_seed_or_stop_is_refused_as_openai_refuses_it(cache_gw, emu):
    since = len(emu.chat_requests())
    for field, value in (("seed", SEED), ("stop", STOP)):
        with pytest.raises(openai.BadRequestError) as e:
            client(cache_gw).responses.create(model=MODEL, input="hi", extra_body={field: value})
        assert e.value.code == "unknown_parameter" and e.value.param == field
    assert len(emu.chat_requests()) == since  # nothing reached Qwen
