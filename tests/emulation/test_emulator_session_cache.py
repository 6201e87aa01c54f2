"""Model Studio's session cache on the emulator's Responses API, after its "Context cache" page (2026-03, "Session
cache"): switched on by the header `x-dashscope-session-cache: enable` on the models that offer it, a continued
conversation (`previous_response_id`) reads its history from the cache, at least 1,024 tokens, five minutes reset
on each hit, creation and hits reported as for the explicit cache, and neither other mode while it is on."""

from __future__ import annotations

import pytest

from emulation.test_emulator import API_KEY, SEED, emulator_fixtures

pytestmark = pytest.mark.e2e  # starts emulator processes

PATH = "/compatible-mode/v1/responses"
MODEL = "qwen3-coder-plus"  # offers the session cache, never thinks
LONG = "Artificial intelligence is a branch of computer science that builds systems which reason. " * 50
ON = {"x-dashscope-session-cache": "enable"}

proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY, "--seed-token", SEED)


def tokens(text: str) -> int:
    return len(text) // 4 + 1  # the emulator's count (cache.tokens)


def turn(emu, text: str, previous: str | None = None, headers: dict | None = None, model: str = MODEL, **extra):
    body = {"model": model, "input": text, **extra}
    if previous:
        body["previous_response_id"] = previous
    r = emu.http.post(PATH, json=body, headers={"Authorization": f"Bearer {API_KEY}", **(headers or {})})
    assert r.status_code == 200, r.text
    return r.json()


def said(resp: dict) -> str:
    return resp["output"][0]["content"][0]["text"]


def details(resp: dict) -> dict:
    return resp["usage"]["x_details"][0]["prompt_tokens_details"]


def session(created: int, cached: int) -> dict:
    return {"cache_creation": {"ephemeral_5m_input_tokens": created}, "cache_creation_input_tokens": created,
            "cache_type": "ephemeral", "cached_tokens": cached}


def test_the_first_turn_creates_and_the_next_reads_the_history(emu):
    first = turn(emu, LONG + " Introduce random forests.", headers=ON)
    prompt = tokens(LONG + " Introduce random forests.")
    assert details(first) == session(prompt, 0) and first["usage"]["input_tokens_details"] == {"cached_tokens": 0}
    second = turn(emu, "How does it differ from GBDT?", first["id"], headers=ON)
    history = LONG + " Introduce random forests." + said(first)
    cached, prompt = tokens(history), tokens(history + "How does it differ from GBDT?")
    assert second["usage"]["input_tokens"] == prompt
    assert second["usage"]["input_tokens_details"] == {"cached_tokens": cached}
    assert details(second) == session(prompt - cached, cached)  # only the new part is created
    streamed = emu.http.post(PATH, headers={"Authorization": f"Bearer {API_KEY}", **ON}, json={
        "model": MODEL, "input": "How does it differ from GBDT?", "previous_response_id": first["id"], "stream": True})
    completed = streamed.text.rstrip().rsplit("\n", 1)[-1]
    assert completed.startswith("data:") and '"cached_tokens":%d' % cached in completed
    assert emu.admin("GET", "cache")["session"] >= 2


def test_a_conversation_under_1024_tokens_caches_nothing(emu):
    first = turn(emu, "short question", headers=ON)
    second = turn(emu, "and another", first["id"], headers=ON)
    assert details(first) == details(second) == session(0, 0)


def test_five_minutes_reset_on_each_hit(emu):
    first = turn(emu, LONG, headers=ON)
    history = tokens(LONG + said(first))
    emu.admin("POST", "cache", {"advance": 240})
    assert details(turn(emu, "one", first["id"], headers=ON))["cached_tokens"] == history  # 4 minutes: a hit
    emu.admin("POST", "cache", {"advance": 240})
    assert details(turn(emu, "two", first["id"], headers=ON))["cached_tokens"] == history  # 8 minutes after it was made
    emu.admin("POST", "cache", {"advance": 301})
    late = turn(emu, "three", first["id"], headers=ON)  # the response is kept seven days, its cache five minutes
    assert details(late) == session(late["usage"]["input_tokens"], 0)


def test_it_excludes_the_other_modes_and_reads_only_a_continued_conversation(emu):
    first = turn(emu, LONG, headers=ON)
    again = turn(emu, LONG, headers=ON)  # the same prefix, not a continuation: no implicit hit either
    assert details(again) == session(again["usage"]["input_tokens"], 0) == session(first["usage"]["input_tokens"], 0)
    plain = turn(emu, LONG + " plain")  # without the header: no session entry made
    follow = turn(emu, "next", plain["id"], headers=ON)
    assert details(follow)["cached_tokens"] == 0


@pytest.mark.parametrize("how", ["no header", "disable", "model without it", "switch off"])
def test_otherwise_the_implicit_cache_applies(emu, how):
    headers = {"x-dashscope-session-cache": "disable"} if how == "disable" else {} if how == "no header" else ON
    model = "qwen3.7-plus" if how == "model without it" else MODEL  # Responses yes, session cache no
    if how == "switch off":
        emu.switches(session_cache=False)
    extra = {"reasoning": {"effort": "none"}} if model != MODEL else {}
    turn(emu, LONG, headers=headers, model=model, **extra)
    again = turn(emu, LONG, headers=headers, model=model, **extra)
    prompt = again["usage"]["input_tokens"]
    assert details(again) == {"cached_tokens": prompt} and again["usage"]["input_tokens_details"]["cached_tokens"] == prompt
