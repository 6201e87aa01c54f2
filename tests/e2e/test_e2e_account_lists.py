"""What each key may call is its own (issue 70, item 2), through a real mitmdump and the emulator: a key whose own
model list (GET /models with that key, read when the gateway starts) leaves a model out is never sent a request for
it — Model Studio refuses it 403, as Token Plan Personal does for the models it does not unlock — another account
takes it. A model no list names may be new since the lists were read: it goes as before (Qwen's word decides) and
the lists are read again."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from helpers.home import Home
from helpers.procs import Gateway, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ASK = [{"role": "user", "content": "say hello"}]


def gateway(tmp_path: Path, emu, make_gateway, lists: dict[str, list[str] | None],
            hanging: tuple[str, ...] = ()) -> tuple[Gateway, dict[str, str]]:
    """Key accounts named as `lists`' keys, each unlocking its list (None: every model) — set before the gateway
    starts, which reads every key's own list; `hanging`: accounts whose lists (both) never answer."""
    home = Home(tmp_path, emu)
    keys = {n: home.key(n, key_env=f"KEY_{n.upper()}", default_model="qwen3-coder-plus") for n in lists}
    emu.switches(key_models={keys[n]: own for n, own in lists.items() if own is not None})
    if hanging:
        emu.switches(model_list={"unreadable": {keys[n]: "hang" for n in hanging}, "compatible": True})
    gw = make_gateway(env=home.env(), args=("--set", "qwen_debug_log=true"))
    until(lambda: sum(r["path"].split("?")[0].endswith("/models") for r in emu.requests()) >= len(lists), "every key's list read")
    return gw, keys


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=60,
                         http_client=httpx.Client(trust_env=False))


def test_a_model_one_key_does_not_unlock_goes_to_the_key_that_does(tmp_path, emu, make_gateway):
    gw, keys = gateway(tmp_path, emu, make_gateway, {"personal": ["qwen3-coder-plus", "qwen3.6-plus"],
                                                       "payg": None})
    for i in range(4):  # four conversations: round-robin alone would put two on `personal`, which Qwen refuses 403
        answer = client(gw).chat.completions.create(model="qwen3.7-max",
                                                    messages=[{"role": "user", "content": f"say hello {i}"}])
        assert answer.choices[0].message.content == f"Echo: say hello {i}"
    sent = emu.chat_requests()
    assert len(sent) == 4 and {r["body"]["model"] for r in sent} == {"qwen3.7-max"}
    assert {r["headers"]["authorization"] for r in sent} == {f"Bearer {keys['payg']}"}
    for i in range(4):  # a model both keys unlock: either serves it (four conversations, none kept on one account)
        client(gw).chat.completions.create(model="qwen3.6-plus", messages=[{"role": "user", "content": f"hi {i}"}])
    both = {r["headers"]["authorization"] for r in emu.chat_requests()[len(sent):]}
    assert both == {f"Bearer {keys['personal']}", f"Bearer {keys['payg']}"}


def test_a_model_a_key_no_longer_unlocks_is_taken_from_its_list_on_qwens_403_and_served_elsewhere(
        tmp_path, emu, make_gateway):
    """The lists were read while both keys unlocked every model; then `personal` lost qwen3.7-max (a plan changed
    under the gateway). Qwen's 403 AccessDenied.Unpurchased on `personal` is its own word that this key cannot call
    the model: the request goes to `payg`, which names it, instead of failing, and `personal` is not sent it again."""
    gw, keys = gateway(tmp_path, emu, make_gateway, {"personal": None, "payg": None})
    emu.switches(key_models={keys["personal"]: ["qwen3-coder-plus", "qwen3.6-plus"]})
    for i in range(4):  # four conversations: round-robin puts at least one on `personal` first
        answer = client(gw).chat.completions.create(model="qwen3.7-max",
                                                    messages=[{"role": "user", "content": f"say hello {i}"}])
        assert answer.choices[0].message.content == f"Echo: say hello {i}"
    sent = [r["headers"]["authorization"] for r in emu.chat_requests()]
    assert sent.count(f"Bearer {keys['personal']}") == 1 and sent.count(f"Bearer {keys['payg']}") == 4, sent
    assert keys["personal"] not in gw.log() and keys["payg"] not in gw.log()


def test_a_model_no_list_names_goes_as_before_and_the_lists_are_read_again(tmp_path, emu, make_gateway):
    """No key's list names it: it may be new since the lists were read. Qwen's own word decides (here its 403 for a
    model the key does not unlock) and the lists are read again, so a model added since is served at once."""
    gw, keys = gateway(tmp_path, emu, make_gateway, {"personal": ["qwen3-coder-plus", "qwen3.6-plus"]})
    reads = lambda: sum(r["path"].split("?")[0].endswith("/models") for r in emu.requests())  # noqa: E731
    read = reads()
    with pytest.raises(openai.PermissionDeniedError):
        client(gw).chat.completions.create(model="qwen3.7-plus", messages=ASK)
    assert len(emu.chat_requests()) == 1  # sent: the gateway invents no refusal for a model no list names
    until(lambda: reads() > read, "the list read again")
    emu.switches(key_models={keys["personal"]: ["qwen3-coder-plus", "qwen3.6-plus", "qwen3.7-plus"]})
    answer = client(gw).chat.completions.create(model="qwen3.7-plus", messages=ASK)
    assert answer.choices[0].message.content == "Echo: say hello"


def test_the_emulator_refuses_what_a_key_does_not_unlock_as_model_studio_does(tmp_path, emu):
    key = emu.seed_token(kind="key")
    emu.switches(key_models={key: ["qwen3.6-plus"]})
    http = httpx.Client(base_url=emu.url + "/compatible-mode/v1", headers={"Authorization": f"Bearer {key}"},
                        trust_env=False)
    assert [m["id"] for m in http.get("/models").json()["data"]] == ["qwen3.6-plus"]
    refused = http.post("/chat/completions", json={"model": "qwen3.7-max", "messages": ASK})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "AccessDenied.Unpurchased"


def test_a_model_qwen_has_on_no_account_is_answered_here_after_qwen_said_so(tmp_path, emu, make_gateway):
    """Qwen's own 404 for a model no list names: the client gets the gateway's 404 naming the models served (never
    Qwen's hint); asked again within ten minutes, it is answered here, nothing sent."""
    gw, _ = gateway(tmp_path, emu, make_gateway, {"one": None, "two": None})
    for _ in range(2):
        with pytest.raises(openai.NotFoundError) as caught:
            client(gw).chat.completions.create(model="qwen3.6-plux", messages=ASK)
        said = caught.value.body["message"]
        assert caught.value.code == "model_not_found" and "`qwen3.6-plus`" in said, said
        assert "qwen-vl-plus" not in said and "qwen-turbo" not in said  # served models only, never retired ones
    assert [r["body"]["model"] for r in emu.chat_requests()] == ["qwen3.6-plux"]  # once: then answered here


def test_a_key_whose_list_hangs_is_tried_for_a_model_the_read_list_lacks_and_the_log_says_so(
        tmp_path, emu, make_gateway):
    """Issue 79 item 5: `has` unlocks every model but both its lists hang (Model Studio's List Models API and
    GET /models: no answer); `lacks`' list was read and leaves qwen3.7-max out. Unknown is not empty: every request
    for qwen3.7-max is answered by trying `has`, never refused for `lacks`' list, and the log says once that
    `has`' list could not be read (why, the account's name; never the key)."""
    gw, keys = gateway(tmp_path, emu, make_gateway, {"lacks": ["qwen3-coder-plus", "qwen3.6-plus"], "has": None},
                       hanging=("has",))
    for i in range(4):  # four conversations: round-robin alone would put two on `lacks`
        answer = client(gw).chat.completions.create(model="qwen3.7-max",
                                                    messages=[{"role": "user", "content": f"say hello {i}"}])
        assert answer.choices[0].message.content == f"Echo: say hello {i}"
    assert {r["headers"]["authorization"] for r in emu.chat_requests()} == {f"Bearer {keys['has']}"}
    said = until(lambda: [ln for ln in gw.log().splitlines() if "account has" in ln and "could not be read" in ln
                          and "GET /models" in ln], "the unread list said", limit=60)
    assert len(said) == 1 and "no answer within" in said[0], said
    assert keys["has"] not in gw.log() and keys["lacks"] not in gw.log()


def test_a_default_model_the_keys_list_lacks_is_one_warning_line_at_start_with_the_lists_choice(
        tmp_path, emu, make_gateway):
    """Issue 79 item 5: the account's default (qwen3-coder-plus) retired or not unlocked for this key — its list, read
    at start, lacks it: one warning line for the account, naming it and the list's own choice of its family."""
    gw, keys = gateway(tmp_path, emu, make_gateway, {"personal": ["qwen3.6-plus", "qwen3-coder-next"], "payg": None})
    said = until(lambda: [ln for ln in gw.log().splitlines() if "not in its model list from Qwen" in ln],
                 "the default model the list lacks said")
    assert len(said) == 1 and "account personal: qwen3-coder-plus (its default model; the list has " \
        "qwen3-coder-next) is not in its model list from Qwen (retired, or not for this key)" in said[0], said
    assert keys["personal"] not in gw.log()
