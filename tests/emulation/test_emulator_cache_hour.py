"""The emulator's Qwen4 explicit cache (docs/emulator.md): a marker's `ttl: "1h"` keeps its prefix an hour on the
models whose catalogue row lists that lifetime (`cache_ttls`), reported apart in `cache_creation`; on the other
models a ttl changes nothing; a lifetime Qwen4 does not offer is refused."""

from __future__ import annotations

import pytest

from emulation.test_emulator import API_KEY
from emulation.test_emulator_cache import LONG, advance, chat, details, emu, proc  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e  # starts emulator processes

HOUR = {"type": "ephemeral", "ttl": "1h"}


def hour_marked(text: str) -> list[dict]:
    return [{"role": "system", "content": [{"type": "text", "text": text, "cache_control": HOUR}]},
            {"role": "user", "content": "q"}]


def test_an_hour_on_qwen4_outlives_five_minutes_and_ends_after_the_hour(emu):
    msgs = hour_marked("Qwen4 hour. " + LONG)
    first = details(chat(emu, msgs, model="qwen4-max"))
    created = first["cache_creation_input_tokens"]
    assert first["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": created}
    advance(emu, 6 * 60)
    assert details(chat(emu, msgs, model="qwen4-max"))["cached_tokens"] == created  # renewed for an hour
    advance(emu, 3601)
    assert details(chat(emu, msgs, model="qwen4-max"))["cached_tokens"] == 0


def test_an_hour_elsewhere_is_five_minutes(emu):
    msgs = hour_marked("Not Qwen4. " + LONG)
    first = details(chat(emu, msgs))
    assert first["cache_creation"] == {"ephemeral_5m_input_tokens": first["cache_creation_input_tokens"]}
    advance(emu, 6 * 60)
    assert details(chat(emu, msgs))["cached_tokens"] == 0


def test_a_lifetime_qwen4_does_not_offer_is_refused(emu):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral",
                                                                                        "ttl": "30m"}}]}]
    r = emu.http.post("/compatible-mode/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                      json={"model": "qwen4-max", "messages": msgs})
    assert r.status_code == 400 and "5m or 1h" in r.json()["error"]["message"]
