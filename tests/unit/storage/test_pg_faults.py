"""Which PostgreSQL failures are the storage's (storage/pg_faults.py): kept for later as an outage, never a
row lost; anything else is a bug, shown as one."""

from __future__ import annotations

import time

import psycopg
import pytest

from helpers import pgserver
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import free_port
from qwen_gateway.storage import pg_faults
from qwen_gateway.storage.pg_faults import cause, unavailable


def failure(cls: type[psycopg.Error], sqlstate: str | None) -> psycopg.Error:
    e = cls("x")
    e.sqlstate = sqlstate  # type: ignore[misc]
    return e


@pytest.mark.parametrize("cls,state", [
    (psycopg.OperationalError, None),  # the connection failed or broke
    (psycopg.OperationalError, "53100"),  # disk full
    (psycopg.OperationalError, "57P01"),  # admin shutdown
    (psycopg.OperationalError, "57014"),  # statement_timeout
    (psycopg.OperationalError, "58030"),  # I/O error
    (psycopg.OperationalError, "08006"),  # connection failure
    (psycopg.InternalError, "25006"),  # read-only transaction
    (psycopg.InterfaceError, None),
])
def test_the_storages_failures_are_outages(cls, state):
    assert unavailable(failure(cls, state))


@pytest.mark.parametrize("cls,state", [
    (psycopg.ProgrammingError, "42703"),  # a wrong column: a bug
    (psycopg.OperationalError, "54000"),  # a statement too large fails whenever it is tried
    (psycopg.IntegrityError, "23505"),
])
def test_other_failures_are_not(cls, state):
    assert not unavailable(failure(cls, state))
    assert not unavailable(ValueError("not psycopg's"))


def _connect_error(url: str, **kw) -> psycopg.Error:
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(url, connect_timeout=5, **kw).close()
    return e.value


def test_a_connection_refused_and_an_unknown_host_are_named_by_what_they_are():
    """Real failures of libpq and psycopg (a port nothing listens on, a name under .invalid, which no resolver
    knows): the operator reads the cause, not the error's class. The password's: tests/e2e/test_e2e_state_causes.py."""
    assert cause(_connect_error(f"postgresql://gw@127.0.0.1:{free_port()}/qwen")) == \
        "down or unreachable: connection refused"
    assert cause(_connect_error("postgresql://gw@qwen-db.invalid/qwen")).startswith(("unknown host", "host name not"))


@pytest.mark.parametrize("text, said", [
    ('connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  password authentication '
     'failed for user "gw"', "password refused"),
    ('connection failed: connection to server at "127.0.0.1", port 5432 failed: fe_sendauth: no password supplied',
     "no password: libpq found none in PGPASSFILE, ~/.pgpass or PGPASSWORD"),
    ("failed to resolve host 'db': [Errno -3] Temporary failure in name resolution",
     "host name not resolved: DNS did not answer"),
    ("x", "down or unreachable: OperationalError"),
])
def test_libpqs_words_for_a_failed_connection(text, said):
    assert cause(psycopg.OperationalError(text)) == said


def test_a_failure_with_a_sqlstate_is_named_by_its_class():
    assert cause(failure(psycopg.errors.DiskFull, "53100")) == "DiskFull"
    assert cause(failure(psycopg.errors.AdminShutdown, "57P01")) == "AdminShutdown"


# ---- the deadline: what fails, not how long a starved process waited (issue 68, item 7) ------------------------


@pytest.mark.skipif(pgserver.unavailable() is not None, reason=str(pgserver.unavailable()))
def test_an_answer_the_server_gave_is_not_cut_however_late_it_is_read(pg_url):
    """A CPU-starved gateway reads its database's answer late: the answer is in the socket, the server is not down.
    The deadline lets it be read (the statement succeeds) where it cut the connection, and the database was taken
    for down ("no answer") four seconds after start on a busy machine."""
    import psycopg
    from psycopg import pq

    import select

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.pgconn.send_query(b"SELECT 42")
        # the server answered (a busy machine's server may take longer than the deadline to: then it did not
        # answer in time, and a cut is right — once seen in CI); the deadline runs from here
        assert select.select([conn.pgconn.socket], [], [], 30)[0], "the server never answered"
        with pg_faults.deadline(conn, 0.2) as clock:
            time.sleep(0.6)  # the reader starved: the answer waits unread past the deadline
            result = conn.pgconn.get_result()
            while result is not None and conn.pgconn.get_result() is not None:
                pass
        assert not clock.expired and result is not None and result.status == pq.ExecStatus.TUPLES_OK
        assert result.get_value(0, 0) == b"42"


@pytest.mark.skipif(pgserver.unavailable() is not None, reason=str(pgserver.unavailable()))
def test_a_server_that_gives_no_answer_is_still_cut_at_its_deadline(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError), pg_faults.deadline(conn, 0.3) as clock:
            conn.execute("SELECT pg_sleep(5)")
        assert clock.expired and time.monotonic() - t0 < 3
