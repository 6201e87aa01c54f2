"""PgBouncer in session mode by mistake is named at start (trust round 6, item 5), with a real PgBouncer in front of
a real PostgreSQL: every statement works through it, so nothing else would tell — but it shares nothing, and a
team's gateways exhaust its servers. Before, nothing warned."""

from __future__ import annotations

import re

import pytest

from helpers.pgbouncer import PgBouncer, unavailable as no_pgbouncer
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import ROOT, Gateway
from helpers.team import team_env, until

pytestmark = pytest.mark.e2e
SAID = "goes through a pooler in session mode (PgBouncer's pool_mode = session)"


def _bouncer(pg_server, mode: str) -> PgBouncer:  # noqa: F811
    if no_pgbouncer():
        pytest.skip(no_pgbouncer())
    return PgBouncer(pg_server.port, pool_size=4, pool_mode=mode).start()


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_how_a_url_is_pooled_is_told_apart(pg_server, pg_url, mode):  # noqa: F811
    from qwen_gateway.storage.pg_follow import plain_connection
    from qwen_gateway.storage.pg_pooler import session_pooled

    bouncer = _bouncer(pg_server, mode)
    try:
        via = bouncer.url(pg_url.rsplit("/", 1)[1])
        for _ in range(3):  # the same answer each time
            assert session_pooled(lambda: plain_connection(via)) is (mode == "session")
            assert session_pooled(lambda: plain_connection(pg_url)) is False  # the database itself
    finally:
        bouncer.stop()


def test_a_gateway_behind_pgbouncer_in_session_mode_says_so_at_start(tmp_path, emu, pg_server, pg_url):  # noqa: F811
    bouncer = _bouncer(pg_server, "session")
    gw = Gateway(tmp_path / "gw", env=team_env(tmp_path, emu), args=(
        "--set", f"qwen_state_url={bouncer.url(pg_url.rsplit('/', 1)[1])}", "--set", f"qwen_state_listen_url={pg_url}"))
    try:
        gw.start()
        until(lambda: SAID in gw.log(), "the warning", limit=30)
        line = next(ln for ln in gw.log().splitlines() if SAID in ln)
        assert "Set pool_mode = transaction" in line and "postgres@127.0.0.1" in line
        shown = next(ln for ln in (ROOT / "docs" / "deploy.md").read_text().splitlines()
                     if ln.startswith("qwen: WARNING: qwen_state_url"))  # as docs/deploy.md prints it, the URL aside
        url = re.compile(r"qwen_state_url \S+ goes")
        assert url.sub("", line[line.index("qwen: WARNING: qwen_state_url"):]) == url.sub("", shown)
        assert sum(SAID in ln for ln in gw.log().splitlines()) == 1
    finally:
        gw.stop()
        bouncer.stop()
