"""The models Model Studio retired on 2026-10-10 (Alibaba Cloud's notice "mainline models", id 731; the
catalogue's source AD): `qwen-turbo`, `qwen-vl-max`, `qwen-vl-plus`, `qwq-plus`, `qvq-max`, through a real
mitmdump against the strict emulator. Each is answered locally, 404 `model_not_found`, on every path that builds
a body (chat, Responses in the foreground and the background, Messages translated and passed through, a batch
line at upload), naming the series the notice names with catalogue examples, never a name from Qwen's own 404
(which suggests retired models too); nothing reaches Qwen. `/v1/models` and `/v1/models/{id}` agree: listed,
with the last day served as OpenAI's `shutdown_date`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from helpers.home import Home
from helpers.procs import Gateway
from helpers.team import openai_client, until

pytestmark = pytest.mark.e2e

HI = [{"role": "user", "content": "hi"}]
ANTHROPIC = {"anthropic-version": "2023-06-01", "x-api-key": "client-key"}
# each with the catalogue's examples of the series the notice names (a vision model for the vision ones, ...)
RETIRED = {"qwen-turbo": "`qwen3.6-flash`, `qwen3.7-flash`", "qwen-vl-max": "`qwen3.6-plus`, `qwen3.7-plus`",
           "qwen-vl-plus": "`qwen3.6-plus`, `qwen3.7-plus`", "qwq-plus": "`qwen3.6-plus`, `qwen3.7-max`",
           "qvq-max": "`qwen3.6-plus`, `qwen3.7-plus`"}


def said(model: str) -> str:
    return (f"The model `{model}` was retired: Model Studio served it until 2026-10-09. Model Studio names the "
            f"Qwen3.6 and Qwen3.7 series as replacements, e.g. {RETIRED[model]}.")


def key_gateway(tmp_path: Path, emu, make_gateway, *args: str, embeddings: bool = False) -> Gateway:
    """A gateway whose only account is a pay-as-you-go key on the emulator (where Files and Batch are served)."""
    home = Home(tmp_path, emu)
    home.key("ds", default_model="qwen-plus", **({"embeddings": True} if embeddings else {}))
    return make_gateway(env=home.env(), args=args)


def reached_qwen(emu) -> list[dict]:
    """What Qwen (the emulator) was asked to answer or to keep: chat, Responses, Messages, files."""
    return [r for r in emu.requests() if r["path"].endswith(("/chat/completions", "/responses", "/v1/messages",
                                                               "/files", "/batches"))]


def test_each_is_answered_locally_on_chat_responses_and_messages(tmp_path, emu, make_gateway):
    gw = key_gateway(tmp_path, emu, make_gateway)
    c = openai_client(gw.url, "client-key")
    for model in RETIRED:
        with pytest.raises(openai.NotFoundError) as caught:
            c.chat.completions.create(model=model, messages=HI)
        assert (caught.value.code, caught.value.param, caught.value.body["message"]) == ("model_not_found", "model",
                                                                                       said(model))
        with pytest.raises(openai.NotFoundError) as caught:
            c.chat.completions.create(model=model, messages=HI, stream=True)
        assert caught.value.body["message"] == said(model)
        with pytest.raises(openai.NotFoundError) as caught:
            c.responses.create(model=model, input="hi")
        assert caught.value.code == "model_not_found" and caught.value.body["message"] == said(model)
        r = httpx.post(gw.url + "/v1/messages", json={"model": model, "max_tokens": 100, "messages": HI},
                       headers=ANTHROPIC, timeout=30, trust_env=False)
        assert r.status_code == 404 and r.json()["error"] == {"type": "not_found_error", "message": said(model)}, r.text
    with pytest.raises(openai.NotFoundError) as caught:  # a snapshot of a retired model is retired with it
        c.chat.completions.create(model="qwen-turbo-latest", messages=HI)
    assert caught.value.body["message"] == said("qwen-turbo").replace("`qwen-turbo`", "`qwen-turbo-latest`")
    assert reached_qwen(emu) == []


def test_a_background_response_fails_saying_so(tmp_path, emu, make_gateway):
    """Queued as any background response is, it fails with the same words, and nothing reaches Qwen."""
    gw = key_gateway(tmp_path, emu, make_gateway)
    c = openai_client(gw.url, "client-key")
    created = c.responses.create(model="qwq-plus", input="hi", background=True)
    done = until(lambda: (got := c.responses.retrieve(created.id)).status not in ("queued", "in_progress") and got,
                 "the background response to end")
    assert done.status == "failed" and done.error is not None and done.error.message == said("qwq-plus"), done
    assert reached_qwen(emu) == []


def test_messages_passed_through_to_the_plans_anthropic_base_too(tmp_path, emu, make_gateway):
    gw = key_gateway(tmp_path, emu, make_gateway, "--set", "qwen_messages_passthrough=true")
    for model in ("qwen-vl-max", "qvq-max"):
        r = httpx.post(gw.url + "/v1/messages", json={"model": model, "max_tokens": 100, "messages": HI},
                       headers=ANTHROPIC, timeout=30, trust_env=False)
        assert r.status_code == 404 and r.json()["error"] == {"type": "not_found_error", "message": said(model)}, r.text
    assert reached_qwen(emu) == []


def test_a_batch_line_naming_one_refuses_the_upload(tmp_path, emu, make_gateway):
    gw = key_gateway(tmp_path, emu, make_gateway)
    rows = [{"custom_id": "ok", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "qwen-plus", "messages": HI}},
            {"custom_id": "old", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "qwen-vl-plus", "messages": HI}}]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client(gw.url, "client-key").files.create(file=("r.jsonl", data), purpose="batch")
    error = caught.value.body
    assert (error["code"], error["param"]) == ("model_not_found", "line 2: model"), error
    assert error["message"] == "Line 2 (custom_id 'old'): " + said("qwen-vl-plus"), error
    assert reached_qwen(emu) == []


def test_the_list_and_the_model_agree_with_the_last_day_served(tmp_path, emu, make_gateway):
    """Where the account's host gives no list (neither Model Studio's nor an OpenAI-compatible one naming a model),
    the catalogue's: listed with the last day."""
    emu.switches(model_list={"unreadable": 404}, listed_models=[])
    gw = key_gateway(tmp_path, emu, make_gateway)
    c = openai_client(gw.url, "client-key")
    listed = {m.id: m for m in c.models.list()}
    for model in RETIRED:
        got = c.models.retrieve(model)
        assert str(got.shutdown_date) == str(listed[model].shutdown_date) == "2026-10-09"  # the SDK's own field
        assert got.model_dump() == listed[model].model_dump()
    assert listed["qwen3.6-flash"].shutdown_date is None


def test_once_qwens_list_is_read_a_retired_model_is_neither_listed_nor_found(tmp_path, emu, make_gateway):
    """Qwen's own list leaves retired models out: so do /v1/models and /v1/models/{id}, which says why."""
    gw = key_gateway(tmp_path, emu, make_gateway)
    c = openai_client(gw.url, "client-key")
    ids = lambda: {m.id for m in c.models.list()}  # noqa: E731  (until read: the catalogue's, retired ones dated)
    until(lambda: "qwen3.6-flash" in ids() and not set(RETIRED) & ids(), "Qwen's list read")
    assert any(r["path"].startswith("/api/v1/models?") for r in emu.requests())
    for model in RETIRED:
        with pytest.raises(openai.NotFoundError) as caught:
            c.models.retrieve(model)
        assert caught.value.body["message"] == said(model), caught.value.body


def test_responses_over_a_websocket_natively_and_embeddings_too(tmp_path, emu, make_gateway):
    """The other paths: a Responses turn over the WebSocket (an `error` event with the same words), Model Studio's
    own Responses API (`qwen_responses_native`) and the embeddings endpoint: answered here, nothing sent."""
    import websocket

    gw = key_gateway(tmp_path, emu, make_gateway, "--set", "qwen_responses_native=true", embeddings=True)
    ws = websocket.create_connection(gw.url.replace("http://", "ws://") + "/v1/responses", timeout=15, header=[
        "Authorization: Bearer client-key", "openai-beta: responses_websockets=2026-02-06"])
    try:
        ws.send(json.dumps({"type": "response.create", "model": "qwen-vl-plus", "store": False, "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}))
        while (event := json.loads(ws.recv()))["type"] not in ("response.completed", "response.failed", "error"):
            pass
    finally:
        ws.close()
    assert event["type"] == "error" and event["error"]["message"] == said("qwen-vl-plus"), event
    c = openai_client(gw.url, "client-key")
    with pytest.raises(openai.NotFoundError) as caught:  # the native leg: Model Studio's own Responses API
        c.responses.create(model="qwq-plus", input="hi")
    assert caught.value.body["message"] == said("qwq-plus")
    with pytest.raises(openai.NotFoundError) as caught:
        c.embeddings.create(model="qwen-turbo", input="hi")
    assert caught.value.body["message"] == said("qwen-turbo")
    assert reached_qwen(emu) == [] and not [r for r in emu.requests() if r["path"].endswith("/embeddings")]
