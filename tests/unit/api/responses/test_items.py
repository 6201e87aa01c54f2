"""The Responses translation as pure functions: every input item type of the 2026 spec, tools from
`additional_tools` / namespaces / freeform (custom) tools / tool_search, sealed reasoning and compaction,
images in tool outputs, and the stream translator's tool-call streaming."""

from __future__ import annotations

import json
import os
import stat

import pytest

from helpers.openai_schema import DOC, validate_stream_event
from qwen_gateway.upstream.dashscope.stream import ChunkNormalizer
from qwen_gateway.errors import GatewayError
from qwen_gateway.api.responses.compaction import COMPACTION_PROMPT, SUMMARY_PREFIX
from qwen_gateway.api.responses.history import history_items, input_items
from qwen_gateway.api.responses.items import custom_input
from qwen_gateway.api.responses.output import chat_to_response
from qwen_gateway.api.responses.request import translate
from qwen_gateway.api.responses.tools import ToolRef
from qwen_gateway.api.responses.stream import ResponsesStreamTranslator
from qwen_gateway.seal import KEY_FILE, Sealer, load_key
from qwen_gateway.sse import DONE, SSEDecoder, encode
from qwen_gateway.turn.stream_rewriter import StreamRewriter

FN = {"type": "function", "name": "exec_command", "description": "Run a command",
      "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}
GRAMMAR = "start: begin_patch hunk+ end_patch\nbegin_patch: \"*** Begin Patch\" LF\n"
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files. FREEFORM.",
               "format": {"type": "grammar", "syntax": "lark", "definition": GRAMMAR}}
NAMESPACE = {"type": "namespace", "name": "clock", "description": "Time tools", "tools": [
    {"type": "function", "name": "sleep", "parameters": {"type": "object", "properties": {}}}]}
FUNCTIONS_NS = {"type": "namespace", "name": "functions", "description": "", "tools": [
    {"type": "custom", "name": "exec", "description": "Run JavaScript", "format": {"type": "text"}},
    {"type": "function", "name": "wait", "parameters": {"type": "object", "properties": {}}}]}
TOOL_SEARCH = {"type": "tool_search", "execution": "client", "description": "Find deferred tools",
               "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}
IMG = "data:image/png;base64,iVBORw0KGgo="


def user(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def names(chat: dict) -> list[str]:
    return [t["function"]["name"] for t in chat.get("tools") or []]


@pytest.fixture
def sealer(tmp_path) -> Sealer:
    return Sealer(tmp_path / "state")


# ---- sealing ---------------------------------------------------------------------------------------------


def test_seal_round_trip_and_refusals(sealer, tmp_path):
    token = sealer.seal("reasoning", {"text": "secret thoughts"})
    assert "secret" not in token and token.startswith("qgw1.")
    assert sealer.open("reasoning", token) == {"text": "secret thoughts"}
    assert sealer.open("compaction", token) is None  # another kind: the kind is bound to the ciphertext
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    assert sealer.open("reasoning", flipped) is None  # tampered
    assert sealer.open("reasoning", "gAAAA-foreign-content") is None
    assert sealer.open("reasoning", None) is None and sealer.open("reasoning", "qgw1.!!") is None
    other = Sealer(tmp_path / "elsewhere")
    assert other.open("reasoning", token) is None  # another gateway's key


def test_seal_key_is_private_shared_and_atomic(tmp_path):
    folder = tmp_path / "state"
    a, b = Sealer(folder), Sealer(folder)
    token = a.seal("compaction", {"summary": "s"})
    assert b.open("compaction", token) == {"summary": "s"}  # same folder, same key
    mode = stat.S_IMODE(os.stat(folder / KEY_FILE).st_mode)
    assert mode == 0o600
    assert [p.name for p in folder.iterdir()] == [KEY_FILE]  # no temporary file left behind
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / KEY_FILE).write_text("short")
    with pytest.raises(ValueError):
        load_key(tmp_path / "bad")


# ---- every item type of the spec ---------------------------------------------------------------------


def spec_item_types() -> set[str]:
    """The `type` of every input item the extracted OpenAI spec defines (InputItem and its Item union)."""
    schemas = DOC["components"]["schemas"]
    out: set[str] = set()

    def visit(name: str) -> None:
        schema = schemas[name]
        for option in schema.get("oneOf") or schema.get("anyOf") or []:
            ref = option.get("$ref")
            if ref:
                visit(ref.rsplit("/", 1)[1])
        t = (schema.get("properties") or {}).get("type") or {}
        for alt in [t, *(t.get("anyOf") or [])]:
            out.update(v for v in alt.get("enum") or [] if v)

    visit("InputItem")
    return out


MINIMAL = {
    "message": user("hi"),
    "function_call": {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"},
    "function_call_output": {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    "custom_tool_call": {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin"},
    "custom_tool_call_output": {"type": "custom_tool_call_output", "call_id": "c2", "output": "done"},
    "tool_search_call": {"type": "tool_search_call", "call_id": "c3", "arguments": {"query": "x"}},
    "tool_search_output": {"type": "tool_search_output", "call_id": "c3", "tools": [FN]},
    "additional_tools": {"type": "additional_tools", "role": "developer", "tools": [FN]},
    "reasoning": {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "t"}]},
    "compaction": {"type": "compaction", "encrypted_content": "foreign"},
    "compaction_trigger": {"type": "compaction_trigger"},
    "item_reference": {"type": "item_reference", "id": "msg_unknown"},
    "program": {"type": "program", "id": "p1", "call_id": "c4", "code": "1", "fingerprint": "f"},
    "program_output": {"type": "program_output", "id": "p2", "call_id": "c4", "result": "1", "status": "completed"},
    "file_search_call": {"type": "file_search_call", "id": "fs1", "queries": ["q"], "status": "completed"},
    "computer_call": {"type": "computer_call", "id": "cc1", "call_id": "c5", "action": {"type": "click"},
                      "pending_safety_checks": [], "status": "completed"},
    "computer_call_output": {"type": "computer_call_output", "call_id": "c5",
                             "output": {"type": "computer_screenshot", "image_url": IMG}},
    "web_search_call": {"type": "web_search_call", "id": "ws1", "action": {"type": "search", "query": "q"},
                        "status": "completed"},
    "image_generation_call": {"type": "image_generation_call", "id": "ig1", "result": None, "status": "completed"},
    "code_interpreter_call": {"type": "code_interpreter_call", "id": "ci1", "code": "1", "container_id": "c",
                              "outputs": [], "status": "completed"},
    "local_shell_call": {"type": "local_shell_call", "id": "ls1", "call_id": "c6", "status": "completed",
                         "action": {"type": "exec", "command": ["ls"], "env": {}}},
    "local_shell_call_output": {"type": "local_shell_call_output", "id": "ls1", "call_id": "c6", "output": "a.txt"},
    "shell_call": {"type": "shell_call", "call_id": "c7", "action": {"commands": ["ls"]}},
    "shell_call_output": {"type": "shell_call_output", "call_id": "c7",
                          "output": [{"stdout": "a.txt\n", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}]},
    "apply_patch_call": {"type": "apply_patch_call", "call_id": "c8", "status": "completed",
                         "operation": {"type": "create_file", "path": "a.txt", "diff": "+hi"}},
    "apply_patch_call_output": {"type": "apply_patch_call_output", "call_id": "c8", "status": "completed",
                                "output": "created a.txt"},
    "mcp_list_tools": {"type": "mcp_list_tools", "id": "ml1", "server_label": "s", "tools": []},
    "mcp_approval_request": {"type": "mcp_approval_request", "id": "ma1", "server_label": "s", "name": "n",
                             "arguments": "{}"},
    "mcp_approval_response": {"type": "mcp_approval_response", "approval_request_id": "ma1", "approve": True},
    "mcp_call": {"type": "mcp_call", "id": "mc1", "server_label": "s", "name": "lookup", "arguments": "{}",
                 "output": "found"},
}


ANSWERS = {"function_call_output": "function_call", "custom_tool_call_output": "custom_tool_call"}  # output: call


def test_every_input_item_type_the_spec_defines_is_handled_never_a_400(sealer):
    types = spec_item_types()
    assert types <= set(MINIMAL), f"item types without a test example: {sorted(types - set(MINIMAL))}"
    for kind in sorted(types):
        notes: list[str] = []
        call = [MINIMAL[ANSWERS[kind]]] if kind in ANSWERS else []  # an output answers a call (OpenAI's 400 else)
        body = {"model": "gpt-5", "tools": [FN, APPLY_PATCH],
                "input": [user("start"), *call, MINIMAL[kind],
                          *([user("go on")] if kind != "compaction_trigger" else [])]}
        t = translate(body, notes=notes, open_sealed=sealer.open, lookup=lambda _id: None)
        json.dumps(t.chat)
        assert t.chat["messages"], kind


def test_dropped_items_leave_a_note():
    notes: list[str] = []
    translate({"model": "m", "input": [MINIMAL["web_search_call"], MINIMAL["program"], user("x")]}, notes=notes)
    assert any("web_search_call" in n for n in notes) and any("program" in n for n in notes)


# ---- tools ---------------------------------------------------------------------------------------------


def test_calls_map_back_to_the_items_the_client_offered():
    t = translate({"model": "m", "tools": [FN, APPLY_PATCH, NAMESPACE, TOOL_SEARCH], "input": "x"})
    calls = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'}},
        {"id": "c2", "function": {"name": "apply_patch", "arguments": json.dumps({"input": "*** Begin Patch\n"})}},
        {"id": "c3", "function": {"name": "clock__sleep", "arguments": "{}"}},
        {"id": "c4", "function": {"name": "tool_search", "arguments": '{"query":"git"}'}}]}
    chat = {"choices": [{"finish_reason": "tool_calls", "message": calls}]}
    r = chat_to_response(chat, {"model": "m"}, response_id="resp_1", created_at=1, tools=t.tools)
    fc, ct, ns, ts = r["output"]
    assert fc["type"] == "function_call" and fc["name"] == "exec_command" and "namespace" not in fc
    assert ct == {**ct, "type": "custom_tool_call", "name": "apply_patch", "input": "*** Begin Patch\n",
                  "call_id": "c2"}
    assert ns["type"] == "function_call" and ns["name"] == "sleep" and ns["namespace"] == "clock"
    assert ts["type"] == "tool_search_call" and ts["arguments"] == {"query": "git"} and ts["execution"] == "client"


@pytest.mark.parametrize("args,text", [('{"input": "a\\nb"}', "a\nb"), ('{"patch": "x"}', "x"), ('"raw"', "raw"),
                                       ("not json", "not json"), ('{"input": 1, "b": 2}', '{"input": 1, "b": 2}')])
def test_custom_input_out_of_what_qwen_wrote(args, text):
    assert custom_input(args) == text


# ---- history items -----------------------------------------------------------------------------------------


def test_custom_and_builtin_tool_history_become_tool_calls_and_tool_messages():
    body = {"model": "m", "tools": [APPLY_PATCH], "input": [
        user("fix it"),
        {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch\n"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "Success"},
        MINIMAL["shell_call"], MINIMAL["shell_call_output"],
        MINIMAL["apply_patch_call"], MINIMAL["apply_patch_call_output"],
        MINIMAL["local_shell_call"], MINIMAL["local_shell_call_output"]]}
    msgs = translate(body).chat["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant", "tool", "assistant", "tool",
                                         "assistant", "tool"]
    call = msgs[1]["tool_calls"][0]
    assert call["function"] == {"name": "apply_patch", "arguments": json.dumps({"input": "*** Begin Patch\n"})}
    assert msgs[2] == {"role": "tool", "tool_call_id": "c1", "content": "Success"}
    assert msgs[3]["tool_calls"][0]["function"]["name"] == "shell" and "a.txt" in msgs[4]["content"]
    assert "exit 0" in msgs[4]["content"]
    assert json.loads(msgs[5]["tool_calls"][0]["function"]["arguments"])["path"] == "a.txt"
    assert msgs[6]["content"] == "created a.txt" and msgs[8]["content"] == "a.txt"


def test_tool_search_round_trip_loads_its_tools():
    body = {"model": "m", "tools": [TOOL_SEARCH], "input": [
        user("find git tools"), {"type": "tool_search_call", "call_id": "s1", "execution": "client",
                                 "arguments": {"query": "git"}},
        {"type": "tool_search_output", "call_id": "s1", "execution": "client", "tools": [
            {"type": "function", "name": "git_log", "parameters": {"type": "object", "properties": {}}}]}]}
    t = translate(body)
    assert names(t.chat) == ["tool_search", "git_log"]
    msgs = t.chat["messages"]
    assert msgs[1]["tool_calls"][0]["function"] == {"name": "tool_search", "arguments": '{"query": "git"}'}
    assert msgs[2]["role"] == "tool" and "git_log" in msgs[2]["content"]


def test_namespaced_and_metadata_carrying_history():
    notes: list[str] = []
    body = {"model": "m", "input": [
        {**user("hi"), "internal_chat_message_metadata_passthrough": {"turn_id": "t"}},
        {"type": "function_call", "call_id": "c1", "name": "sleep", "namespace": "clock", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "slept"}]}
    msgs = translate(body, notes=notes).chat["messages"]
    assert msgs[0] == {"role": "user", "content": "hi"}
    assert msgs[1]["tool_calls"][0]["function"]["name"] == "clock__sleep"
    assert any("internal_chat_message_metadata_passthrough" in n for n in notes)


def test_configuration_update_applies_its_reasoning_effort():
    notes: list[str] = []
    t = translate({"model": "m", "reasoning": {"effort": "high"}, "input": [
        user("x"), {"type": "configuration_update", "reasoning": {"effort": "low"}}]}, notes=notes)
    assert t.chat["reasoning_effort"] == "low" and any("low" in n for n in notes)
    assert [m["role"] for m in t.chat["messages"]] == ["user"]


def test_item_reference_resolves_stored_items():
    stored = {"msg_1": {"type": "message", "id": "msg_1", "role": "assistant",
                        "content": [{"type": "output_text", "text": "earlier answer"}]}}
    notes: list[str] = []
    t = translate({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}, {"id": "msg_gone", "type": None},
                                           user("and now?")]}, notes=notes, lookup=stored.get)
    assert [m["content"] for m in t.chat["messages"]] == ["earlier answer", "and now?"]
    assert any("msg_gone" in n for n in notes)


def test_images_in_tool_outputs_reach_the_vision_model_after_the_tool_messages():
    out = [{"type": "input_text", "text": "screenshot:"}, {"type": "input_image", "image_url": IMG}]
    body = {"model": "m", "input": [
        user("look"),
        {"type": "function_call", "call_id": "a", "name": "view_image", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "view_image", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": out},
        {"type": "custom_tool_call_output", "call_id": "b", "output": [{"type": "input_image", "image_url": IMG}]}]}
    msgs = translate(body).chat["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "tool", "user"]
    assert msgs[2]["content"] == "screenshot:" and "base64" not in json.dumps(msgs[2:4])
    images = [p for p in msgs[4]["content"] if p["type"] == "image_url"]
    assert [p["image_url"]["url"] for p in images] == [IMG, IMG]


# ---- sealed reasoning and compaction ---------------------------------------------------------------------


def test_sealed_reasoning_comes_back_and_foreign_is_dropped(sealer):
    include = ["reasoning.encrypted_content"]
    chat = {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": "answer",
                                                              "reasoning_content": "because"}}]}
    r = chat_to_response(chat, {"model": "m", "include": include}, response_id="resp_1", created_at=1,
                         seal=sealer.seal)
    rs, msg = r["output"]
    assert rs["encrypted_content"] and "because" not in rs["encrypted_content"]
    plain = chat_to_response(chat, {"model": "m"}, response_id="resp_2", created_at=1, seal=sealer.seal)
    assert "encrypted_content" not in plain["output"][0]
    body = {"model": "m", "include": include, "store": False, "input": [user("q"), rs, msg, user("more")]}
    msgs = translate(body, open_sealed=sealer.open).chat["messages"]
    assert msgs[1] == {"role": "assistant", "content": "answer", "reasoning_content": "because"}
    notes: list[str] = []
    foreign = {**rs, "encrypted_content": "gAAAAB-from-openai"}
    msgs = translate({**body, "input": [user("q"), foreign, msg]}, notes=notes, open_sealed=sealer.open).chat[
        "messages"]
    assert "reasoning_content" not in msgs[1] and any("did not seal" in n for n in notes)
    # issue 31: `include` governs what the answer carries, not what the client sends back: used without it
    notes = []
    msgs = translate({**body, "include": []}, notes=notes, open_sealed=sealer.open).chat["messages"]
    assert msgs[1] == {"role": "assistant", "content": "answer", "reasoning_content": "because"} and not notes


def test_reasoning_before_a_tool_call_goes_with_it(sealer):
    rs = {"type": "reasoning", "id": "rs_1", "summary": [],
          "encrypted_content": sealer.seal("reasoning", {"text": "plan"})}
    body = {"model": "m", "include": ["reasoning.encrypted_content"], "input": [
        user("q"), rs, {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "r"}]}
    msgs = translate(body, open_sealed=sealer.open).chat["messages"]
    assert msgs[1]["reasoning_content"] == "plan" and msgs[1]["tool_calls"]


def test_compaction_trigger_is_one_summarisation_call_and_its_item_comes_back(sealer):
    body = {"model": "gpt-5", "stream": True, "tools": [FN, APPLY_PATCH], "input": [
        {"type": "message", "role": "developer", "content": "be terse"}, user("build it"),
        {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": '{"cmd":"make"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "built ok"},
        {"type": "compaction_trigger"}]}
    t = translate(body)
    assert t.compaction and "tools" not in t.chat and t.chat["stream"] is True
    system, prompt = t.chat["messages"]
    assert system == {"role": "system", "content": COMPACTION_PROMPT}
    assert "build it" in prompt["content"] and "built ok" in prompt["content"] and "make" in prompt["content"]
    answer = {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": "We built it."}}],
              "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}
    r = chat_to_response(answer, body, response_id="resp_c", created_at=1, seal=sealer.seal, compaction=True)
    (item,) = r["output"]
    assert item["type"] == "compaction" and "built" not in item["encrypted_content"]
    for kind in ("compaction", "compaction_summary"):
        later = {"model": "gpt-5", "input": [user("build it"), {**item, "type": kind}, user("next")]}
        msgs = translate(later, open_sealed=sealer.open).chat["messages"]
        assert msgs[1] == {"role": "user", "content": SUMMARY_PREFIX + "We built it."}
    notes: list[str] = []
    msgs = translate({"model": "m", "input": [user("a"), {"type": "compaction", "encrypted_content": "x"}]},
                     notes=notes, open_sealed=sealer.open).chat["messages"]
    assert len(msgs) == 1 and any("compaction" in n for n in notes)
    with pytest.raises(GatewayError):  # no summary: never an empty compaction item
        chat_to_response({"choices": [{"message": {"content": ""}}]}, body, response_id="r", created_at=1,
                         seal=sealer.seal, compaction=True)


# ---- previous_response_id and stored inputs --------------------------------------------------------------


def test_chat_history_from_an_older_gateway_still_continues():
    msgs = translate({"model": "m", "input": "q2"}, chat_history=[{"role": "user", "content": "q1"},
                                                                  {"role": "assistant", "content": "a1"}]).chat
    assert [m["content"] for m in msgs["messages"]] == ["q1", "a1", "q2"]


def test_input_items_get_ids_and_lose_client_bookkeeping():
    items = input_items({"input": [{**user("a"), "internal_chat_message_metadata_passthrough": {}},
                                   {"role": "user", "content": "b"}, MINIMAL["function_call_output"]]})
    assert all(i["id"] for i in items) and items[1]["type"] == "message"
    assert items[1]["content"] == [{"type": "input_text", "text": "b"}]
    assert "internal_chat_message_metadata_passthrough" not in items[0]
    assert input_items({"input": "plain"})[0]["content"][0]["text"] == "plain"


# ---- the stream translator ----------------------------------------------------------------------------------


def chunk(delta=None, finish=None, usage=None, choices=True):
    c = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "coder-model", "usage": usage}
    c["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []
    return c


def call_frag(args: str, *, first: bool = False, name: str = "exec_command", index: int = 0, cid: str = "call_1"):
    tc = {"index": index, "function": {"arguments": args}}
    if first:
        tc.update(id=cid, type="function")
        tc["function"]["name"] = name
    return chunk({"tool_calls": [tc]})


def stream(chunks: list[dict], request: dict | None = None, tools=None, seal=None, compaction=False) -> list[dict]:
    t = ResponsesStreamTranslator(request or {"model": "m"}, response_id="resp_1", created_at=1, tools=tools,
                                  seal=seal, compaction=compaction)
    rw = StreamRewriter(ChunkNormalizer("m"), t)
    raw = b"".join(b"".join(rw(encode(c))) for c in chunks) + b"".join(rw(DONE)) + b"".join(rw(b""))
    events = [json.loads(e.data) for e in SSEDecoder().feed(raw)]
    for e in events:
        validate_stream_event(e)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_function_call_arguments_stream_as_they_arrive():
    frags = ['{"cmd"', ': "ls', ' -la"}']
    t = ResponsesStreamTranslator({"model": "m"}, response_id="resp_1", created_at=1,
                                  tools={"exec_command": ToolRef("function", "exec_command")})
    rw = StreamRewriter(ChunkNormalizer("m"), t)
    first = [json.loads(e.data) for e in SSEDecoder().feed(b"".join(rw(encode(call_frag(frags[0], first=True)))))]
    kinds = [e["type"] for e in first]
    assert kinds[-2:] == ["response.output_item.added", "response.function_call_arguments.delta"]  # at once
    second = [json.loads(e.data) for e in SSEDecoder().feed(b"".join(rw(encode(call_frag(frags[1])))))]
    assert [e["type"] for e in second] == ["response.function_call_arguments.delta"]
    assert second[0]["delta"] == frags[1]


def test_streamed_call_events_are_valid_and_complete():
    events = stream([chunk({"role": "assistant", "content": ""}), call_frag('{"cmd": ', first=True),
                     call_frag('"ls"}'), call_frag('{"cmd": "pwd"}', first=True, index=1, cid="call_2"),
                     chunk({}, finish="tool_calls")], tools={"exec_command": ToolRef("function", "exec_command")})
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert deltas == ['{"cmd": ', '"ls"}', '{"cmd": "pwd"}']
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [(d["call_id"], d["arguments"]) for d in done] == [("call_1", '{"cmd": "ls"}'), ("call_2", '{"cmd": "pwd"}')]
    assert events[-1]["type"] == "response.completed" and len(events[-1]["response"]["output"]) == 2


def test_custom_tool_calls_stream_their_decoded_input():
    patch = '*** Begin Patch\n*** Add File: a.txt\n+héllo "quoted" 😀\n*** End Patch\n'
    args = json.dumps({"input": patch})
    cuts = [0, 3, 11, 12, 30, 31, 47, 52, 58, len(args)]
    frags = [args[a:b] for a, b in zip(cuts, cuts[1:])]
    chunks = [call_frag(frags[0], first=True, name="apply_patch")] + [call_frag(f) for f in frags[1:]]
    events = stream(chunks + [chunk({}, finish="tool_calls")], tools={"apply_patch": ToolRef("custom", "apply_patch")})
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["type"] == "custom_tool_call" and added["item"]["input"] == ""
    deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert len(deltas) > 2 and "".join(deltas) == patch
    done = next(e for e in events if e["type"] == "response.custom_tool_call_input.done")
    assert done["input"] == patch
    item = next(e for e in events if e["type"] == "response.output_item.done")["item"]
    assert item["type"] == "custom_tool_call" and item["input"] == patch and item["name"] == "apply_patch"


def test_namespaced_and_tool_search_calls_in_a_stream():
    tools = {"clock__sleep": ToolRef("function", "sleep", "clock"),
             "tool_search": ToolRef("tool_search", "tool_search")}
    events = stream([call_frag("{}", first=True, name="clock__sleep"),
                     call_frag('{"query": "git"}', first=True, name="tool_search", index=1, cid="call_2"),
                     chunk({}, finish="tool_calls")], tools=tools)
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done[0]["name"] == "sleep" and done[0]["namespace"] == "clock"
    assert done[1]["type"] == "tool_search_call" and done[1]["arguments"] == {"query": "git"}


def test_split_tool_name_waits_for_the_whole_name():
    head = chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "apply_"}}]})
    rest = chunk({"tool_calls": [{"index": 0, "function": {"name": "patch", "arguments": '{"input": "P"}'}}]})
    events = stream([head, rest, chunk({}, finish="tool_calls")],
                    tools={"apply_patch": ToolRef("custom", "apply_patch")})
    item = next(e for e in events if e["type"] == "response.output_item.done")["item"]
    assert item["type"] == "custom_tool_call" and item["input"] == "P"


def test_stream_compaction_is_one_sealed_item(sealer):
    events = stream([chunk({"reasoning_content": "thinking"}), chunk({"content": "Sum"}), chunk({"content": "mary."}),
                     chunk({}, finish="stop")], seal=sealer.seal, compaction=True)
    kinds = [e["type"] for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.output_item.done", "response.completed"]
    (item,) = events[-1]["response"]["output"]
    assert item["type"] == "compaction"
    assert sealer.open("compaction", item["encrypted_content"])["summary"] == "Summary."
    empty = stream([chunk({"content": " "}), chunk({}, finish="stop")], seal=sealer.seal, compaction=True)
    assert empty[-1]["type"] == "response.failed"


def test_stream_reasoning_is_sealed_when_asked(sealer):
    events = stream([chunk({"reasoning_content": "why"}), chunk({"content": "ok"}), chunk({}, finish="stop")],
                    request={"model": "m", "include": ["reasoning.encrypted_content"]}, seal=sealer.seal)
    rs = next(e["item"] for e in events if e["type"] == "response.output_item.done")
    assert sealer.open("reasoning", rs["encrypted_content"]) == {"text": "why"}


def test_context_overflow_fails_with_the_code_codex_acts_on():
    t = ResponsesStreamTranslator({"model": "m"}, response_id="resp_1", created_at=1)
    events = [json.loads(e.data) for e in SSEDecoder().feed(b"".join(t.fail(
        {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"})))]
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "context_length_exceeded"


# ---- compaction transcript, routes, the WebSocket's pieces ------------------------------------------------


def test_routes_for_the_responses_family():
    from qwen_gateway.components import endpoints
    from qwen_gateway.ingress.routing import route
    eps = endpoints(lambda: None)
    assert route("POST", "/v1/responses/compact", eps).name == "responses.compact"
    assert route("POST", "/v1/responses/input_tokens", eps).name == "input_tokens"
    assert route("POST", "/v1/responses/resp_1/cancel", eps).name == "stored_response"
    assert route("GET", "/v1/responses/resp_1/input_items", eps).name == "stored_response"
    assert route("GET", "/v1/responses", eps).name == "method_not_allowed"  # a WebSocket upgrade is served first
    assert route("PUT", "/v1/responses/resp_1", eps).name == "method_not_allowed"


def test_an_earlier_configuration_update_does_not_override_this_request():
    first = translate({"model": "m", "input": [user("a"), {"type": "configuration_update",
                                                           "reasoning": {"effort": "low"}}]})
    history = history_items(first.items, {"output": []})
    later = translate({"model": "m", "reasoning": {"effort": "high"}, "input": "b"}, history)
    assert later.chat["reasoning_effort"] == "high"


@pytest.mark.parametrize("summary", [None, "auto", "detailed"])
def test_reasoning_text_shows_only_when_a_summary_is_asked(sealer, summary):
    """Issue 31: without `reasoning.summary` OpenAI answers a reasoning item with `summary: []` (and no
    reasoning_summary events); the text still goes back to Qwen on the next turn (history, sealed content)."""
    request = {"model": "m", "include": ["reasoning.encrypted_content"],
               **({"reasoning": {"effort": "low", "summary": summary}} if summary else {})}
    chat = {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": "answer",
                                                              "reasoning_content": "because"}}]}
    rs = chat_to_response(chat, request, response_id="resp_1", created_at=1, seal=sealer.seal)["output"][0]
    assert rs["summary"] == ([{"type": "summary_text", "text": "because"}] if summary else [])
    assert sealer.open("reasoning", rs["encrypted_content"]) == {"text": "because"}
    t = ResponsesStreamTranslator(request, response_id="resp_2", created_at=1, seal=sealer.seal)
    chunks = [{"choices": [{"index": 0, "delta": {"reasoning_content": "bec"}, "finish_reason": None}]},
              {"choices": [{"index": 0, "delta": {"reasoning_content": "ause"}, "finish_reason": None}]},
              {"choices": [{"index": 0, "delta": {"content": "answer"}, "finish_reason": "stop"}]}]
    raw = b"".join(b for c in chunks for b in t.feed(c)) + b"".join(t.finish())
    events = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
    for e in events:
        validate_stream_event(e)
    summaries = [e for e in events if e["type"].startswith("response.reasoning_summary")]
    assert bool(summaries) is bool(summary)
    done = next(e["item"] for e in events if e["type"] == "response.output_item.done")
    assert done["type"] == "reasoning" and done["summary"] == rs["summary"]
    assert t.reasoning == {done["id"]: "because"}
    history = history_items([], t.response(), sealer.seal, reasoning=t.reasoning)
    assert sealer.open("reasoning", history[0]["encrypted_content"]) == {"text": "because"}
