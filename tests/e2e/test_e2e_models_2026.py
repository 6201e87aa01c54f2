"""The Qwen of November 2026 through a real mitmdump, with the openai SDK, against the strict emulator: the
newest models get the output cap the client asked (never an invented 8,192), under the name Model Studio takes
now (`max_completion_tokens`); a model the catalogue does not know has its cap learned from Qwen's own 400,
once, kept across a restart; qwen4-max takes efforts as it names them; reasoning that used up a shared cap is
said in each API's terms and on the flow; /v1/models lists what the account's plan serves."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from helpers.home import Home
from helpers.procs import Gateway, until

pytestmark = pytest.mark.e2e

HI = [{"role": "user", "content": "hi"}]


def key_gateway(tmp_path: Path, emu, make_gateway, *, base: str = "/compatible-mode/v1") -> tuple[Gateway, Path]:
    """A gateway whose only account is a key on the emulator's pay-as-you-go base, writing its debug log."""
    home = Home(tmp_path, emu)
    home.key("ds", path=base, default_model="qwen3-coder-plus")
    return make_gateway(env=home.env(), args=("--set", "qwen_debug_log=true")), home.state


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30,
                         http_client=httpx.Client(trust_env=False))


def bodies(emu) -> list[dict]:
    return [r["body"] for r in emu.chat_requests()]


def notes(state: Path, exchanges: int) -> list[str]:
    """The notes of the first `exchanges` exchanges, once the debug log has written them (just after each answer)."""
    files = until(lambda: (found := sorted((state / "logs").glob("exchange-*.json"))) and len(found) >= exchanges
                  and found, f"{exchanges} exchanges in the debug log")
    return [n for f in files[:exchanges] for n in json.loads(f.read_text())["summary"]["notes"]]


@pytest.mark.parametrize("model", ["qwen3.7-max", "qwen4-max", "qwen3.6-flash", "qwen3.5-flash",
                                   "qwen3.6-max-preview"])
def test_the_newest_models_get_the_cap_the_client_asked(tmp_path, emu, make_gateway, model):
    gw, _ = key_gateway(tmp_path, emu, make_gateway)
    c = client(gw)
    answer = c.chat.completions.create(model=model, max_completion_tokens=30000, messages=HI)
    assert answer.choices[0].message.content == "Echo: hi" and answer.choices[0].finish_reason == "stop"
    (sent,) = bodies(emu)
    assert sent["model"] == model and sent["max_completion_tokens"] == 30000 and "max_tokens" not in sent
    c.chat.completions.create(model=model, max_tokens=30000, messages=HI)  # a client's legacy name: the same
    assert bodies(emu)[-1]["max_completion_tokens"] == 30000 and "max_tokens" not in bodies(emu)[-1]
    c.responses.create(model=model, input="hi", max_output_tokens=30000)
    assert bodies(emu)[-1]["max_completion_tokens"] == 30000 and "max_tokens" not in bodies(emu)[-1]


def test_a_cap_qwen_refuses_once_is_learned_and_kept_across_a_restart(tmp_path, emu, make_gateway):
    """A model newer than the catalogue: the client's 50,000 goes as asked, Qwen's 400 names 40,000, the request
    is sent again within it (the client sees one answer), the flow says so, and neither the next request nor a
    restarted gateway pays the refusal again."""
    emu.switches(extra_models=["qwen9-max"], model_caps={"qwen9-max": 40000},
                 model_list={"omit": ["qwen9-max"]})  # newer than the list read: only a refusal teaches its cap
    gw, state = key_gateway(tmp_path, emu, make_gateway)
    c = client(gw)
    answer = c.chat.completions.create(model="qwen9-max", max_completion_tokens=50000, messages=HI)
    assert answer.choices[0].message.content == "Echo: hi"
    assert [b["max_completion_tokens"] for b in bodies(emu)] == [50000, 40000]
    said = notes(state, 1)
    assert any(n.startswith("qwen9-max: max_completion_tokens at most 40,000 (learned from Qwen's refusal at ")
               and n.endswith(": sent again within it") for n in said), said
    c.chat.completions.create(model="qwen9-max", max_completion_tokens=50000, messages=HI)
    assert [b["max_completion_tokens"] for b in bodies(emu)] == [50000, 40000, 40000]
    gw.stop()
    again = gw.start()
    client(again).chat.completions.create(model="qwen9-max", max_completion_tokens=50000, messages=HI)
    assert [b["max_completion_tokens"] for b in bodies(emu)][-1] == 40000 and len(bodies(emu)) == 4


@pytest.mark.parametrize("effort", ["low", "high", "xhigh"])
def test_qwen4_max_takes_the_effort_as_it_names_it(tmp_path, emu, make_gateway, effort):
    gw, _ = key_gateway(tmp_path, emu, make_gateway)
    client(gw).chat.completions.create(model="qwen4-max", reasoning_effort=effort, messages=HI)
    (sent,) = bodies(emu)
    assert sent["reasoning_effort"] == effort
    assert "thinking_budget" not in sent and "enable_thinking" not in sent
    assert sent.get("preserve_thinking") is True


def test_qwen4_max_told_nothing_is_told_not_to_think(tmp_path, emu, make_gateway):
    gw, _ = key_gateway(tmp_path, emu, make_gateway)
    client(gw).chat.completions.create(model="qwen4-max", messages=HI)
    (sent,) = bodies(emu)
    assert sent["reasoning_effort"] == "none" and "enable_thinking" not in sent


def test_reasoning_that_used_up_a_shared_cap_is_said_in_each_api(tmp_path, emu, make_gateway):
    """From qwen4-max-preview on the cap covers reasoning and answer (Model Studio, 2026-11-02)."""
    emu.switches(reasoning_tokens=200)
    gw, state = key_gateway(tmp_path, emu, make_gateway)
    c = client(gw)
    answer = c.chat.completions.create(model="qwen4-max", reasoning_effort="high", max_completion_tokens=64,
                                       messages=HI)
    assert answer.choices[0].finish_reason == "length" and not answer.choices[0].message.content
    assert answer.usage.completion_tokens_details.reasoning_tokens == 64
    r = c.responses.create(model="qwen4-max", input="hi", reasoning={"effort": "high"}, max_output_tokens=64)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.output_text == ""
    said = "the reasoning used all 64 output tokens: no answer (raise the output cap)"
    assert notes(state, 2).count(said) == 2


def test_the_model_list_is_what_the_keys_plan_serves(tmp_path, emu, make_gateway):
    emu.switches(listed_models=["qwen4-max", "qwen3.8-max", "qwen3.7-max"])  # what a real key's base lists
    gw, _ = key_gateway(tmp_path, emu, make_gateway)
    c = client(gw)
    ids = [m.id for m in c.models.list()]
    assert {"qwen4-max", "qwen3.8-max", "qwen3.7-max"} <= set(ids)
    assert "coder-model" not in ids and "vision-model" not in ids  # the closed OAuth portal's names
    for model_id in ("qwen4-max", "qwen3.8-max", "qwen3.7-max"):
        assert c.models.retrieve(model_id).id == model_id
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("coder-model")


def test_a_key_whose_base_lists_its_models_gets_that_list(tmp_path, emu, make_gateway):
    """Where the account's base answers its own model list (what the key's workspace enabled), /v1/models is that
    list, read in the background when the gateway starts and cached (until it is read: the catalogue's for the
    plan)."""
    emu.switches(listed_models=["qwen3.6-plus", "qwen9-max"], extra_models=["qwen9-max"])
    gw, _ = key_gateway(tmp_path, emu, make_gateway)
    c = client(gw)

    def own_list() -> list[str]:
        ids = [m.id for m in c.models.list()]
        return ids if "qwen9-max" in ids else []

    ids = until(own_list, "the account's own list in /v1/models")
    assert [i for i in ids if i.startswith("qwen")] == ["qwen3.6-plus", "qwen9-max"]
    assert c.models.retrieve("qwen9-max").id == "qwen9-max"
    fetches = [r for r in emu.requests() if r["path"].split("?")[0].endswith("/models")]
    assert len(fetches) == 1 and fetches[0]["headers"]["user-agent"].startswith("qwen-gateway/")
