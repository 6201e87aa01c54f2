"""`qwen-keys migrate` (cli/keys_migrate.py) through qwen-keys' main: what it refuses before touching anything
(no direction, the same database twice, a URL with a password), an empty folder, and the line that says what
moved. No database here: tests/e2e/test_e2e_keys_move.py moves keys to and from PostgreSQL."""

from __future__ import annotations

import pytest

from qwen_gateway.cli import keys, keys_migrate
from qwen_gateway.tenancy.move import Moved
from qwen_gateway.tenancy.store import FILENAME


@pytest.fixture(autouse=True)
def no_shared_database(monkeypatch):
    monkeypatch.delenv("QWEN_STATE_URL", raising=False)


@pytest.fixture
def run(tmp_path, capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        try:
            rc = keys.main(["migrate", "--state-dir", str(tmp_path), *argv])
        except SystemExit as e:
            rc = e.code
        out = capsys.readouterr()
        return rc, out.out, out.err
    return run


def test_a_direction_is_needed(run):
    rc, out, err = run()
    assert (rc, out) == (2, "")
    assert "migrate: give --to URL (the folder's keys into a database), --from URL (back), or both" in err


def test_the_same_database_both_ways_is_refused(run):
    rc, _, err = run("--from", "postgresql://gw@db.internal:5432/qwen", "--to", "postgresql://gw@db.internal:5432/qwen")
    assert rc == 2 and "migrate: --from and --to name the same database" in err


def test_an_empty_folder_has_nothing_to_move(run, tmp_path):
    rc, out, err = run("--to", "postgresql://gw@db.internal:5432/qwen")
    assert (rc, err) == (0, "")
    assert out == f"No named keys in {tmp_path / FILENAME}: nothing to move.\n"
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_a_url_with_a_password_is_refused_without_echoing_it(run, tmp_path):
    keys.main(["add", "alice", "--state-dir", str(tmp_path)])
    rc, out, err = run("--to", "postgresql://gw:hunter2@db.internal:5432/qwen")
    assert rc == 2 and "hunter2" not in out + err and "password" in err


@pytest.mark.parametrize("done,line", [
    (Moved(active=2, revoked=1, days=3), "Moved 3 named keys (2 active, 1 revoked), their limits and 3 days of spend "
                                         "from A to B."),
    (Moved(active=1, days=1), "Moved 1 named key (1 active, 0 revoked), their limits and 1 day of spend from A to B."),
    (Moved(active=2, days=0, there=1), "Moved 2 named keys (2 active, 0 revoked), their limits and 0 days of spend "
                                       "from A to B; 1 was there already."),
    (Moved(active=3, there=2), "Moved 3 named keys (3 active, 0 revoked), their limits and 0 days of spend from A to "
                               "B; 2 were there already."),
])
def test_what_was_moved_is_said_in_one_line(done, line):
    assert keys_migrate._said(done, "A", "B") == line
