"""Which PostgreSQL failures are the storage's (storage/pg_faults.py): kept for later as an outage, never a
row lost; anything else is a bug, shown as one."""

from __future__ import annotations

import psycopg
import pytest

from qwen_gateway.storage.pg_faults import unavailable


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
