"""Web search end to end: openai-python (chat `web_search_options`, Responses `web_search` tool) and the
`anthropic` SDK (its web_search server tool) through a real mitmdump to the emulator, which searches on search
models only (scripts/emulator/search.py): the sources come back as each client's citations, a search the
model or account cannot do is a 400 when demanded and dropped when only offered (Codex offers one on every
request)."""

from __future__ import annotations

import json

import httpx
import pytest

from helpers.home import CODING_PLAN, Home
from helpers.procs import Gateway
from helpers.openai_schema import validate, validate_stream_event
from e2e.test_e2e_messages import PYTHON, sdk

pytestmark = pytest.mark.e2e

QUESTION = [{"role": "user", "content": "rain?"}]
TEXT = "Echo: rain?[ref_1] More on the web[ref_2]."
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
FN = {"type": "function", "name": "exec_command", "description": "Run a command",
      "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}


@pytest.fixture(scope="module")
def key_gw(emulator, tmp_path_factory) -> Gateway:
    """A gateway whose only account is a Model Studio key on the emulator (search needs a key account)."""
    home = Home(tmp_path_factory.mktemp("websearch"), emulator)
    home.key("emu", path=CODING_PLAN, default_model="qwen3-coder-plus")
    gw = Gateway(home.root / "gw", env=home.env(), connlog=True).start()
    yield gw
    gw.stop()


@pytest.fixture
def kgw(key_gw, emu) -> Gateway:
    assert key_gw.alive(), key_gw.log()
    return key_gw


def client(gw: Gateway):
    import openai
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)


def searched(emu) -> dict:
    (sent,) = emu.chat_requests()
    return sent["body"]


def test_chat_web_search_options_whole_and_streamed(kgw, emu):
    r = client(kgw).chat.completions.with_raw_response.create(
        model="qwen-max", messages=QUESTION, web_search_options={"search_context_size": "high"})
    validate("CreateChatCompletionResponse", json.loads(r.text))
    message = r.parse().choices[0].message
    assert message.content == TEXT
    cites = [a.url_citation for a in message.annotations]
    assert [TEXT[c.start_index:c.end_index] for c in cites] == ["[ref_1]", "[ref_2]"]
    assert cites[0].url.startswith("https://example.com/1") and cites[0].title == "Result 1 for rain?"
    body = searched(emu)
    assert body["enable_search"] is True and "web_search_options" not in body
    assert body["search_options"] == {"enable_source": True, "enable_citation": True,
                                      "citation_format": "[ref_<number>]", "search_strategy": "max"}
    emu.reset()
    with client(kgw).chat.completions.stream(model="qwen-max", messages=QUESTION, web_search_options={}) as s:
        for _ in s:
            pass
        final = s.get_final_completion().choices[0].message
    assert final.content == TEXT
    assert [a.url_citation.model_dump() for a in final.annotations] == [a.url_citation.model_dump()
                                                                        for a in message.annotations]


def test_chat_web_search_options_refused_where_search_is_impossible(kgw, gw):
    import openai
    for gateway, model, why in ((kgw, "qwen3-coder-plus", "qwen3-coder-plus cannot search"),
                                (gw, "gpt-4o", "Qwen OAuth accounts")):
        with pytest.raises(openai.BadRequestError) as e:
            client(gateway).chat.completions.create(model=model, messages=QUESTION, web_search_options={})
        assert e.value.body["param"] == "web_search_options" and e.value.body["code"] == "unsupported_value"
        assert why in e.value.body["message"] and "qwen-max" in e.value.body["message"]


def test_responses_web_search_tool_whole_and_streamed(kgw, emu):
    r = client(kgw).responses.with_raw_response.create(model="qwen-max", input="rain?", tools=[{"type": "web_search"}],
                                                       include=["web_search_call.action.sources"])
    validate("Response", json.loads(r.text))
    resp = r.parse()
    assert [i.type for i in resp.output] == ["web_search_call", "message"]  # qwen-max does not think
    call, message = resp.output[0], resp.output[-1]
    assert call.type == "web_search_call" and call.status == "completed" and call.action.type == "search"
    assert [s.url for s in call.action.sources][0].startswith("https://example.com/1")
    notes = message.content[0].annotations
    assert [(a.type, TEXT[a.start_index:a.end_index]) for a in notes] == [("url_citation", "[ref_1]"),
                                                                         ("url_citation", "[ref_2]")]
    assert "forced_search" not in searched(emu)["search_options"]  # offered: the model decides
    emu.reset()
    with client(kgw).responses.stream(model="qwen-max", input="rain?", tools=[{"type": "web_search_preview"}],
                                      tool_choice={"type": "web_search_preview"}) as s:
        kinds = [e.type for e in s]
        final = s.get_final_response()
    assert searched(emu)["search_options"]["forced_search"] is True
    assert "response.web_search_call.completed" in kinds and kinds.count("response.output_text.annotation.added") == 2
    assert [i.type for i in final.output] == ["web_search_call", "message"]
    assert [a.url for a in final.output[-1].content[0].annotations] == [a.url for a in notes]


def test_a_codex_like_request_offering_web_search_on_a_coder_model_still_succeeds(kgw, emu):
    """Codex offers a web_search tool on every request, whatever the model: never a 400 for it."""
    body = {"model": "gpt-5-codex", "stream": True, "store": False, "tool_choice": "auto",
            "parallel_tool_calls": True, "tools": [FN, {"type": "web_search", "external_web_access": False}],
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}
    events = []
    with httpx.stream("POST", kgw.url + "/v1/responses", json=body, timeout=30, trust_env=False) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    for e in events:
        validate_stream_event(e)
    assert events[-1]["type"] == "response.completed"
    sent = searched(emu)
    assert sent["model"] == "qwen3-coder-plus" and "enable_search" not in sent and "search_options" not in sent


@pytest.mark.skipif(not PYTHON.exists(), reason="anthropic SDK not installed (.tools/anthropic-venv)")
def test_anthropic_web_search_tool_whole_and_streamed(kgw, emu):
    params = {"model": "qwen-max", "max_tokens": 256, "messages": QUESTION, "tools": [WEB_SEARCH]}
    forced = {**params, "tool_choice": {"type": "tool", "name": "web_search"}}
    coder = {**params, "model": "qwen3-coder-plus"}
    out = sdk(kgw, "calls", {"calls": [{"op": "create", "params": params}, {"op": "stream", "params": forced},
                                       {"op": "create", "params": coder},
                                       {"op": "create", "params": {**forced, "model": "qwen3-coder-plus"}}]})
    whole, streamed, offered, refused = out["result"]
    (block,) = whole["answer"]["content"]
    assert block["text"] == TEXT
    assert [c["type"] for c in block["citations"]] == ["web_search_result_location"] * 2
    assert block["citations"][0]["url"].startswith("https://example.com/1")
    assert whole["answer"]["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}
    message = streamed["answer"]["message"]
    assert [c["url"] for c in message["content"][0]["citations"]] == [c["url"] for c in block["citations"]]
    assert message["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}
    assert "content_block_delta:citations_delta" in streamed["answer"]["events"]
    assert "citations" not in offered["answer"]["content"][0]  # offered on a coder model: dropped, answered
    assert refused["raised"]["status"] == 400 and "qwen3-coder-plus cannot search" in refused["raised"]["message"]
    sent = [r["body"] for r in emu.chat_requests()]
    assert [b.get("enable_search") for b in sent] == [True, True, None]
    assert "forced_search" not in sent[0]["search_options"] and sent[1]["search_options"]["forced_search"] is True
