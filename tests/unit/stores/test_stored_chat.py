"""Stored chat completions kept (what a row holds and OpenAI's metadata rules: test_records.py; the streamed
completion assembled from what the client got: test_endpoint.py): the local answers' paging, and the store on both backends (the state folder's SQLite, a real PostgreSQL from tests/helpers/pgserver.py),
its faults caused for real (a PostgreSQL stopped, a read-only state folder). The whole path with the real
openai-python client: tests/e2e/test_e2e_stored_chat.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from helpers.pgserver import pg_own, pg_server, pg_url  # noqa: F401  (fixtures)
from qwen_gateway.storage.pg_tasks import close_pools
from qwen_gateway.stores.responses import ResponseStore
from qwen_gateway.stores.responses_pg import SharedResponseStore
from qwen_gateway.api.stored_chat.endpoint import chats_of, listed, stored
from qwen_gateway.api.stored_chat.records import row_of
from qwen_gateway.stores.stored_chat import ChatStore, shown
from qwen_gateway.errors import GatewayError, gateway_error
from qwen_gateway.storage.health import StateUnavailable
from qwen_gateway.storage.pg import Database


@pytest.fixture(autouse=True)
async def _pools_closed():
    """Every pool a test opened, closed in its event loop: psycopg_pool's workers would keep the loop's end
    waiting (storage/pg_tasks.py)."""
    yield
    await close_pools()


# ---- the store, on both backends ---------------------------------------------------------------------------

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def chat_stores(request, tmp_path):
    """Two gateways' chat stores: on SQLite one folder (one gateway), on PostgreSQL two folders, one database."""
    if request.param == "sqlite":
        one = chats_of(lambda base=ResponseStore(tmp_path / "a" / "responses.sqlite3"): base)()
        return one, one
    url = request.getfixturevalue("pg_url")
    return tuple(chats_of(lambda base=SharedResponseStore(tmp_path / n / "responses.sqlite3", Database(url)): base)()
                 for n in ("a", "b"))


def _row(n: int, run: str = "r", model: str = "gpt-4o", owner: str = ""):
    body = {"model": model, "messages": [{"role": "user", "content": f"m{n}"}], "metadata": {"run": run, "n": str(n)}}
    return row_of(body, {"id": f"chatcmpl-{n}", "object": "chat.completion", "model": model, "choices": []},
                  time.time(), owner)


async def test_a_completion_stored_by_one_is_read_updated_and_deleted_by_the_other(chat_stores):
    a, b = chat_stores
    await a.check()
    for n in range(3):
        await a.put(_row(n, model="o3" if n == 1 else "gpt-4o"))
    assert (await b.get("chatcmpl-1", ""))["metadata"] == {"run": "r", "n": "1"}
    assert (await b.messages("chatcmpl-1", ""))[0]["content"] == "m1"
    assert await b.get("chatcmpl-x", "") is None and await b.messages("chatcmpl-x", "") is None
    assert await b.get("chatcmpl-\ud83d", "") is None  # a lone surrogate in a path: not found, no error
    assert [r[0] for r in await b.index("")] == ["chatcmpl-0", "chatcmpl-1", "chatcmpl-2"]
    page = await listed(b, {"metadata[run]": "r", "model": "gpt-4o"}, "")
    assert [c["id"] for c in page["data"]] == ["chatcmpl-0", "chatcmpl-2"] and not page["has_more"]
    assert await b.update("chatcmpl-0", {"run": "s"}, "") and not await b.update("chatcmpl-x", {}, "")
    assert (await a.get("chatcmpl-0", ""))["metadata"] == {"run": "s"}
    assert await a.delete("chatcmpl-2", "") and not await a.delete("chatcmpl-2", "")
    assert await b.get("chatcmpl-2", "") is None
    assert [c["id"] for c in (await listed(b, {"order": "desc"}, ""))["data"]] == ["chatcmpl-1", "chatcmpl-0"]


async def test_the_local_answers_say_not_found_in_openais_shape(chat_stores):
    a, _ = chat_stores
    for method, rest in (("GET", "chatcmpl-x"), ("GET", "chatcmpl-x/messages"), ("DELETE", "chatcmpl-x"),
                         ("POST", "chatcmpl-x")):
        with pytest.raises(GatewayError) as e:
            await stored(a, method, rest, {}, {"metadata": {}}, "")
        assert e.value.status == 404 and "chatcmpl-x" in e.value.message
    with pytest.raises(GatewayError) as e:
        await stored(a, "GET", "chatcmpl-x/other", {}, {}, "")
    assert e.value.status == 404 and e.value.code == "unknown_url"


async def test_the_local_store_keeps_a_keys_newest_per_key(tmp_path):
    store = ChatStore(ResponseStore(tmp_path / "responses.sqlite3"), per_key=3)
    for n in range(5):
        await store.put(_row(n))
    assert [r[0] for r in await store.index("")] == ["chatcmpl-2", "chatcmpl-3", "chatcmpl-4"]
    assert await store.delete("chatcmpl-3", "")
    await store.put(_row(5))
    await store.put(_row(6))  # the delete was counted: one more fits before the oldest goes
    assert [r[0] for r in await store.index("")] == ["chatcmpl-4", "chatcmpl-5", "chatcmpl-6"]


def test_one_chat_store_per_state_store_whoever_asks(tmp_path):
    base = ResponseStore(tmp_path / "responses.sqlite3")
    assert chats_of(lambda: base)() is chats_of(lambda: base)()


# ---- faults --------------------------------------------------------------------------------------------------


async def test_a_state_folder_that_cannot_be_made_refuses_a_stored_completion_clearly(tmp_path):
    (tmp_path / "file").write_text("not a folder")  # as a full or read-only one (tests/e2e/test_e2e_storage_faults.py)
    store = ChatStore(ResponseStore(tmp_path / "file" / "state" / "responses.sqlite3"))
    with pytest.raises(StateUnavailable) as e:
        await store.check()
    assert gateway_error(e.value).status == 503 and gateway_error(e.value).code == "state_unavailable"
    assert "local storage" in e.value.message and str(tmp_path) not in e.value.message


async def test_a_stopped_database_is_a_clear_503_for_reads_writes_and_the_check(pg_own, tmp_path):
    base = SharedResponseStore(tmp_path / "responses.sqlite3", Database(pg_own.db))
    store = chats_of(lambda: base)()
    try:
        await store.check()
        await store.put(_row(1))
        pg_own.halt()
        # the first use sees it away (as for stored Responses, `check` costs no round trip: known-away only)
        for work in (lambda: store.get("chatcmpl-1", ""), store.check, lambda: store.index(""),
                     lambda: store.messages("chatcmpl-1", ""), lambda: store.update("chatcmpl-1", {}, ""), lambda: store.delete("chatcmpl-1", ""),
                     lambda: store.put(_row(2))):
            with pytest.raises(StateUnavailable) as e:
                await work()
            assert gateway_error(e.value).status == 503 and "database" in e.value.message
        pg_own.resume()
        for _ in range(200):  # the probe sees it back (bounded: 200 looks)
            try:
                got = await store.get("chatcmpl-1", "")
                break
            except StateUnavailable:
                await asyncio.sleep(0.05)
        assert got is not None and got["id"] == "chatcmpl-1"
        assert await store.get("chatcmpl-2", "") is None  # refused while away: never half-stored
    finally:
        await base.db.aclose()


def test_routes_for_the_stored_chat_family():
    from qwen_gateway.ingress.routing import route
    from qwen_gateway.components import endpoints
    eps = endpoints(lambda: None)  # type: ignore[arg-type,return-value]
    assert route("POST", "/v1/chat/completions", eps).name == "chat.completions"
    for method, path in (("GET", "/v1/chat/completions"), ("GET", "/chat/completions"),
                         ("GET", "/v1/chat/completions/chatcmpl-1"), ("POST", "/v1/chat/completions/chatcmpl-1"),
                         ("DELETE", "/v1/chat/completions/chatcmpl-1"), ("GET", "/v1/chat/completions/c/messages")):
        assert route(method, path, eps).name == "stored_chat", (method, path)
    assert route("PUT", "/v1/chat/completions/chatcmpl-1", eps).name == "method_not_allowed"
    assert route("PUT", "/v1/chat/completions", eps).name == "method_not_allowed"


def test_a_completion_is_shown_with_its_metadata_as_updated():
    assert shown('{"id": "c", "metadata": {"old": "1"}}', '{"new": "2"}') == {"id": "c", "metadata": {"new": "2"}}
