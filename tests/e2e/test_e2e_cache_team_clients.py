"""The cache doctor for a team (issue 81's "Done when"), with the real clients: two real gateways on one PostgreSQL,
one session's turns sent to each in turn, as a team's balancer does.

- Claude Code, unchanged, through the explicit proxy (it asks api.anthropic.com for `diagnostics` and names the
  message before each turn: ../shared/docs/claude-code.md), in its own namespace (tests/helpers/claude_ns.py); the
  gateways reach the database through its Unix socket, which a network namespace does not hide. Every
  `previous_message_id` it sends names a message of the other gateway: each is found (no
  `previous_message_not_found`), the turn that changed its system prompt is named `system_changed`, and the ledger
  numbers the three turns once.
- Codex (`codex exec`, then `exec resume --last` on the other gateway, its `prompt_cache_key` the conversation):
  the ledger numbers its turns once, and the second reads the first's prefix.
Before sharing (each gateway its own doctor), both went wrong: ids from the other gateway not found, turns
numbered per gateway."""

from __future__ import annotations

import psycopg
import pytest

from helpers.claude_ns import claude_world, flows  # noqa: F401  (fixture)
from helpers.home import CODING_PLAN, Home
from helpers.pgserver import PgServer, pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import Gateway, stop_all
from e2e.test_e2e_claude_code import finished, proxy_env
from e2e.test_e2e_cache_team import turns_in_ledger
from e2e.test_e2e_claude_code_diagnostics import LIVE, diagnostics_of
from e2e.test_e2e_codex import Codex, assert_clean, custom_config
from helpers.team import add_key

pytestmark = pytest.mark.e2e


def over_socket(server: PgServer, url: str) -> str:
    """`url`'s database reached through the server's Unix socket (a namespace's gateway has no route to the
    host's loopback; a socket is a file)."""
    return f"postgresql://postgres@/{url.rsplit('/', 1)[1]}?host={server.root / 'sock'}&port={server.port}"


def test_claude_code_across_two_gateways_is_one_conversation(claude_world, pg_server):  # noqa: F811
    world = claude_world
    world.reset_emulator()
    url = pg_server.new_database()
    shared = over_socket(pg_server, url)
    gws = [world.recording_gateway(f"team-{name}", "regular", "--set", f"qwen_state_url={shared}")
           for name in ("a", "b")]
    try:
        mark = world.mark_all(gws[0])
        work = None
        for gw, (prompt, *own) in zip((gws[0], gws[1], gws[0]), (
                ("say hello",), ("say hello again",),
                ("and once more", "--append-system-prompt", "The user prefers answers in French."))):
            r, _, folder = world.claude(prompt, *(("--continue",) if work else ()), *own, *LIVE, env=proxy_env(gw),
                                        again=work, timeout=240)
            finished(r, gw)
            work = work or folder
        asked, starts, answered = diagnostics_of(world.exchanges(mark, 3))
        print(f"\nClaude Code asked: {asked}\nthe gateways answered: {answered}")
        # each later turn names the message the other gateway gave it
        assert [a["previous_message_id"] for a in asked[1:]] == [m["id"] for m in starts[:2]], (asked, starts)
        assert answered[:2] == [None, None], answered  # found, and nothing lost: not previous_message_not_found
        miss = answered[2]["cache_miss_reason"]
        assert miss["type"] == "system_changed" and miss["cache_missed_input_tokens"] > 0, answered
        served = [len([f for f in flows(gw) if "/v1/messages" in f["path"]]) for gw in gws]
        assert served[0] >= 2 and served[1] >= 1, served  # each gateway answered its turns
        rows = turns_in_ledger(url, 3)
        assert len({c for c, _ in rows}) == 1 and [t for _, t in rows] == [1, 2, 3], rows  # numbered once
    finally:
        for gw in gws:
            gw.stop()


def test_codex_across_two_gateways_is_one_conversation(tmp_path, emu, pg_url):  # noqa: F811
    homes = [Home(tmp_path / name, emu) for name in ("one", "two")]  # each its folder; the team's one Qwen key
    secret = homes[0].key("emu", path=CODING_PLAN, default_model="qwen3-coder-plus")
    homes[1].key("emu", path=CODING_PLAN, default_model="qwen3-coder-plus", secret=secret)
    envs = [h.env() for h in homes]
    alice = add_key({**envs[0], "QWEN_STATE_URL": pg_url}, "alice")  # the team's keys, on the database
    gws = [Gateway(tmp_path / f"gw{i}", env=env, args=("--set", f"qwen_state_url={pg_url}"))
           for i, env in enumerate(envs)]
    try:
        for gw in gws:
            gw.launch()
        for gw in gws:
            gw.ready()
        codex = Codex(tmp_path, "team", custom_config(gws[0]), QWENPROXY_API_KEY=alice)
        log, _ = codex.run("say pong")
        assert_clean(log)
        (codex.home / "config.toml").write_text(custom_config(gws[1]))  # the balancer sends the next turn there
        log, _ = codex.run("say pong again", resume=True)
        assert_clean(log)
        rows = turns_in_ledger(pg_url, 2)
        assert len({c for c, _ in rows}) == 1 and [t for _, t in rows] == [1, 2], rows
        with psycopg.connect(pg_url, autocommit=True) as conn:
            causes = conn.execute("SELECT cache_miss FROM usage WHERE cache_turn = 2").fetchall()
        assert causes == [(None,)], causes  # the second turn read the first's prefix: no miss, no cause
    finally:
        stop_all(gws)
