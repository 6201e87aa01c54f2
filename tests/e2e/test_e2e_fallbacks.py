"""Fallbacks by model group (`qwen_fallbacks`) end to end: a real mitmdump with the addon, the strict emulator refusing
one model as Model Studio does for a key that may not call it (403 `AccessDenied.Unpurchased`, the `denied_models`
switch), real clients (openai-python, the anthropic SDK). A request for the refused model is answered by its group's
next model — whole and streamed, over chat, Responses and Messages — before the client sees anything, and the flow
says so; the next model may be another provider's (a self-hosted vLLM server of the pool); a 400 on a bad parameter
is the client's own, never a fallback's."""

from __future__ import annotations


import httpx
import openai
import pytest
from mitmproxy import io

from helpers.home import change_accounts
from helpers.procs import start_emulator
from helpers.team import ANTHROPIC_PYTHON, NO_ANTHROPIC, anthropic_calls, openai_client, team_env, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GROUP = "qwen3-max=qwen3.6-plus"
NOTE = f"qwen3-max refused on emu (no access): fell back to qwen3.6-plus (qwen_fallbacks {GROUP})"
SELF_HOSTED = "Qwen/Qwen3-8B"
HI = [{"role": "user", "content": "hi"}]


def recorded(gw, flows) -> list:
    gw.stop()  # the flow file is complete once mitmdump has ended
    with open(flows, "rb") as f:
        return [fl for fl in io.FlowReader(f).stream() if fl.request.path.startswith("/v1/")]


def models_sent(emu) -> list[str]:
    return [r["body"]["model"] for r in emu.chat_requests()]


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
def test_a_refused_model_is_answered_by_its_fallback_in_every_dialect(tmp_path, emu, make_gateway):
    emu.switches(denied_models=["qwen3-max"])
    flows = tmp_path / "fb.flows"
    gw = make_gateway(env=team_env(tmp_path, emu), args=("--set", f"qwen_fallbacks={GROUP}", "-w", str(flows)))
    client = openai_client(gw.url, "x")

    whole = client.chat.completions.create(model="qwen3-max", messages=HI)
    assert whole.choices[0].message.content == "Echo: hi" and whole.model == "qwen3.6-plus"
    assert models_sent(emu) == "qwen3-max qwen3.6-plus".split()  # refused, then its fallback

    chunks = list(client.chat.completions.create(model="qwen3-max", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: hi"
    assert {c.model for c in chunks} == {"qwen3.6-plus"}

    response = client.responses.create(model="qwen3-max", input="hi")
    assert response.output_text == "Echo: hi" and response.model == "qwen3.6-plus"
    events = list(client.responses.create(model="qwen3-max", input="hi", stream=True))
    done = [e for e in events if e.type == "response.completed"]
    assert done and done[0].response.output_text == "Echo: hi" and done[0].response.model == "qwen3.6-plus"
    message = {"model": "qwen3-max", "max_tokens": 64, "messages": HI}
    made = anthropic_calls(gw.url, "x", [{"op": "create", "params": message}, {"op": "stream", "params": message}])
    assert made[0]["answer"]["model"] == "qwen3.6-plus", made
    assert made[0]["answer"]["content"][0]["text"] == "Echo: hi"
    assert made[1]["answer"]["message"]["model"] == "qwen3.6-plus" and made[1]["answer"]["text"] == "Echo: hi"
    n = 6  # chat, Responses and Messages, each whole and streamed
    assert models_sent(emu) == "qwen3-max qwen3.6-plus".split() * n  # each refused once, then its fallback

    line = until(lambda: [ln for ln in gw.log().splitlines() if "(fallback:" in ln], "a request line")[0]
    assert "POST /v1/chat/completions qwen3-max→qwen3.6-plus (fallback: qwen3-max refused) acct=emu 200" in line
    answered = recorded(gw, flows)
    assert len(answered) == n
    for flow in answered:
        meta = flow.metadata["qwen"]
        assert meta["status"] == 200 and meta["model"] == "qwen3-max", meta  # what the client asked, as asked
        assert meta["fallback"] == {"model": "qwen3.6-plus", "refused": ["qwen3-max"]}
        assert NOTE in meta["notes"] and meta["retry_reasons"] == ["fell_back"]


def test_a_bad_parameter_is_the_clients_own_refusal_never_a_fallbacks(tmp_path, emu, make_gateway):
    gw = make_gateway(env=team_env(tmp_path, emu), args=("--set", "qwen_fallbacks=qwen3.6-plus=qwen3.6-flash"))
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client(gw.url, "x").chat.completions.create(model="qwen3.6-plus", messages=HI, extra_body={
            "enable_search": True, "search_options": "x"})  # Qwen's own field, passed on as sent: Qwen refuses it
    assert "search_options must be an object" in refused.value.message
    assert models_sent(emu) == ["qwen3.6-plus"]  # never sent to the group's next model
    assert "fell back" not in gw.log() and "(fallback:" not in gw.log()


def test_every_model_refused_answers_the_first_refusal(tmp_path, emu, make_gateway):
    emu.switches(denied_models="qwen3-max qwen3.6-plus qwen4-max".split())
    gw = make_gateway(env=team_env(tmp_path, emu), args=("--set", "qwen_fallbacks=qwen3-max=qwen3.6-plus,qwen4-max"))
    with pytest.raises(openai.PermissionDeniedError) as refused:
        openai_client(gw.url, "x").chat.completions.create(model="qwen3-max", messages=HI)
    assert "Access to model denied" in refused.value.message  # the first model's refusal, as it would have been
    assert models_sent(emu) == "qwen3-max qwen3.6-plus qwen4-max".split()


def test_a_fallback_to_another_providers_model_on_a_self_hosted_server(tmp_path, emu, make_gateway):
    """A Model Studio key that may not call qwen3-max beside the team's own vLLM server: the group's next model is
    the server's, and the request goes there, its answer naming it."""
    emu.switches(denied_models=["qwen3-max"])
    (tmp_path / "gpu").mkdir()
    gpu = start_emulator(tmp_path / "gpu", "--serve", "vllm", "--vllm-version", "0.20.0", "--api-key", "sk-gpu",
                         "--model", SELF_HOSTED)
    try:
        env = team_env(tmp_path, emu)
        change_accounts(tmp_path / "team" / "state", lambda accounts: [*accounts, {
            "name": "gpu", "kind": "key", "provider": "selfhosted", "base_url": gpu.url + "/v1", "key_env": "GPU_KEY"}])
        flows = tmp_path / "gpu.flows"
        gw = make_gateway(env={**env, "GPU_KEY": "sk-gpu"},
                          args=("--set", f"qwen_fallbacks=qwen3-max={SELF_HOSTED}", "-w", str(flows)))
        served = httpx.Client(trust_env=False, timeout=10)
        until(lambda: {SELF_HOSTED, "qwen3-max"} <= {m["id"] for m in served.get(gw.url + "/v1/models").json()["data"]},
              "both accounts' lists read")
        client = openai_client(gw.url, "x")
        for stream in (False, True):
            if stream:
                chunks = list(client.chat.completions.create(model="qwen3-max", messages=HI, stream=True))
                text, model = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks[0].model
            else:
                answer = client.chat.completions.create(model="qwen3-max", messages=HI)
                text, model = answer.choices[0].message.content, answer.model
            assert text.endswith("Echo: hi") and model == SELF_HOSTED  # its template thinks first
        assert models_sent(emu) == ["qwen3-max"] * 2  # Model Studio refused it each time; never sent the other's
        assert [r["body"]["model"] for r in gpu.chat_requests()] == [SELF_HOSTED] * 2
        for flow in recorded(gw, flows):
            meta = flow.metadata["qwen"]
            if meta["route"] == "models":
                continue
            assert meta["status"] == 200 and meta["account"] == "gpu", meta
            assert meta["fallback"] == {"model": SELF_HOSTED, "refused": ["qwen3-max"]}
            assert f"qwen3-max refused on emu (no access): fell back to {SELF_HOSTED} (qwen_fallbacks " \
                   f"qwen3-max={SELF_HOSTED})" in meta["notes"]
    finally:
        gpu.stop()


def test_a_prompt_over_a_servers_window_falls_back_to_a_longer_window(tmp_path, emu, make_gateway):
    """The team's vLLM server holds 4,096 tokens; the group's next model, Model Studio's qwen3.6-plus, a million (the
    catalogue's): a prompt of about 6,000 tokens the server refuses in its own numbers is answered there. The server's
    model is bound to it; the fallback is bound by its own name (to none here: any account)."""
    (tmp_path / "gpu").mkdir()
    gpu = start_emulator(tmp_path / "gpu", "--serve", "vllm", "--vllm-version", "0.20.0", "--api-key", "sk-gpu",
                         "--model", SELF_HOSTED, "--max-model-len", "4096")
    try:
        env = team_env(tmp_path, emu)
        change_accounts(tmp_path / "team" / "state", lambda accounts: [*accounts, {
            "name": "gpu", "kind": "key", "provider": "selfhosted", "base_url": gpu.url + "/v1", "key_env": "GPU_KEY"}])
        flows = tmp_path / "window.flows"
        gw = make_gateway(env={**env, "GPU_KEY": "sk-gpu"},
                          args=("--set", f"qwen_fallbacks={SELF_HOSTED}=qwen3.6-plus", "-w", str(flows),
                                # the server's model on the server (Model Studio's key would map it to its default);
                                # the fallback, bound by its own name, to any account
                                "--set", f"qwen_account_bindings=model:{SELF_HOSTED}=gpu"))
        until(lambda: f"serves {SELF_HOSTED} (4,096-token window)" in gw.log(), "the server's list read")
        long = [{"role": "user", "content": "word " * 6000}]
        answer = openai_client(gw.url, "x").chat.completions.create(model=SELF_HOSTED, messages=long)
        assert answer.choices[0].message.content.startswith("Echo: word") and answer.model == "qwen3.6-plus"
        assert [r["body"]["model"] for r in gpu.chat_requests()] == [SELF_HOSTED]  # refused in its own numbers
        assert models_sent(emu) == ["qwen3.6-plus"]
        (flow,) = [f for f in recorded(gw, flows) if f.request.path == "/v1/chat/completions"]
        meta = flow.metadata["qwen"]
        assert meta["fallback"] == {"model": "qwen3.6-plus", "refused": [SELF_HOSTED]} and meta["account"] == "emu"
        assert f"{SELF_HOSTED} refused on gpu (prompt over its window): fell back to qwen3.6-plus (qwen_fallbacks " \
               f"{SELF_HOSTED}=qwen3.6-plus)" in meta["notes"]
    finally:
        gpu.stop()
