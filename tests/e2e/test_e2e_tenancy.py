"""Each named key's stored objects are its own, through real mitmdump and the real openai-python (and the
Responses WebSocket's test client): two keys made with the real `qwen-keys`, carol and dave. Every endpoint
that reads, continues, changes or deletes a stored object answers dave as if carol's object did not exist —
the very answer an id nobody stored gets — while carol still gets hers. On one gateway (its state folder)
and on two gateways sharing one PostgreSQL (carol through one, dave through each: the one that holds a
local copy of carol's rows and the one that must read the database)."""

from __future__ import annotations

import json
import uuid

import httpx
import openai
import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import Gateway
from helpers.team import add_key, openai_client, qwen_keys, team_env, until
from e2e.test_e2e_responses_ws import connect, turn, user

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "carol's secret: kumquat"}]
NOBODYS = ("chatcmpl-00000000-0000-0000-0000-000000000000", "resp_0000000000000000000000000000")
CAP = 40  # qwen_stored_per_key: a key's newest stored Responses, and as many chat completions (10,000 by default)


@pytest.fixture(params=["local", "postgres"])
def team(request, tmp_path, emu):
    """(the gateways: carol stores through the first; the keys by name; `qwen-keys`' environment), the keys
    made before the start."""
    if request.param == "local":
        env = cli = team_env(tmp_path, emu)
        keys = {name: add_key(env, name) for name in ("carol", "dave")}
        gws = [Gateway(tmp_path / "team" / "gw", env=env, args=("--set", f"qwen_stored_per_key={CAP}"))]
    else:
        url = request.getfixturevalue("pg_url")
        cli = {"QWEN_STATE_URL": url, "QWEN_GATEWAY_HOME": str(tmp_path / "cli-state")}
        keys = {name: add_key(cli, name) for name in ("carol", "dave")}
        gws = [Gateway(tmp_path / name / "gw", env=team_env(tmp_path, emu, name),
                       args=("--set", f"qwen_state_url={url}", "--set", f"qwen_stored_per_key={CAP}"))
               for name in ("one", "two")]
    try:
        for gw in gws:
            gw.start()
        yield gws, keys, cli
    finally:
        for gw in gws:
            gw.stop()


def refused(call, theirs: str, nobodys: str, cls=openai.NotFoundError, *, named: str = "", **kw) -> dict:
    """The error body of `call` with another key's id (positional, or the argument `named`), checked to be the
    one an id nobody stored gets."""
    def ask(oid: str):
        return call(**{named: oid}, **kw) if named else call(oid, **kw)

    with pytest.raises(cls) as other:
        ask(theirs)
    with pytest.raises(cls) as nobody:
        ask(nobodys)
    mine, none = other.value.body, nobody.value.body
    assert {**mine, "message": ""} == {**none, "message": ""}, (mine, none)
    return mine


def test_a_keys_stored_chat_completions_are_its_own(team, emu):
    gws, keys, _ = team
    carol = openai_client(gws[0].url, keys["carol"])
    run = uuid.uuid4().hex
    whole = carol.chat.completions.create(model="gpt-4o", messages=MESSAGES, store=True, metadata={"run": run})
    streamed, = {c.id for c in carol.chat.completions.create(model="gpt-4o", messages=MESSAGES, store=True,
                                                             metadata={"run": run}, stream=True)}
    cids = [whole.id, streamed]
    nobody = NOBODYS[0]
    for gw in gws:
        dave = openai_client(gw.url, keys["dave"])
        assert dave.chat.completions.list().data == []  # dave stored nothing: carol's are not his to list
        assert dave.chat.completions.list(metadata={"run": run}).data == []
        for cid in cids:
            body = refused(dave.chat.completions.retrieve, cid, nobody)
            assert cid in body["message"] and body["code"] == "not_found"
            refused(dave.chat.completions.messages.list, cid, nobody)
            refused(dave.chat.completions.update, cid, nobody, metadata={"run": "dave's"})
            refused(dave.chat.completions.delete, cid, nobody)
    dave = openai_client(gws[-1].url, keys["dave"])
    mine = dave.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "dave's"}], store=True,
                                        metadata={"run": run})
    assert [c.id for c in dave.chat.completions.list().data] == [mine.id]
    carol = openai_client(gws[-1].url, keys["carol"])  # carol still has hers, untouched, and only hers
    assert [c.id for c in carol.chat.completions.list(metadata={"run": run}).data] == cids
    for cid in cids:
        got = carol.chat.completions.retrieve(cid)
        assert got.metadata == {"run": run} and got.choices[0].message.content == "Echo: carol's secret: kumquat"
        assert carol.chat.completions.messages.list(cid).data[0].content == MESSAGES[0]["content"]
    with pytest.raises(openai.NotFoundError):
        carol.chat.completions.retrieve(mine.id)  # and dave's is his
    assert carol.chat.completions.update(whole.id, metadata={"run": run, "by": "carol"}).metadata["by"] == "carol"
    assert carol.chat.completions.delete(streamed).deleted


def test_a_keys_stored_responses_are_its_own(team, emu):
    gws, keys, _ = team
    carol = openai_client(gws[0].url, keys["carol"])
    first = carol.responses.create(model="gpt-4o", input="carol's secret: kumquat")
    item = first.output[-1].id
    nobody = NOBODYS[1]
    for gw in gws:
        dave = openai_client(gw.url, keys["dave"])
        before = len(emu.chat_requests())
        body = refused(dave.responses.retrieve, first.id, nobody)
        assert first.id in body["message"] and body["code"] == "not_found"
        refused(dave.responses.input_items.list, first.id, nobody)
        refused(dave.responses.delete, first.id, nobody)
        refused(dave.responses.cancel, first.id, nobody)
        # continuing, counting or compacting her conversation: her id is unknown to him, nothing goes upstream
        for call in (dave.responses.create, dave.responses.input_tokens.count, dave.responses.compact):
            body = refused(call, first.id, nobody, openai.BadRequestError, named="previous_response_id",
                           model="gpt-4o", input="and then?")
            assert body["code"] == "previous_response_not_found"
        assert len(emu.chat_requests()) == before
        # an item_reference to her item is one he has not stored: dropped, never sent to Qwen as his
        dave.responses.create(model="gpt-4o", input=[{"type": "item_reference", "id": item},
                                                     {"role": "user", "content": "what did she say?"}])
        assert "kumquat" not in json.dumps(emu.chat_requests()[-1]["body"])
        ws = connect(gw, Authorization=f"Bearer {keys['dave']}")
        try:
            theirs = turn(ws, {"model": "gpt-4o", "previous_response_id": first.id, "input": [user("and then?")]})
            nobodys = turn(ws, {"model": "gpt-4o", "previous_response_id": nobody, "input": [user("and then?")]})
        finally:
            ws.close()
        assert theirs[-1]["type"] == "error" and theirs[-1]["error"]["code"] == "previous_response_not_found"
        assert {**theirs[-1], "message": "", "error": {**theirs[-1]["error"], "message": ""}} == \
               {**nobodys[-1], "message": "", "error": {**nobodys[-1]["error"], "message": ""}}
    carol = openai_client(gws[-1].url, keys["carol"])  # carol still has hers, and continues it
    assert carol.responses.retrieve(first.id).output_text == "Echo: carol's secret: kumquat"
    assert carol.responses.input_items.list(first.id).data[0].content[0].text == "carol's secret: kumquat"
    assert carol.responses.input_tokens.count(model="gpt-4o", input="and?", previous_response_id=first.id).input_tokens
    later = carol.responses.create(model="gpt-4o", input="and then?", previous_response_id=first.id)
    assert "kumquat" in json.dumps(emu.chat_requests()[-1]["body"]["messages"])
    ws = connect(gws[-1], Authorization=f"Bearer {keys['carol']}")
    try:
        over_ws = turn(ws, {"model": "gpt-4o", "previous_response_id": later.id, "input": [user("over the socket")]})
    finally:
        ws.close()
    assert over_ws[-1]["type"] == "response.completed" and "kumquat" in json.dumps(emu.chat_requests()[-1]["body"])
    carol.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        carol.responses.retrieve(first.id)


def test_a_keys_background_response_is_its_own(team, emu):
    gws, keys, _ = team
    emu.fault("stall", seconds=8)  # Qwen sends its first chunk, then nothing for a while: the run goes on
    carol = openai_client(gws[0].url, keys["carol"])
    running = carol.responses.create(model="gpt-4o", input="take your time", background=True)
    until(lambda: carol.responses.retrieve(running.id).status == "in_progress", "the run under way")
    nobody = NOBODYS[1]
    for gw in gws:
        dave = openai_client(gw.url, keys["dave"])
        refused(dave.responses.retrieve, running.id, nobody)
        raw = httpx.get(f"{gw.url}/v1/responses/{running.id}", params={"stream": "true"}, trust_env=False,
                        headers={"Authorization": f"Bearer {keys['dave']}"}, timeout=30)
        assert raw.status_code == 404 and raw.json()["error"]["code"] == "not_found"  # not her events either
        refused(dave.responses.cancel, running.id, nobody)
        refused(dave.responses.delete, running.id, nobody)
    assert carol.responses.retrieve(running.id).status == "in_progress"  # neither cancelled nor deleted by dave
    assert carol.responses.cancel(running.id).status == "cancelled"


def test_what_was_stored_before_named_keys_stays_with_no_key(tmp_path, emu, make_gateway):
    """Objects stored without a named key (a keyless gateway, or a flat key) belong to no key: a flat key still
    reads them once named keys exist, a named key does not."""
    env = team_env(tmp_path, emu)
    flat = tmp_path / "flat-keys"
    flat.write_text("sk-flat-key-of-the-team\n")
    gw = make_gateway(env=env, args=("--set", f"qwen_client_keys_file={flat}"))
    old = openai_client(gw.url, "sk-flat-key-of-the-team")
    response = old.responses.create(model="gpt-4o", input="from before the keys")
    completion = old.chat.completions.create(model="gpt-4o", messages=MESSAGES, store=True)
    carol = add_key(env, "carol")
    until(lambda: httpx.get(gw.url + "/v1/models", headers={"Authorization": f"Bearer {carol}"},
                            trust_env=False).status_code == 200, "the new key taking effect", limit=5)
    named = openai_client(gw.url, carol)
    with pytest.raises(openai.NotFoundError):
        named.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        named.chat.completions.retrieve(completion.id)
    assert named.chat.completions.list().data == []
    assert old.responses.retrieve(response.id).output_text == "Echo: from before the keys"
    assert [c.id for c in old.chat.completions.list().data] == [completion.id]


def test_one_key_storing_many_never_evicts_another_keys_objects(team, emu):
    """The stores kept the newest 1,000 objects of every key together (the shared one trimmed every 50 puts):
    carol storing 1,100 took dave's. Each key now keeps its own newest `qwen_stored_per_key` (CAP here): carol
    stores past her cap, and past a trim on PostgreSQL (every 50 of her puts through a gateway); her oldest go,
    dave's stay."""
    gws, keys, _ = team
    dave = openai_client(gws[0].url, keys["dave"])
    his_completion = dave.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "dave's"}],
                                                  store=True)
    his_response = dave.responses.create(model="gpt-4o", input="dave's")
    carol = openai_client(gws[0].url, keys["carol"])
    many = CAP + 20  # beyond her cap, and beyond the shared store's trim at 50 puts

    def store_one(i: int) -> tuple[str, str]:
        done = carol.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"n{i}"}],
                                             store=True)
        return done.id, carol.responses.create(model="gpt-4o", input=f"n{i}").id

    hers = [store_one(i) for i in range(many)]  # in order: her oldest are the first
    for gw in gws:
        dave = openai_client(gw.url, keys["dave"])
        assert dave.chat.completions.retrieve(his_completion.id).choices[0].message.content == "Echo: dave's"
        assert dave.responses.retrieve(his_response.id).output_text == "Echo: dave's"
    carol = openai_client(gws[-1].url, keys["carol"])
    assert carol.chat.completions.retrieve(hers[-1][0]).id == hers[-1][0]  # her newest kept, her oldest gone
    assert carol.responses.retrieve(hers[-1][1]).id == hers[-1][1]
    with pytest.raises(openai.NotFoundError):
        carol.chat.completions.retrieve(hers[0][0])
    with pytest.raises(openai.NotFoundError):
        carol.responses.retrieve(hers[0][1])
    assert CAP <= len(carol.chat.completions.list(limit=100).data) <= CAP + 50  # + a trim's 50 on PostgreSQL


def test_a_deleted_keys_stored_objects_go_with_it(team, emu):
    """`qwen-keys delete` is for good: a key added later under the same name reads nothing of the old one's."""
    gws, keys, cli = team
    carol = openai_client(gws[0].url, keys["carol"])
    cid = carol.chat.completions.create(model="gpt-4o", messages=MESSAGES, store=True).id
    rid = carol.responses.create(model="gpt-4o", input="carol's secret: kumquat").id
    for gw in gws:  # every gateway has seen them (the second reads carol's rows from the database)
        seen = openai_client(gw.url, keys["carol"])
        assert seen.chat.completions.retrieve(cid).id == cid and seen.responses.retrieve(rid).id == rid
    out = qwen_keys(cli, "delete", "carol").stdout
    assert "stored objects" in out, out
    again = add_key(cli, "carol")
    for gw in gws:
        new = openai_client(gw.url, again)
        until(lambda new=new: listed(new) == [], "carol's name served again, with nothing stored")
        with pytest.raises(openai.NotFoundError):
            new.chat.completions.retrieve(cid)
        with pytest.raises(openai.NotFoundError):
            new.responses.retrieve(rid)
        with pytest.raises(openai.BadRequestError):
            new.responses.create(model="gpt-4o", input="go on", previous_response_id=rid)


def listed(client) -> list | None:
    """The key's stored completions, or None while the gateway has not heard of the key yet (401)."""
    try:
        return client.chat.completions.list().data
    except openai.AuthenticationError:
        return None
