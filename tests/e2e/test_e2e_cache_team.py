"""The cache doctor for a team (issue 81 item 1): two real gateways on one PostgreSQL, a conversation's turns sent
to either in turn, as a team's balancer does, through the real anthropic SDK (`diagnostics.previous_message_id`)
and openai-python (`prompt_cache_options.comparison_response_id`). Before: every id the other gateway gave was
`previous_message_not_found`, and each gateway numbered the conversation's turns on its own (the 4th turn was
"turn 2" on each). Now the response a client names is found whichever gateway gave it, a change is named against
it, and the ledger numbers the turns once."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.home import CODING_PLAN, Home
from helpers.procs import Gateway, stop_all
from helpers.team import ANTHROPIC_PYTHON, NO_ANTHROPIC, add_key, anthropic_calls, openai_client, until

pytestmark = pytest.mark.e2e
SESSION = '{"device_id": "d0", "account_uuid": "", "session_id": "5b9f0c1e-team-0000-0000-000000000001"}'
SYSTEM = "You are a careful coding agent of the team. Read every file before you change it. " * 40


def params(turns: int, system: str = SYSTEM) -> dict:
    messages = []
    for i in range(turns):
        messages += [{"role": "user", "content": f"Fix the bug in file {i}. " * 20},
                     {"role": "assistant", "content": f"Fixed file {i}."}]
    return {"model": "claude-sonnet-4-6", "max_tokens": 32, "system": system, "messages": messages[:-1],
            "metadata": {"user_id": SESSION}}  # as Claude Code names its session


def turns_in_ledger(pg_url: str, n: int) -> list[tuple]:  # noqa: F811
    with psycopg.connect(pg_url, autocommit=True) as conn:
        def rows() -> list[tuple]:
            try:
                return conn.execute("SELECT conversation, cache_turn FROM usage WHERE cache_turn IS NOT NULL "
                                    "ORDER BY ts").fetchall()
            except psycopg.errors.UndefinedTable:  # no gateway has written its first row yet: none to read
                return []
        until(lambda: len(rows()) >= n, f"{n} turns in the shared ledger", limit=30)
        return rows()


def test_the_ledger_is_waited_for_until_a_gateway_has_made_its_table(pg_url):  # noqa: F811
    """A gateway makes the shared ledger's table when it writes its first row (observe/ledger.py opens the ledger at
    first use), so `turns_in_ledger` may look before the table exists."""
    def make_later() -> None:
        time.sleep(0.5)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE usage (conversation TEXT, cache_turn BIGINT, ts DOUBLE PRECISION)")
            conn.execute("INSERT INTO usage VALUES ('c', 1, 1.0)")
    maker = threading.Thread(target=make_later)
    maker.start()
    try:
        assert turns_in_ledger(pg_url, 1) == [("c", 1)]
    finally:
        maker.join()


@pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
def test_a_conversation_across_two_gateways_is_one_for_the_doctor_and_the_client(tmp_path, emu, pg_url):  # noqa: F811
    homes = [Home(tmp_path / name, emu) for name in ("one", "two")]  # each its folder; the team's one Qwen key
    secret = homes[0].key("emu", path=CODING_PLAN, default_model="qwen3-coder-plus")
    homes[1].key("emu", path=CODING_PLAN, default_model="qwen3-coder-plus", secret=secret)
    envs = [h.env() for h in homes]
    alice = add_key({**envs[0], "QWEN_STATE_URL": pg_url}, "alice")  # the team's keys, on the database
    gws = [Gateway(tmp_path / f"gw{i}", env=env, args=("--set", f"qwen_state_url={pg_url}")) for i, env in enumerate(envs)]
    try:
        for gw in gws:
            gw.launch()
        for gw in gws:
            gw.ready()
        previous = None
        said = []
        for n, gw in zip((2, 3, 4), (gws[0], gws[1], gws[0])):  # each turn on the other gateway
            (out,) = anthropic_calls(gw.url, alice, [{"op": "create", "params": params(n), "diagnose": True,
                                                      "previous": previous}])
            assert "answer" in out, out
            said.append(out["answer"].get("diagnostics"))
            previous = out["answer"]["id"]
            time.sleep(0.3)  # the doctor records a turn once its answer is out
        changed = params(5, SYSTEM + " Today is Friday.")
        (out,) = anthropic_calls(gws[1].url, alice, [{"op": "create", "params": changed, "diagnose": True,
                                                      "previous": previous}])
        said.append(out["answer"]["diagnostics"])
        assert said[:3] == [None, None, None], said  # found on the other gateway: the prefix only grew
        assert said[3]["cache_miss_reason"]["type"] == "system_changed", said  # named against the other's turn
        assert said[3]["cache_miss_reason"]["cache_missed_input_tokens"] > 0, said

        rows = turns_in_ledger(pg_url, 4)
        assert len({c for c, _ in rows}) == 1, rows  # one conversation
        assert [t for _, t in rows] == [1, 2, 3, 4], rows  # numbered once for the team

        client = openai_client(gws[0].url, alice)  # Responses: the id of one gateway's answer named on the other
        first = client.responses.create(model="gpt-4o", instructions=SYSTEM, input="Fix the bug in file 9. " * 20)
        time.sleep(0.3)
        again = openai_client(gws[1].url, alice).responses.create(
            model="gpt-4o", instructions=SYSTEM + " Today is Friday.", input="Fix the bug in file 9. " * 20,
            extra_body={"prompt_cache_options": {"comparison_response_id": first.id}})
        diagnostics = again.model_dump().get("prompt_cache_diagnostics")
        assert diagnostics is not None and diagnostics["type"] == "cache_miss", diagnostics
    finally:
        stop_all(gws)
