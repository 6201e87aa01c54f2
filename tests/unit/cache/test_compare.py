"""The cache doctor's analysis: a chat request's prefix as block fingerprints, the first change between two
turns and its kind (one test per cause), and whether a turn read less than the turn it continues left."""

from __future__ import annotations

import copy

from qwen_gateway.cache.compare import CAUSES, Turn, closest, common, diagnose, first_change
from qwen_gateway.cache.prints_forms import of_chat, places

TOOLS = [{"type": "function", "function": {"name": n, "description": f"does {n}",
                                           "parameters": {"type": "object", "properties": {}}}}
         for n in ("Read", "Edit", "Bash")]
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def chat(**changes) -> dict:
    body = {"model": "qwen3-coder-plus", "tools": copy.deepcopy(TOOLS), "messages": [
        {"role": "system", "content": [{"type": "text", "text": "You are an agent."},
                                       {"type": "text", "text": "Today is 2026-11-25."}]},
        {"role": "user", "content": [{"type": "text", "text": "look at this"}, IMAGE]},
        {"role": "assistant", "content": "ok", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "Read", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "file text"},
        {"role": "user", "content": "next"},
    ]}
    body.update(changes)
    return body


def fingerprint(body: dict) -> Turn:
    return Turn(of_chat(body), at=0.0)


def change(was: dict, now: dict):
    return first_change(fingerprint(was), fingerprint(now), places(now))


def test_a_conversation_that_only_grows_has_no_change():
    was = chat()
    now = chat()
    now["messages"] += [{"role": "assistant", "content": "done"}, {"role": "user", "content": "more"}]
    assert change(was, now) is None
    assert change(was, chat()) is None


def test_cache_markers_are_no_part_of_the_prefix():
    now = chat()
    now["messages"][1]["content"][0]["cache_control"] = {"type": "ephemeral"}
    now["tools"][2]["cache_control"] = {"type": "ephemeral"}
    assert change(chat(), now) is None


def test_the_model():
    c = change(chat(), chat(model="qwen3-coder-flash"))
    assert (c.cause, c.index, c.where) == ("model", 0, "model")


def test_system_text_names_the_part_that_changed():
    now = chat()
    now["messages"][0]["content"][1]["text"] = "Today is 2026-11-26."
    c = change(chat(), now)
    assert (c.cause, c.where) == ("system", "messages[0].content[1]")
    assert c.was != c.now


def test_a_system_string_is_one_block():
    was, now = chat(), chat()
    was["messages"][0]["content"] = "You are an agent."
    now["messages"][0]["content"] = "You are an agent!"
    assert (change(was, now).cause, change(was, now).where) == ("system", "messages[0]")


def test_tools_reordered():
    c = change(chat(), chat(tools=[TOOLS[1], TOOLS[0], TOOLS[2]]))
    assert (c.cause, c.where) == ("tool_order", "tools[0] Edit")


def test_a_tool_definition_changed_added_or_removed():
    edited = copy.deepcopy(TOOLS)
    edited[2]["function"]["description"] = "runs a command"
    assert (change(chat(), chat(tools=edited)).cause, change(chat(), chat(tools=edited)).where) == ("tool", "tools[2] Bash")
    assert change(chat(), chat(tools=TOOLS[:2])).cause == "tool"
    assert change(chat(tools=TOOLS[:2]), chat()).cause == "tool"


def test_an_earlier_message_edited():
    now = chat()
    now["messages"][3]["content"] = "file text, shortened"
    c = change(chat(), now)
    assert (c.cause, c.where) == ("edited", "messages[3] tool")


def test_a_tool_call_id_or_arguments_changed_is_an_edit():
    now = chat()
    now["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{"path": "a"}'
    assert change(chat(), now).cause == "edited"


def test_a_system_message_mid_conversation():
    now = chat()
    now["messages"].insert(3, {"role": "system", "content": "The user switched to plan mode."})
    c = change(chat(), now)
    assert (c.cause, c.where) == ("mid_system", "messages[3] system")


def test_an_image_re_encoded():
    now = chat()
    now["messages"][1]["content"][1] = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAB"}}
    c = change(chat(), now)
    assert (c.cause, c.where) == ("image", "messages[1] user")


def test_text_next_to_an_image_edited_is_an_edit():
    now = chat()
    now["messages"][1]["content"][0]["text"] = "look at that"
    assert change(chat(), now).cause == "edited"


def seen(turn, body, prompt, cached, at=1000.0, account="a", written=0):
    out = Turn(of_chat(body), at=at, account=account)
    out.turn, out.prompt, out.cached, out.written, out.explicit = turn, prompt, cached, written, bool(written)
    return out


def test_a_first_turn_is_no_miss():
    v = diagnose(None, seen(1, chat(), 3000, 0))
    assert (v.turn, v.against, v.missed, v.lost, v.cause) == (1, None, 3000, 0, None)


def test_a_growing_conversation_that_reads_the_cache_is_no_miss():
    grown = chat()
    grown["messages"].append({"role": "user", "content": "again"})
    v = diagnose(seen(1, chat(), 3000, 0), seen(2, grown, 3200, 2900))
    assert (v.cause, v.lost, v.missed, v.against) == (None, 0, 300, 1)


def test_a_changed_prefix_that_missed_more_names_the_change():
    now = chat(tools=[TOOLS[2], TOOLS[0], TOOLS[1]])
    v = diagnose(seen(3, chat(), 3000, 2800), seen(4, now, 3200, 100), change(chat(), now))
    assert (v.cause, v.lost, v.missed, v.change.where) == ("tool_order", 2900, 3100, "tools[0] Bash")


def test_a_changed_prefix_that_missed_no_more_is_no_miss():
    now = chat(tools=[TOOLS[2], TOOLS[0], TOOLS[1]])
    v = diagnose(seen(1, chat(), 3000, 0), seen(2, now, 3000, 0))
    assert v.cause is None and v.change is not None and v.change.cause == "tool_order"


def test_no_change_in_the_prefix_another_account_the_expiry_or_unexplained():
    was = seen(1, chat(), 3000, 2000, at=1000.0)
    assert diagnose(was, seen(2, chat(), 3100, 0, at=1010.0, account="b")).cause == "account"
    assert diagnose(was, seen(2, chat(), 3100, 0, at=1301.0)).cause == "expiry"
    assert diagnose(was, seen(2, chat(), 3100, 0, at=1299.0)).cause == "unexplained"


def test_the_turn_it_continues_is_the_closest_not_a_side_request():
    side = chat(model="qwen3-coder-flash", tools=[], messages=[{"role": "user", "content": "a title please"}])
    grown = chat()
    grown["messages"].append({"role": "user", "content": "again"})
    turns = [seen(1, chat(), 3000, 0), seen(2, side, 20, 0)]
    assert closest(turns, fingerprint(grown)).turn == 1
    assert closest(turns[1:], fingerprint(grown)) is None  # a side request is continued by nothing
    assert closest([], fingerprint(grown)) is None


def test_an_edit_of_the_first_user_message_continues_the_conversation_and_is_named():
    """Claude Code puts its session context (CLAUDE.md) in the first user message: an edit there keeps the model,
    system and tools, so the conversation's previous turn is compared all the same (issue 71)."""
    edited = chat()
    edited["messages"][1] = {"role": "user", "content": [{"type": "text", "text": "look at THIS"}, IMAGE]}
    was = seen(1, chat(), 3000, 2800)
    now = seen(2, edited, 3000, 300)
    assert closest([was], now) is was
    verdict = diagnose(was, now)
    assert verdict.cause == "edited" and verdict.change.index == now.print.first_message
    assert first_change(was, now, places(edited)).where == "messages[1] user"
    side = chat(tools=[], messages=[{"role": "user", "content": "a title please"}])  # its own opening: no edit
    assert closest([was], fingerprint(side)) is None


def test_places_match_the_blocks():
    body = chat()
    assert len(places(body)) == fingerprint(body).blocks
    assert places(body)[:4] == ["model", "messages[0].content[0]", "messages[0].content[1]", "tools[0] Read"]
    assert places(body)[-1] == "messages[4] user"
    assert first_change(fingerprint(chat()), fingerprint(chat(model="x"))).where == "block 0"


def test_every_cause_is_described():
    assert set(CAUSES) >= {"model", "route", "system", "tool_order", "tool", "edited", "mid_system", "image",
                           "account", "expiry", "unexplained"}


def test_the_first_difference_is_found_at_every_position_of_a_long_prefix():
    base = chat()
    base["messages"] += [{"role": "user", "content": f"m{i}"} for i in range(300)]
    n = fingerprint(base).blocks
    for at in (6, 7, 100, 255, 256, n - 1):
        other = copy.deepcopy(base)
        other["messages"][at - 5]["content"] = "changed"  # blocks: model, 2 system parts, 3 tools, messages[1:]
        assert common(fingerprint(base).raw, fingerprint(other).raw) == at, at
    assert common(fingerprint(base).raw, fingerprint(base).raw) == n


def test_qwen_goes_on_from_the_latest_prefix_it_stored_before_the_change():
    from qwen_gateway.cache.compare import resumes_at
    marked = chat(messages=[{"role": "system", "content": [
        {"type": "text", "text": "You are an agent. " * 400, "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "two", "cache_control": {"type": "ephemeral"}}]}])
    was = seen(1, marked, 3000, 0, written=3000)
    assert was.marks == (1, was.blocks - 1)  # the system part and the newest message
    added = copy.deepcopy(marked)
    added["tools"].append({"type": "function", "function": {"name": "Grep", "parameters": {}}})
    now = fingerprint(added)
    change = first_change(was, now).index
    assert now.print.kinds[change] == "T" and resumes_at(was, now, change) == 2  # after the system: every tool again
    unmarked = fingerprint(chat())
    assert resumes_at(was, unmarked, 3) is None  # no marker: the implicit cache reads up to the change
    assert resumes_at(seen(1, chat(), 3000, 0), now, change) == 0  # nothing stored explicitly: nothing read


def _turns(blocks: int, last_marked: bool = True) -> dict:
    """A conversation whose system prompt and first message are marked, the turn before's newest message marked
    (`last_marked`) and a new message of `blocks` text parts, its last marked."""
    mark = {"cache_control": {"type": "ephemeral"}}
    parts = [{"type": "text", "text": f"part {k} " * 30} for k in range(blocks)]
    parts[-1] = {**parts[-1], **mark}
    return chat(messages=[
        {"role": "system", "content": [{"type": "text", "text": "You are an agent. " * 400, **mark}]},
        {"role": "user", "content": [{"type": "text", "text": "one " * 1500, **mark}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "two " * 1500, **(mark if last_marked else {})}]},
        {"role": "assistant", "content": "ok"}, {"role": "user", "content": parts}])


def test_a_new_message_past_qwens_lookback_is_named_the_lookback():
    """A message of 25 parts: its marker is 26 content blocks past the prefix the turn before stored (Qwen looks
    back 20), so Qwen reads only the first message's; 19 parts, it reads the turn before's (issue 81)."""
    before = _turns(1)
    before["messages"] = before["messages"][:4]  # the turn before: its newest message marked, stored
    was = seen(2, before, 4000, 2000, written=2000)
    past = Turn(of_chat(_turns(25, last_marked=False)), at=1010.0, account="a")
    past.turn, past.prompt, past.cached, past.written, past.explicit = 3, 5000, 2500, 2500, True
    verdict = diagnose(was, past)
    assert (verdict.cause, verdict.lost) == ("lookback", 1500) and "20 blocks" in CAUSES["lookback"]
    near = Turn(of_chat(_turns(19, last_marked=False)), at=1010.0, account="a")
    near.turn, near.prompt, near.cached, near.written, near.explicit = 3, 4700, 2500, 2200, True
    assert diagnose(was, near).cause == "unexplained"  # within reach: Qwen's own doing


def test_read_all_is_diagnose_naming_no_cause_for_a_turn_that_grew():
    """The doctor's common turn (it grew from the newest kept one) is told by read_all, no Verdict made: what
    diagnose(..., grown=True) says, over both caches, reads above, at and below what the turn before left."""
    from itertools import product

    from qwen_gateway.cache.compare import read_all

    body = {"model": "m", "messages": [{"role": "user", "content": "hi " * 400}]}
    grown = {**body, "messages": body["messages"] + [{"role": "assistant", "content": "ok"},
                                                     {"role": "user", "content": "more"}]}
    for explicit, cached, written, now_cached, prompt, account, at in product(
            (False, True), (0, 500, 1000), (0, 400), (0, 480, 500, 1000, 1600), (1000, 1500), ("a", "b"), (1.0, 999.0)):
        was, now = Turn(of_chat(body), 0.0, "a"), Turn(of_chat(grown), at, account)
        was.prompt, was.cached, was.written, was.explicit = 1000, cached, written, explicit
        now.prompt, now.cached, now.written, now.explicit = prompt, now_cached, 0, explicit
        assert read_all(was, now) == (diagnose(was, now, grown=True).cause is None)
