"""Which PostgreSQL failures are the storage's (storage/pg_faults.py): kept for later as an outage, never a
row lost; anything else is a bug, shown as one."""

from __future__ import annotations

import psycopg
import pytest

from helpers.procs import free_port
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
