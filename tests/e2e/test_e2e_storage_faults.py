"""Storage faults under real gateways (mitmdump processes), each caused for real: a PostgreSQL of the test's
own restarted (`pg_ctl restart`) and stopped for an outage under two gateways; and a state folder that is a
tmpfs in a private mount namespace (`unshare -m`), filled to ENOSPC or mounted read-only. Chat, streams and
stored Responses go through; what the gateway promises (docs/reliability.md, "Storage"): no row lost, a clear
503 `state_unavailable` while the storage is away — before any upstream call —, never a stored Response
reported complete that was not stored, one log line per outage and no traceback, and service again when the
storage is back, without a restart. The same faults one store at a time: tests/unit/storage/test_faults.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from helpers.home import CODING_PLAN, Home
from helpers.pgserver import pg_own  # noqa: F401  (fixture)
from helpers.procs import Gateway
from e2e.test_e2e_shared_state import _until, client, two_gateways

pytestmark = pytest.mark.e2e


def _sql(url: str, query: str) -> int:
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            return int(conn.execute(query).fetchone()[0])
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):  # away, or its first write still to come
        return -1


def _traffic(gw: Gateway, tag: str) -> tuple[int, str]:
    """A chat, a streamed chat, a stored Response and a streamed stored Response: (exchanges, the last id)."""
    c = client(gw)
    assert c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": tag}]
                                     ).choices[0].message.content == f"Echo: {tag}"
    with c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": tag}], stream=True) as s:
        assert "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices) == f"Echo: {tag}"
    assert c.responses.create(model="gpt-4o", input=tag).output_text == f"Echo: {tag}"
    with c.responses.stream(model="gpt-4o", input=tag) as s:
        final = s.get_final_response()
    assert final.output_text == f"Echo: {tag}" and final.status == "completed"
    return 4, final.id


def _until_served(gw: Gateway, call, what: str, limit: float = 15.0) -> int:
    """`call()` until it is served (503 state_unavailable until the gateway sees its storage back; bounded):
    how many exchanges that took. Prints how long, for docs/reliability.md."""
    import openai

    start, attempts = time.monotonic(), 0
    while True:
        attempts += 1
        try:
            call()
            print(f"\n{what}: served again after {time.monotonic() - start:.2f} s ({attempts} attempts)")
            return attempts
        except openai.APIStatusError as e:
            _unavailable(e)
        if time.monotonic() - start > limit:
            raise AssertionError(f"{what}: not served within {limit} s\n{gw.log()}")
        time.sleep(0.05)


def _served_again(gw: Gateway, what: str) -> int:
    """A stored Response asked for until it is served."""
    def stored() -> None:
        assert client(gw).responses.create(model="gpt-4o", input="back").output_text == "Echo: back"
    return _until_served(gw, stored, what)


def _rows_settle(count, exchanges: int) -> bool:
    """One row per exchange, still so a second later (two ledger flushes: a late row, such as a WebSocket
    session's when it closes, would show up — a count reached only for a moment proves nothing)."""
    if count() != exchanges:
        return False
    time.sleep(1.0)
    return count() == exchanges


def _db_rows_reach(url: str, exchanges: int, what: str, limit: float = 15.0) -> None:
    """Wait (bounded) until the shared ledger holds one row per exchange; else say what it holds."""
    import psycopg

    deadline = time.monotonic() + limit
    while not _rows_settle(lambda: _sql(url, "SELECT count(*) FROM usage"), exchanges):
        if time.monotonic() > deadline:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                rows = conn.execute("SELECT method, path, status, error, count(*) FROM usage "
                                    "GROUP BY 1, 2, 3, 4 ORDER BY 2, 3").fetchall()
                refusals = conn.execute("SELECT ts, method, path, duration_ms, stream FROM usage WHERE status = 503 "
                                        "ORDER BY ts").fetchall()
            raise AssertionError(f"{what}: {sum(r[-1] for r in rows)} rows for {exchanges} exchanges:\n"
                                 + "\n".join(map(str, rows)) + "\nthe 503s:\n" + "\n".join(map(str, refusals)))
        time.sleep(0.1)


def _read_again(gw: Gateway, stored: str, what: str) -> int:
    """A stored Response retrieved until it is served (each gateway's probe sees the database back on its own)."""
    def read() -> None:
        assert client(gw).responses.retrieve(stored).id == stored
    return _until_served(gw, read, what)


def _unavailable(e) -> None:
    body = e.response.json()
    assert e.status_code == 503 and body["error"]["code"] == "state_unavailable", body


def _log_problems(gw: Gateway) -> list[str]:
    return [line for line in gw.log().splitlines() if "Traceback" in line or " 500 " in line]


def _outage_lines(gw: Gateway) -> int:
    """The gateway's own lines saying a storage went away (not the request lines of the 503s it answered)."""
    return sum(1 for line in gw.log().splitlines() if "] qwen: the " in line and " is unavailable (" in line)


@pytest.fixture
def pair_own(tmp_path, emu, pg_own):
    one, two, _token, _key = two_gateways(tmp_path, emu, pg_own.db)
    try:
        yield one, two
    finally:
        one.stop()
        two.stop()


def test_two_gateways_lose_no_row_over_a_postgresql_restart(pair_own, pg_own, emu):
    one, two = pair_own
    exchanges = 0
    for gw in (one, two):
        n, before = _traffic(gw, "before")
        exchanges += n
    pg_own.halt()
    pg_own.resume()  # pg_ctl restart: every session of both gateways ended by the server
    for gw in (one, two):
        exchanges += _served_again(gw, "after a restart")
        n, after = _traffic(gw, "after")
        exchanges += n
    # a response stored before the restart, read through the other gateway after it
    assert client(one).responses.retrieve(before).id == before
    assert client(two).responses.retrieve(after).id == after
    exchanges += 2
    _db_rows_reach(pg_own.db, exchanges, "every exchange's ledger row")
    upstream = len(emu.chat_requests())
    for gw in (one, two):
        gw.stop()  # the request counts still batched are written at exit
    assert _sql(pg_own.db, "SELECT sum(requests) FROM account_day") == upstream
    for gw in (one, two):
        assert _log_problems(gw) == [], gw.log()


def test_an_outage_is_a_clear_503_for_what_needs_the_database_and_nothing_is_lost(pair_own, pg_own, emu):
    import openai
    import websocket

    one, two = pair_own
    exchanges, stored = _traffic(one, "before")
    assert client(two).responses.retrieve(stored).id == stored  # two has used the database (its key adopted)
    exchanges += 1
    pg_own.halt()
    # chat and streams go on, through both gateways
    for gw in (one, two):
        exchanges += _chat_goes_on(gw)
    sent = len(emu.chat_requests())
    # what needs the database: a 503 state_unavailable at once, whole or streamed, write or read — and nothing
    # sent upstream for a Response that could not be stored
    with pytest.raises(openai.APIStatusError) as e:
        client(one).responses.create(model="gpt-4o", input="whole")
    _unavailable(e.value)
    with pytest.raises(openai.APIStatusError) as e:
        with client(two).responses.create(model="gpt-4o", input="streamed", stream=True) as events:
            list(events)
    _unavailable(e.value)
    with pytest.raises(openai.APIStatusError) as e:
        client(two).responses.retrieve(stored)
    _unavailable(e.value)
    ws = websocket.create_connection(one.url.replace("http://", "ws://") + "/v1/responses", timeout=30)
    try:
        ws.send(json.dumps({"type": "response.create", "model": "gpt-4o", "input": "over a socket"}))
        event = json.loads(ws.recv())
    finally:
        ws.close()
    assert event["type"] == "error" and event["status"] == 503 and event["code"] == "state_unavailable", event
    _stored_chat_refused(one, stream=False)  # a stored chat completion, whole and streamed: the same
    _stored_chat_refused(two, stream=True)
    with pytest.raises(openai.APIStatusError) as e:
        client(one).chat.completions.list()
    _unavailable(e.value)
    assert len(emu.chat_requests()) == sent  # no quota spent on answers nobody could keep
    exchanges += 8  # the WebSocket is two rows: its session (101, when it closes) and its turn (503)
    # a Response that is not stored needs no database
    assert client(one).responses.create(model="gpt-4o", input="unstored", store=False).output_text == \
        "Echo: unstored"
    exchanges += 1
    pg_own.resume()
    exchanges += _served_again(two, "after an outage")
    # each gateway sees the database back through its own probe (every PROBE_S): gateway one may still answer
    # 503 for a moment after two served — bounded, and each refusal is an exchange of the ledger's too
    exchanges += _read_again(one, stored, "after an outage")
    _db_rows_reach(pg_own.db, exchanges, "the outage's ledger rows")
    down = _sql(pg_own.db, "SELECT count(*) FROM usage WHERE status = 503 AND error = 'state_unavailable'")
    assert down >= 4  # the refusals of the outage are in the ledger too, written after it
    for gw in (one, two):
        assert _log_problems(gw) == [], gw.log()
        assert _outage_lines(gw) == 1, gw.log()  # one line for the outage, per gateway


def _stream_events(gw: Gateway, how: str, during) -> list[dict]:
    """A stored Response streamed (SSE, or a Responses WebSocket turn) whose answer Qwen sends slowly;
    `during()` runs once its first text arrived. The events as the client got them."""
    events: list[dict] = []

    def seen(event: dict) -> None:
        events.append(event)
        if event["type"] == "response.output_text.delta" and \
                sum(e["type"] == "response.output_text.delta" for e in events) == 1:
            during()

    if how == "stream":
        with client(gw).responses.create(model="gpt-4o", input="one two three four", stream=True) as stream:
            for ev in stream:
                seen(ev.model_dump())
        return events
    import websocket

    ws = websocket.create_connection(gw.url.replace("http://", "ws://") + "/v1/responses", timeout=30)
    try:
        ws.send(json.dumps({"type": "response.create", "model": "gpt-4o", "input": "one two three four"}))
        while True:
            event = json.loads(ws.recv())
            seen(event)
            if event["type"] in ("response.completed", "response.failed", "response.incomplete", "error"):
                return events
    finally:
        ws.close()


def _stored_chat_refused(gw: Gateway, stream: bool) -> None:
    """A `store: true` chat completion: 503 state_unavailable (before any upstream call: the caller counts)."""
    import openai

    with pytest.raises(openai.APIStatusError) as e:
        got = client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "kept?"}],
                                                 store=True, stream=stream)
        if stream:
            list(got)
    _unavailable(e.value)


def _stored_chat_stream_unkept(gw: Gateway, during, storage: str) -> str:
    """A `store: true` chat streamed slowly, `during()` run at its first text: it must end in an error naming
    the storage (openai-python raises it), never in [DONE] as if stored. The completion's id."""
    import openai

    ids: set[str] = set()
    fired = False
    with pytest.raises(openai.APIError) as e:
        for chunk in client(gw).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "one two three four"}], store=True,
                stream=True):
            ids.add(chunk.id)
            if any(ch.delta.content for ch in chunk.choices) and not fired:
                fired = True
                during()
    assert storage in e.value.message, e.value.message
    assert len(ids) == 1
    return ids.pop()


def _failed_not_completed(events: list[dict], storage: str) -> str:
    """The stream ended in response.failed naming the storage, never response.completed: its id."""
    kinds = [e["type"] for e in events]
    assert "response.completed" not in kinds and kinds[-1] == "response.failed", kinds
    error = events[-1]["response"]["error"]
    assert error["code"] == "server_error" and storage in error["message"], error
    return events[-1]["response"]["id"]


@pytest.mark.parametrize("how", ["stream", "websocket"])
def test_a_stream_whose_response_cannot_be_stored_ends_in_response_failed(pair_own, pg_own, emu, how):
    import openai

    one, two = pair_own
    assert client(one).responses.create(model="gpt-4o", input="warm").output_text == "Echo: warm"
    emu.switches(gap_ms=1000)  # Qwen's words 1 s apart: the database goes away mid-answer (a halt under load can
    # take more than a second: the answer must outlast it)
    rid = _failed_not_completed(_stream_events(one, how, pg_own.halt), "database")
    pg_own.resume()
    for gw in (one, two):  # each sees the database back through its own probe
        _served_again(gw, "after a mid-stream outage")
    for gw in (one, two):  # not stored, so found nowhere (and never as completed)
        with pytest.raises(openai.NotFoundError):
            client(gw).responses.retrieve(rid)
    for gw in (one, two):
        assert _log_problems(gw) == [], gw.log()


def test_a_stored_chat_stream_that_cannot_be_stored_ends_in_an_error(pair_own, pg_own, emu):
    import openai

    one, two = pair_own
    assert client(one).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "warm"}],
                                               store=True).choices[0].message.content == "Echo: warm"
    emu.switches(gap_ms=1000)  # Qwen's words 1 s apart: the answer outlasts the halt (see above)
    cid = _stored_chat_stream_unkept(one, pg_own.halt, "database")
    pg_own.resume()
    emu.switches(gap_ms=0)
    for gw in (one, two):
        _served_again(gw, "after a mid-stream outage")
        with pytest.raises(openai.NotFoundError):
            client(gw).chat.completions.retrieve(cid)
        assert _log_problems(gw) == [], gw.log()


# ---- the local state folder: a tmpfs in a private mount namespace ------------------------------------------


def _mount_namespace_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a tmpfs in a private mount namespace)"
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "unshare/nsenter (util-linux) not installed"
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, timeout=20)
    return None if r.returncode == 0 else f"no private mount namespace here: {r.stderr.decode().strip()}"


_MOUNT = """set -e
state="$1"; staging="$2"; options="$3"; shift 3
mount -t tmpfs -o "size=8m,mode=0700" qwen-state "$state"
cp -a "$staging"/. "$state"/
if [ "$options" = ro ]; then mount -o remount,ro "$state"; fi
exec "$@"
"""


@pytest.fixture
def tmpfs_gateway(tmp_path, emu):
    """A factory: a gateway whose state folder is a tmpfs (8 MiB) of its own mount namespace, holding a key
    account for the emulator; `options="ro"` mounts it read-only before the gateway starts."""
    reason = _mount_namespace_problem()
    if reason:
        pytest.skip(reason)
    started: list[Gateway] = []

    def start(options: str = "rw") -> Gateway:
        staging, state = tmp_path / "staging", tmp_path / "state"
        state.mkdir(mode=0o700)
        home = Home(tmp_path, emu, state=staging)  # the mount script copies staging onto the tmpfs at `state`
        home.key("k", path=CODING_PLAN, key_env="KEY_K", default_model="qwen3-coder-plus")
        prefix = ("unshare", "-m", "--propagation", "private", "--", "sh", "-c", _MOUNT, "sh",
                  str(state), str(staging), options)
        gw = Gateway(tmp_path / "gw", env=home.env(QWEN_GATEWAY_HOME=str(state)), prefix=prefix).start()
        started.append(gw)
        gw.state = state  # type: ignore[attr-defined]
        return gw

    yield start
    for gw in started:
        gw.stop()


def _inside(gw: Gateway, path: Path) -> Path:
    """`path` as the gateway's mount namespace sees it (its tmpfs, not the folder under it)."""
    assert gw.proc is not None
    return Path(f"/proc/{gw.proc.pid}/root{path}")


def _fill(target: Path) -> None:
    """Write zeros into `target` until the file system is full (ENOSPC)."""
    with open(target, "wb", buffering=0) as f:  # unbuffered: nothing left to fail at close
        block = b"\0" * (1 << 16)
        try:
            for _ in range(1 << 14):  # bounded: 1 GiB at most, the tmpfs is 8 MiB
                f.write(block)
                f.flush()
        except OSError as e:
            assert e.errno == 28, e  # ENOSPC
            return
    raise AssertionError("the tmpfs never filled")


_COUNT_ROWS = """import sqlite3, sys
try:
    with sqlite3.connect(sys.argv[1], timeout=5) as db:
        print(db.execute("SELECT count(*) FROM usage").fetchone()[0])
except sqlite3.Error:
    print(-1)
"""


def _ledger_rows(gw: Gateway) -> int:
    """The ledger's rows, read inside the gateway's mount namespace (SQLite resolves /proc/PID/root)."""
    assert gw.proc is not None
    r = subprocess.run(["nsenter", "-t", str(gw.proc.pid), "-m", "--", sys.executable, "-c", _COUNT_ROWS,
                        str(gw.state / "usage.sqlite3")], capture_output=True, text=True, timeout=30)  # type: ignore[attr-defined]
    return int(r.stdout.strip() or -1)


def _refused_before_upstream(gw: Gateway, emu) -> None:
    """A stored Response and a stored chat completion, whole and streamed: 503 state_unavailable (the Response's
    naming local storage), Qwen never asked."""
    import openai

    sent = len(emu.chat_requests())
    with pytest.raises(openai.APIStatusError) as e:
        client(gw).responses.create(model="gpt-4o", input="kept?")
    _unavailable(e.value)
    assert "local storage" in e.value.response.json()["error"]["message"]
    with pytest.raises(openai.APIStatusError) as e:
        with client(gw).responses.create(model="gpt-4o", input="kept?", stream=True) as events:
            list(events)
    _unavailable(e.value)
    _stored_chat_refused(gw, stream=False)
    _stored_chat_refused(gw, stream=True)
    assert len(emu.chat_requests()) == sent


def _chat_goes_on(gw: Gateway) -> int:
    c = client(gw)
    assert c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "on"}]
                                     ).choices[0].message.content == "Echo: on"
    with c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "on"}], stream=True) as s:
        assert "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices) == "Echo: on"
    assert c.responses.create(model="gpt-4o", input="unstored", store=False).output_text == "Echo: unstored"
    return 3


def test_a_full_state_folder_refuses_stored_responses_before_qwen_and_serves_again_when_space_returns(
        tmpfs_gateway, emu):
    gw = tmpfs_gateway()
    exchanges, stored = _traffic(gw, "before")
    _until(lambda: _rows_settle(lambda: _ledger_rows(gw), exchanges), "the first rows written")
    filler = _inside(gw, gw.state / "filler")  # type: ignore[attr-defined]
    _fill(filler)
    exchanges += _chat_goes_on(gw)
    _refused_before_upstream(gw, emu)
    exchanges += 4
    assert client(gw).responses.retrieve(stored).id == stored  # reading needs no space
    exchanges += 1
    filler.unlink()  # space returns
    exchanges += _served_again(gw, "after a full disk")
    _until(lambda: _rows_settle(lambda: _ledger_rows(gw), exchanges), "the rows of the full-disk time written after it")
    log = gw.log()
    assert _log_problems(gw) == [], log
    assert _outage_lines(gw) == 1 and "is unavailable (disk full)" in log, log
    assert f"the state folder {gw.state}" in log  # type: ignore[attr-defined]


def test_a_read_only_state_folder_serves_chat_and_refuses_stored_responses_with_one_line(tmpfs_gateway, emu):
    gw = tmpfs_gateway("ro")
    exchanges = _chat_goes_on(gw)
    _refused_before_upstream(gw, emu)
    exchanges += 4
    health = httpx.get(gw.url + "/health", trust_env=False, timeout=10).json()
    assert health["status"] == "ok", health  # chat is served: the gateway is up, its local storage is not
    assert [(s["name"], s["reason"]) for s in health["storage"]] == [("local storage", "not writable")], health
    assert gw.proc is not None
    subprocess.run(["nsenter", "-t", str(gw.proc.pid), "-m", "mount", "-o", "remount,rw",
                    str(gw.state)], check=True, timeout=20)  # type: ignore[attr-defined]
    exchanges += 1 + _served_again(gw, "after a read-only folder")  # with /health
    assert "storage" not in httpx.get(gw.url + "/health", trust_env=False, timeout=10).json()
    exchanges += 1
    _until(lambda: _rows_settle(lambda: _ledger_rows(gw), exchanges), "the rows of the read-only time written after it")
    log = gw.log()
    assert _log_problems(gw) == [], log
    assert _outage_lines(gw) == 1, log


@pytest.mark.parametrize("how", ["stream", "websocket"])
def test_a_stream_whose_response_the_full_folder_cannot_take_ends_in_response_failed(tmpfs_gateway, emu, how):
    import openai

    gw = tmpfs_gateway()
    assert client(gw).responses.create(model="gpt-4o", input="warm").output_text == "Echo: warm"
    emu.switches(gap_ms=300)
    filler = _inside(gw, gw.state / "filler")  # type: ignore[attr-defined]
    rid = _failed_not_completed(_stream_events(gw, how, lambda: _fill(filler)), "local storage")
    filler.unlink()
    emu.switches(gap_ms=0)
    _served_again(gw, "after a mid-stream full disk")
    with pytest.raises(openai.NotFoundError):
        client(gw).responses.retrieve(rid)
    assert _log_problems(gw) == [], gw.log()


def test_a_stored_chat_stream_the_full_folder_cannot_take_ends_in_an_error(tmpfs_gateway, emu):
    import openai

    gw = tmpfs_gateway()
    assert client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "warm"}],
                                              store=True).choices[0].message.content == "Echo: warm"
    emu.switches(gap_ms=300)
    filler = _inside(gw, gw.state / "filler")  # type: ignore[attr-defined]
    cid = _stored_chat_stream_unkept(gw, lambda: _fill(filler), "local storage")
    filler.unlink()
    emu.switches(gap_ms=0)
    _served_again(gw, "after a mid-stream full disk")
    with pytest.raises(openai.NotFoundError):
        client(gw).chat.completions.retrieve(cid)
    assert _log_problems(gw) == [], gw.log()
