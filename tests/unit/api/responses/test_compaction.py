"""Compaction (api/responses/compaction.py): the summarisation call's transcript and request, and the sealed
item that stands for the summary."""

from __future__ import annotations

from qwen_gateway.api.responses.compaction import COMPACTION_PROMPT, TRANSCRIPT_CUTS, compaction_chat, compaction_item, transcript


def test_compaction_transcript_keeps_user_words_and_cuts_long_outputs():
    long = "\n".join(str(i) for i in range(5000))
    text = transcript([{"role": "system", "content": "SYSTEM PROMPT"}, {"role": "user", "content": "u" * 9000},
                       {"role": "assistant", "content": None, "tool_calls": [
                           {"id": "c1", "function": {"name": "exec", "arguments": "{}"}}]},
                       {"role": "tool", "tool_call_id": "c1", "content": long}])
    assert "SYSTEM PROMPT" not in text and "u" * 9000 in text
    assert "0\n1\n2" in text and "4998\n4999" in text and "\n2500\n" not in text and "characters left out" in text


def test_the_transcript_labels_each_turn_and_each_call():
    text = transcript([{"role": "developer", "content": "rules"},
                       {"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image_url"}]},
                       {"role": "assistant", "content": "ok", "tool_calls": [
                           {"id": "c1", "function": {"name": "ls", "arguments": "{}"}}]},
                       {"role": "tool", "tool_call_id": "c1", "content": "a.txt"}])
    assert text == "[user]\nsee\n[image]\n\n[assistant]\nok\n\n[assistant called ls (c1)]\n{}\n\n[tool result c1]\na.txt"


def test_a_long_answer_keeps_its_beginning_and_end():
    head, tail = TRANSCRIPT_CUTS["assistant"]
    answer = "h" * head + "m" * 5000 + "t" * tail
    text = transcript([{"role": "assistant", "content": answer}])
    assert text == f"[assistant]\n{'h' * head}\n[… 5,000 characters left out …]\n{'t' * tail}"


def test_a_piece_just_over_its_cuts_is_kept_whole():
    # cutting it would save less than the marker costs
    head, tail = TRANSCRIPT_CUTS["tool"]
    result = "x" * (head + tail + 200)
    assert transcript([{"role": "tool", "tool_call_id": "c", "content": result}]).endswith(result)


def test_the_summarisation_call_has_no_tools_and_keeps_the_session_key():
    chat = compaction_chat({"model": "m", "stream": True, "prompt_cache_key": "k", "tools": [{"type": "function"}]},
                           [{"role": "user", "content": "build it"}])
    assert chat["model"] == "m" and chat["stream"] is True and chat["prompt_cache_key"] == "k" and "tools" not in chat
    system, prompt = chat["messages"]
    assert system == {"role": "system", "content": COMPACTION_PROMPT}
    assert prompt == {"role": "user", "content": "The conversation to summarise:\n\n[user]\nbuild it"
                                                 "\n\nWrite the handoff summary now."}


def test_the_compaction_item_seals_the_summary_with_its_model():
    item = compaction_item("did x", lambda kind, payload: f"{kind}:{payload['summary']}:{payload['model']}", "m")
    assert item["type"] == "compaction" and item["id"].startswith("cmp_")
    assert item["encrypted_content"] == "compaction:did x:m"
