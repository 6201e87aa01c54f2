"""A `qwen_state_url` libpq cannot use is refused where it is set, in one line (storage/pg_url.py): libpq's own
parser (`conninfo_to_dict`) and the host names a resolver takes. Before (issue 50), only the scheme was checked:
`?colour=blue`, a space in the host or a 64-character label were taken, and every request then failed with
psycopg's ProgrammingError or Python's UnicodeError, which the usage ledger took for bugs (its rows dropped)."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions

from helpers.observe_testlib import parsed_config
from qwen_gateway.storage.pg_url import StateUrlError, check_url

BASE = "postgresql://gw@db.example:5432/qwen"


@pytest.mark.parametrize("url, said", [
    (BASE + "?colour=blue", 'invalid URI query parameter: "colour"'),  # an option libpq does not know
    ("postgresql://gw@bad host:5432/qwen", "unexpected spaces"),  # libpq's parser
    (BASE + "?host=bad%20host", "it has a space in it"),  # decoded by libpq: the host check's
    ("postgresql://gw@" + "a" * 64 + ":5432/qwen", "longer than 63 characters"),  # psycopg: UnicodeError
    (BASE + "?host=" + "a" * 64 + ".example", "longer than 63 characters"),
    (BASE + "?host=db..example", "is empty"),
    ("postgresql://gw@" + ".".join(["a" * 60] * 5) + "/qwen", "longer than 253 characters"),
    ("postgresql://gw@db%2Fx:5432/qwen", "characters a host name cannot have"),
    (BASE + "?hostaddr=db.example", "is not an IP address"),
    (BASE + "?port=fifty", "is not a port number"),
    ("postgresql://gw@[::1:5432/qwen", "is not a URL"),
])
def test_a_url_libpq_cannot_use_is_refused_in_one_line(url, said):
    with pytest.raises(StateUrlError) as e:
        check_url(url)
    assert said in str(e.value) and "qwen_state_url" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("url", [
    BASE, BASE + "?sslmode=require&application_name=gw&connect_timeout=5",
    "postgres://gw@127.0.0.1/qwen", "postgresql://gw@[::1]:5433/qwen", "postgresql://gw@[fe80::1%25eth0]/qwen",
    "postgresql://gw@/qwen?host=/var/run/postgresql",  # a Unix socket's folder
    "postgresql://gw@qwen_db:5432/qwen",  # compose service names have underscores
    "postgresql://gw@db-1.internal.example./qwen",  # fully qualified, with its dot
    "postgresql://gw@bücher.example/qwen",  # an IDN: IDNA-encoded
    "postgresql://gw@db/qwen?host=db1,db2&port=5432,5433",  # libpq's several hosts
    "postgresql:///qwen",  # libpq's defaults
])
def test_a_url_libpq_takes_is_kept_as_it_is(url):
    assert check_url(url) == url


@pytest.mark.parametrize("url", [BASE + "?passwor%64=s3cret", BASE + "?PASSWORD=s3cret"])
def test_a_password_libpq_would_read_is_refused_however_it_is_spelled(url):
    with pytest.raises(StateUrlError) as e:
        check_url(url)
    assert "s3cret" not in str(e.value) and "PGPASSFILE" in str(e.value)


@pytest.mark.parametrize("url", [BASE + "?colour=blue", "postgresql://gw@" + "a" * 64 + "/qwen"])
def test_the_option_refuses_it_at_configure(url):
    """At start a refused option stops mitmproxy with this line (ingress/startup.py); at run time mitmproxy keeps
    the previous value (mitmweb's options editor answers 400): tests/e2e/test_e2e_state_faults.py."""
    with pytest.raises(exceptions.OptionsError) as e:
        parsed_config(qwen_state_url=url)
    assert "qwen_state_url" in str(e.value) and len(str(e.value).splitlines()) == 1
