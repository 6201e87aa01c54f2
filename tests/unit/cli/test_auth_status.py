"""`qwen-auth list` and `qwen-auth status` (cli/auth_status.py): the pool's status rows as a table, as in
docs/accounts.md's sample, or as JSON for scripts; the last error of an account that is not ok, web sessions'
details, and where the files are. Run through `qwen-auth`'s main with argv; the rows come from a stand-in pool
(tests/unit/upstream/pool/test_status.py has the rows' own tests), or from a real one over empty folders."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from qwen_gateway.cli import auth as cli, auth_status as cli_status
from qwen_gateway.cli.auth_status import when

EXPIRES = datetime(2026, 11, 22, 16, 51, tzinfo=timezone.utc).timestamp() * 1000  # epoch ms, as status() has it

DOCS_ROWS = [  # docs/accounts.md's sample
    {"name": "default", "kind": "oauth", "state": "ok", "expires_at": EXPIRES, "requests_today": 2,
     "base_url": "http://127.0.0.1:9999/v1", "last_error": None},
    {"name": "work", "kind": "oauth", "state": "cooling_down", "expires_at": EXPIRES,
     "cooldown_until": "2026-11-23T00:00:00Z", "requests_today": 0, "base_url": "http://127.0.0.1:9999/v1",
     "last_error": 'work: quota exhausted: daily quota, back at 2026-11-23T00:00:00Z (Qwen said: "Free allocated '
                   'quota exceeded.")'},
    {"name": "ds", "kind": "key", "state": "ok", "requests_today": 2,
     "base_url": "http://127.0.0.1:9999/compatible-mode/v1", "last_error": None},
    {"name": "cp", "kind": "key", "state": "missing", "requests_today": 0,
     "base_url": "https://coding.dashscope.aliyuncs.com/v1", "last_error": "cp: env var CODING_PLAN_KEY is not set"},
]

DOCS_STATUS = """\
ACCOUNT  KIND   PROVIDER   STATE         EXPIRES               COOLDOWN UNTIL        TODAY  UPSTREAM
default  oauth  dashscope  ok            2026-11-22 16:51 UTC  -                     2      http://127.0.0.1:9999/v1
work     oauth  dashscope  cooling_down  2026-11-22 16:51 UTC  2026-11-23 00:00 UTC  0      http://127.0.0.1:9999/v1
ds       key    dashscope  ok            -                     -                     2      http://127.0.0.1:9999/compatible-mode/v1
cp       key    dashscope  missing       -                     -                     0      https://coding.dashscope.aliyuncs.com/v1
  work: quota exhausted: daily quota, back at 2026-11-23T00:00:00Z (Qwen said: "Free allocated quota exceeded.")
  cp: env var CODING_PLAN_KEY is not set

Qwen Code folder: /home/you/.qwen   gateway state: /home/you/.qwen-gateway
"""


class StandInPool:
    rows: list[dict] = []
    closed = 0

    @classmethod
    def from_settings(cls, settings):
        return cls()

    def status(self) -> list[dict]:
        return [dict(r) for r in self.rows]

    def close(self) -> None:
        type(self).closed += 1


@pytest.fixture
def pool(monkeypatch):
    monkeypatch.setattr(cli_status, "AccountPool", StandInPool)
    StandInPool.rows, StandInPool.closed = [], 0
    return StandInPool


def run(capsys, *args: str, qwen_dir: str = "/home/you/.qwen", state_dir: str = "/home/you/.qwen-gateway"):
    rc = cli.main(["--qwen-dir", qwen_dir, "--state-dir", state_dir, *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_when_reads_epoch_ms_and_iso_times():
    assert when(EXPIRES) == "2026-11-22 16:51 UTC"
    assert when(0) == "1970-01-01 00:00 UTC"
    assert when("2026-11-23T00:00:00Z") == "2026-11-23 00:00 UTC"
    assert when(None) == "-" and when("") == "-"


def test_status_prints_the_docs_sample(pool, capsys):
    pool.rows = DOCS_ROWS
    rc, out, err = run(capsys, "status")
    assert (rc, out, err) == (0, DOCS_STATUS, "")
    assert pool.closed == 1  # the pool (its state file) is closed after reading


def test_status_names_each_accounts_provider(pool, capsys):
    # issue 82: no provider column; a key names its own (a self-hosted server's), else its kind's
    pool.rows = [{"name": "gpu", "kind": "key", "provider": "selfhosted", "state": "ok", "requests_today": 0,
                  "base_url": "http://10.0.0.5:8000/v1"},
                 {"name": "chat", "kind": "web", "state": "ok", "requests_today": 0, "base_url": None},
                 {"name": "accounts.json", "kind": "config", "state": "error", "requests_today": 0,
                  "last_error": "bad"}]
    rows = [line.split()[:3] for line in run(capsys, "status")[1].splitlines()[:4]]
    assert rows == [["ACCOUNT", "KIND", "PROVIDER"], ["gpu", "key", "selfhosted"], ["chat", "web", "qwenweb"],
                    ["accounts.json", "config", "-"]]


def test_list_is_the_short_table(pool, capsys):
    pool.rows = DOCS_ROWS
    rc, out, _ = run(capsys, "list")
    assert rc == 0
    assert out == (
        "NAME     KIND   STATE         EXPIRES               TODAY\n"
        "default  oauth  ok            2026-11-22 16:51 UTC  2\n"
        "work     oauth  cooling_down  2026-11-22 16:51 UTC  0\n"
        "ds       key    ok            -                     2\n"
        "cp       key    missing       -                     0\n")


def test_list_json_has_five_fields_and_status_json_the_whole_rows(pool, capsys):
    pool.rows = DOCS_ROWS[2:3]
    rc, out, _ = run(capsys, "list", "--json")
    assert rc == 0 and json.loads(out) == [{"name": "ds", "kind": "key", "state": "ok", "expires_at": None,
                                            "requests_today": 2}]
    rc, out, _ = run(capsys, "status", "--json")
    assert rc == 0 and json.loads(out) == DOCS_ROWS[2:3]


def test_a_row_without_a_state_or_count_shows_placeholders(pool, capsys):
    pool.rows = [{"name": "odd", "kind": "key"}]
    _, out, _ = run(capsys, "status")
    assert out.splitlines()[1] == "odd      key   dashscope  ?      -        -               0      -"


def test_the_last_error_of_an_ok_or_disabled_account_is_not_repeated(pool, capsys):
    pool.rows = [{"name": "a", "kind": "key", "state": "ok", "last_error": "a: old failure"},
                 {"name": "b", "kind": "key", "state": "needs_login", "last_error": "login expired"}]
    _, out, _ = run(capsys, "status")
    assert "old failure" not in out
    assert "  b: login expired\n" in out  # no "b: " prefix to strip: shown as it is


def test_a_disabled_web_account_gets_its_details_and_the_opt_in_note(pool, capsys):
    pool.rows = [{"name": "chat", "kind": "web", "state": "disabled", "session": "valid", "expires_in_s": None,
                  "refresh": "-", "cookies": 3, "bx_headers": [], "user_agent": "Mozilla/5.0",
                  "last_error": "chat: web accounts are off"}]
    _, out, _ = run(capsys, "status")
    lines = out.splitlines()
    assert lines[2] == ("  chat: web session valid; expiry unknown; refresh -; last punish never; 3 cookies; "
                        "no bx-* headers; user agent set")
    assert "web accounts are off\n" not in out  # disabled: its last error is not repeated
    assert lines[4].startswith("Web accounts are off in qwen-auth's view: The gateway uses them only with "
                               "--set qwen_web_accounts=true.")


def test_no_accounts_says_how_to_add_one_and_where_it_looked(tmp_path, capsys):
    """A real pool over empty folders: nothing to list, in either command."""
    qwen, state = tmp_path / ".qwen", tmp_path / "state"
    for command in ("list", "status"):
        rc, out, err = run(capsys, command, qwen_dir=str(qwen), state_dir=str(state))
        assert (rc, err) == (0, "")
        assert out == ("No accounts. Run `qwen-auth login` (Qwen Code OAuth) or `qwen-auth add-key NAME --preset "
                       f"dashscope-intl --key-env DASHSCOPE_API_KEY`. (Looked in {qwen} and {state}.)\n")
    rc, out, _ = run(capsys, "list", "--json", qwen_dir=str(qwen), state_dir=str(state))
    assert (rc, json.loads(out)) == (0, [])
