"""Stored chat completions (`store: true`, OpenAI's /v1/chat/completions/{id} family) through a real mitmdump,
driven by the real openai-python client as its users call it: create with `store=True` and `metadata`, then
retrieve, list by metadata, list the request's messages, update the metadata, delete — whole and streamed,
on the local state folder and, with two gateways, on one shared PostgreSQL."""

from __future__ import annotations

import uuid

import httpx
import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from e2e.test_e2e_shared_state import two_gateways

pytestmark = pytest.mark.e2e


def client(gw):
    import openai
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)


MESSAGES = [{"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "say kumquat"}]}]


def create(c, run: str, stream: bool):
    """One stored completion, tagged with this run's metadata: (its id, its text as the client got it)."""
    meta = {"run": run, "kind": "stream" if stream else "whole"}
    if not stream:
        done = c.chat.completions.create(model="gpt-4o", messages=MESSAGES, store=True, metadata=meta)
        return done.id, done.choices[0].message.content
    ids, text = set(), ""
    for chunk in c.chat.completions.create(model="gpt-4o", messages=MESSAGES, store=True, metadata=meta,
                                           stream=True):
        ids.add(chunk.id)
        text += "".join(ch.delta.content or "" for ch in chunk.choices)
    assert len(ids) == 1
    return ids.pop(), text


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_stored_completion_is_retrieved_listed_updated_and_deleted_with_openai_python(gw, stream):
    import openai

    c = client(gw)
    run = uuid.uuid4().hex
    cid, text = create(c, run, stream)
    assert cid.startswith("chatcmpl-") and text == "Echo: say kumquat"

    got = c.chat.completions.retrieve(cid)
    assert got.id == cid and got.object == "chat.completion" and got.model == "gpt-4o"
    assert got.choices[0].message.content == text and got.choices[0].finish_reason == "stop"
    assert got.metadata == {"run": run, "kind": "stream" if stream else "whole"}

    other, _ = create(c, run + "-other", stream)  # another run's: never in this run's list
    listed = c.chat.completions.list(metadata={"run": run})
    assert [x.id for x in listed.data] == [cid] and not listed.has_more
    assert c.chat.completions.list(metadata={"run": run}, model="qwen3-coder-plus").data == []
    assert other in [x.id for x in c.chat.completions.list(metadata={"run": run + "-other"}, model="gpt-4o")]

    messages = c.chat.completions.messages.list(cid)
    assert [(m.role, m.content) for m in messages.data] == [("system", "be brief"), ("user", "say kumquat")]
    assert [m.id for m in messages.data] == [f"{cid}-0", f"{cid}-1"]
    assert messages.data[1].content_parts[0].text == "say kumquat"
    page = c.chat.completions.messages.list(cid, limit=1, order="desc")
    assert [m.id for m in page.data] == [f"{cid}-1"] and page.has_more

    updated = c.chat.completions.update(cid, metadata={"run": run, "reviewed": "yes"})
    assert updated.id == cid and updated.metadata == {"run": run, "reviewed": "yes"}
    assert [x.id for x in c.chat.completions.list(metadata={"run": run, "reviewed": "yes"})] == [cid]

    deleted = c.chat.completions.delete(cid)
    assert deleted.id == cid and deleted.deleted and deleted.object == "chat.completion.deleted"
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.retrieve(cid)
    assert cid in e.value.message
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.messages.list(cid)
    assert c.chat.completions.list(metadata={"run": run}).data == []


def test_an_unstored_completion_is_not_kept_and_bad_metadata_is_refused_before_qwen(gw, emu):
    import openai

    c = client(gw)
    done = c.chat.completions.create(model="gpt-4o", messages=MESSAGES, metadata={"run": "unstored"})
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.retrieve(done.id)
    before = len(emu.client_requests())
    for metadata, param in (({f"k{i}": "v" for i in range(17)}, "metadata"), ({"k" * 65: "v"}, "metadata"),
                            ({"k": "v" * 513}, "metadata.k")):
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="gpt-4o", messages=MESSAGES, store=True, metadata=metadata)
        assert e.value.body["param"] == param, e.value.body
    assert len(emu.client_requests()) == before  # refused before any upstream call
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.update(done.id, metadata={"k": "v"}, extra_body={"model": "gpt-4o"})
    assert e.value.body["param"] == "model"


def test_the_list_pages_in_order_with_after_and_limit(gw):
    c = client(gw)
    run = uuid.uuid4().hex
    ids = [create(c, run, False)[0] for _ in range(3)]
    first = c.chat.completions.list(metadata={"run": run}, limit=2)
    assert [x.id for x in first.data] == ids[:2] and first.has_more
    rest = c.chat.completions.list(metadata={"run": run}, limit=2, after=ids[1])
    assert [x.id for x in rest.data] == ids[2:] and not rest.has_more
    assert [x.id for x in c.chat.completions.list(metadata={"run": run}, order="desc")] == ids[::-1]
    with httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as raw:  # every page the SDK's iterator walks
        r = raw.get("/v1/chat/completions", params={"metadata[run]": run, "limit": 0})
        assert r.status_code == 400 and r.json()["error"]["param"] == "limit"


def test_two_gateways_on_one_database_see_each_others_stored_completions(tmp_path, emu, pg_url):
    one, two, *_ = two_gateways(tmp_path, emu, pg_url)
    try:
        run = uuid.uuid4().hex
        whole, _ = create(client(one), run, False)
        streamed, _ = create(client(one), run, True)
        c2 = client(two)
        assert c2.chat.completions.retrieve(streamed).choices[0].message.content == "Echo: say kumquat"
        assert [x.id for x in c2.chat.completions.list(metadata={"run": run})] == [whole, streamed]
        assert c2.chat.completions.messages.list(whole).data[0].content == "be brief"
        c2.chat.completions.update(whole, metadata={"run": run, "by": "two"})
        assert client(one).chat.completions.retrieve(whole).metadata == {"run": run, "by": "two"}
        assert client(one).chat.completions.delete(streamed).deleted
        assert [x.id for x in c2.chat.completions.list(metadata={"run": run})] == [whole]
    finally:
        one.stop()
        two.stop()
