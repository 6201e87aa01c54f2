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


def _deploy_ini() -> str:
    text = (ROOT / "docs" / "deploy.md").read_text()
    found = re.findall(r"```ini\n(; /etc/pgbouncer/pgbouncer.ini.*?)```", text, re.S)
    assert len(found) == 1, "docs/deploy.md's pgbouncer.ini"
    return found[0]


def test_the_pgbouncer_ini_docs_deploy_md_prints_pools_the_gateways_by_transaction(pg_server):  # noqa: F811
    """issue 82: docs/deploy.md named PgBouncer but printed nothing to copy. Its pgbouncer.ini, as printed but for
    the test's host, port and paths, and a userlist line as it says to write one (the role's SCRAM secret), run a
    real PgBouncer that checks the password, logs in to the database with it, and shares a server connection
    between two clients (transaction pooling)."""
    if no_pgbouncer():
        pytest.skip(no_pgbouncer())
    import psycopg

    from qwen_gateway.storage.pg_follow import plain_connection
    from qwen_gateway.storage.pg_pooler import session_pooled

    db = pg_server.new_database().rsplit("/", 1)[1]
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'qwen'").fetchone():
            pg_server.require_password("qwen", "s3cret")  # scram-sha-256 from 127.0.0.1, as a real database asks
        secret = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'qwen'").fetchone()[0]
    assert secret.startswith("SCRAM-SHA-256$4096:")  # the shape the docs' userlist line shows
    bouncer = PgBouncer(pg_server.port)
    ini = _deploy_ini()
    for printed, here in (("host=db.internal port=5432 dbname=qwen_gateway", f"host=127.0.0.1 port={pg_server.port} "
                                                                             f"dbname={db}"),
                          ("listen_addr = 0.0.0.0", "listen_addr = 127.0.0.1"),
                          ("listen_port = 6432", f"listen_port = {bouncer.port}"),
                          ("auth_file = /etc/pgbouncer/userlist.txt", f"auth_file = {bouncer.root}/users.txt")):
        assert printed in ini, printed
        ini = ini.replace(printed, here)
    ini += f"unix_socket_dir =\nlogfile = {bouncer.root}/pgbouncer.log\npidfile = {bouncer.root}/pgbouncer.pid\n"
    via = f"postgresql://qwen:s3cret@127.0.0.1:{bouncer.port}/qwen_gateway"
    bouncer.start(ini=ini, userlist=f'"qwen" "{secret}"\n', ready_url=via)
    try:
        with psycopg.connect(via, autocommit=True, prepare_threshold=None) as a, \
                psycopg.connect(via, autocommit=True, prepare_threshold=None) as b:
            assert a.execute("SELECT current_user, current_database()").fetchone() == ("qwen", db)
            assert a.execute("SELECT pg_backend_pid()").fetchone() == b.execute("SELECT pg_backend_pid()").fetchone()
        with pytest.raises(psycopg.OperationalError):  # the password is checked
            psycopg.connect(via.replace("s3cret", "wrong"), connect_timeout=5)
        assert session_pooled(lambda: plain_connection(via)) is False
    finally:
        bouncer.stop()
