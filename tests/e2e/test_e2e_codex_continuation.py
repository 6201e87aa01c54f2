"""A real Codex CLI turn whose stream Qwen throttles mid-answer (issue 63, item 4), or whose stream a network cuts
inside a `data:` line (issue 67): the gateway goes on from the text Codex already has (partial mode) — on the other
account when throttled, on the same one when cut — and Codex prints one answer — no error, no reconnect, no turn
sent again. Over its built-in provider's WebSocket and over a custom provider's HTTPS (SSE) stream."""

from __future__ import annotations


import pytest

from e2e.test_e2e_codex import Codex, assert_clean, builtin_config, custom_config
from helpers.home import CODING_PLAN, Home
from helpers.procs import until

pytestmark = pytest.mark.e2e


def two_accounts(tmp_path, emu) -> dict[str, str]:
    """Two key accounts on the emulator, each with its own key: the gateway's environment."""
    home = Home(tmp_path, emu)
    for n in ("a", "b"):
        home.key(n, path=CODING_PLAN, key_env=f"KEY_{n.upper()}", default_model="qwen3-coder-plus")
    return home.env()


@pytest.mark.parametrize("provider", ["built-in (WebSocket)", "custom (HTTPS)"])
def test_a_codex_turn_throttled_mid_answer_prints_one_answer(make_gateway, emu, tmp_path, provider):
    gw = make_gateway("codex", env=two_accounts(tmp_path, emu))
    emu.fault("error_finish")
    if provider.startswith("built-in"):
        codex = Codex(tmp_path, "continued", builtin_config(gw), OPENAI_API_KEY="client-key")
    else:
        codex = Codex(tmp_path, "continued", custom_config(gw, "qwen3-coder-plus"), QWENPROXY_API_KEY="client-key")
    log, took = codex.run("say hello")
    assert_clean(log)
    assert "Echo: say hello" in log
    chats = emu.chat_requests()
    assert len(chats) == 2, [c["body"]["messages"][-1] for c in chats]  # the turn was not sent again
    broken, continued = chats
    assert continued["body"]["messages"] == [*broken["body"]["messages"],
                                             {"role": "assistant", "content": "Echo: ", "partial": True}]
    assert broken["headers"]["authorization"] != continued["headers"]["authorization"]  # the other account
    assert "continued=1" in gw.log()
    print(f"\nCodex turn ({provider}) throttled mid-answer and continued: {took:.2f} s")


@pytest.mark.parametrize("how", ["rst", "fin", "end"])
@pytest.mark.parametrize("provider", ["built-in (WebSocket)", "custom (HTTPS)"])
def test_a_codex_turn_cut_mid_line_prints_one_answer(make_gateway, emu, tmp_path, provider, how):
    gw = make_gateway("codex", env=two_accounts(tmp_path, emu))
    emu.fault("cut", inside='"content":"say ', how=how)  # inside the second text event's data line
    if provider.startswith("built-in"):
        codex = Codex(tmp_path, "cut", builtin_config(gw), OPENAI_API_KEY="client-key")
    else:
        codex = Codex(tmp_path, "cut", custom_config(gw, "qwen3-coder-plus"), QWENPROXY_API_KEY="client-key")
    log, took = codex.run("say hello")
    assert_clean(log)
    assert "Echo: say hello" in log and "Echo: Echo:" not in log
    chats = emu.chat_requests()
    assert len(chats) == 2, [c["body"]["messages"][-1] for c in chats]  # the turn was not sent again
    broken, continued = chats
    assert continued["body"]["messages"] == [*broken["body"]["messages"],
                                             {"role": "assistant", "content": "Echo: ", "partial": True}]
    assert broken["headers"]["authorization"] == continued["headers"]["authorization"]  # the same account
    until(lambda: "cut=1" in gw.log() and "continued=1" in gw.log(), "the turn's request line")
    print(f"\nCodex turn ({provider}) cut mid-line ({how}) and continued: {took:.2f} s")
