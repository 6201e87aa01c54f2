"""qwen-keys (cli/keys.py) run through its main with argv on a state folder under tmp_path: a key printed once as
the last line and only its SHA-256 stored (the file 0600), limits set and shown, revoke, rotate and delete, the
list as docs/keys.md shows it, and the mistakes refused with what to do. No database: tests/e2e/test_e2e_keys*.py
run the command against PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import json
import stat
from pathlib import Path

import pytest

from qwen_gateway.cli import keys
from qwen_gateway.tenancy.store import FILENAME, KeyStore


@pytest.fixture(autouse=True)
def no_shared_database(monkeypatch):
    monkeypatch.delenv("QWEN_STATE_URL", raising=False)


@pytest.fixture
def run(tmp_path, capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        command, rest = argv[0], argv[1:]
        try:
            rc = keys.main([command, "--state-dir", str(tmp_path), *rest])
        except SystemExit as e:  # argparse's refusals
            rc = e.code
        out = capsys.readouterr()
        return rc, out.out, out.err
    return run


def records(tmp_path) -> dict:
    store = KeyStore.local(tmp_path)
    try:
        return {r.name: r for r in store.keys()}
    finally:
        store.close()


def test_add_prints_the_key_once_as_the_last_line_and_stores_only_its_digest(run, tmp_path):
    rc, out, err = run("add", "alice", "--rpm", "3")
    lines = out.splitlines()
    key = lines[-1]
    assert (rc, err) == (0, "")
    assert lines[:3] == [f"Added key alice (rpm 3) to {tmp_path / FILENAME}.",
                         "No gateway is running on it: each reads the keys when it starts.",
                         "The key is shown once, here; only its SHA-256 is stored. Clients send it as their API key:"]
    assert key.startswith("sk-qg-") and len(key) > 40
    path = tmp_path / FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(FILENAME))
    assert key.encode() not in stored and key[6:20].encode() not in stored
    rec = records(tmp_path)["alice"]
    assert (rec.digest, rec.rpm, rec.revoked) == (hashlib.sha256(key.encode()).digest(), 3, False)


def test_two_adds_give_two_different_keys(run):
    assert run("add", "a")[1].splitlines()[-1] != run("add", "b")[1].splitlines()[-1]


def test_limits_set_shown_and_removed(run, tmp_path):
    run("add", "ci", "--daily-tokens", "20", "--monthly-usd", "$5")
    rc, out, _ = run("set", "ci", "--tpm", "100000", "--monthly-usd", "0.5")
    assert (rc, out) == (0, "Key ci: tpm 100,000, daily-tokens 20, monthly-usd $0.500000.\n"
                            "No gateway is running on it: each reads the keys when it starts.\n")
    rc, out, _ = run("set", "ci", "--tpm", "0", "--daily-tokens", "0", "--monthly-usd", "0")
    assert (rc, out) == (0, "Key ci: no limits.\nNo gateway is running on it: each reads the keys when it starts.\n")


def test_set_without_a_limit_is_refused(run):
    run("add", "ci")
    rc, out, err = run("set", "ci")
    assert rc == 2 and out == ""
    assert "set: give at least one of --rpm, --tpm, --daily-tokens, --monthly-usd (0 removes a limit)" in err


def test_revoke_then_rotate_makes_it_active_with_a_new_key(run, tmp_path):
    first = run("add", "alice")[1].splitlines()[-1]
    assert run("revoke", "alice")[:2] == (0, "Revoked key alice: gateways refuse it (401).\n"
                                             "No gateway is running on it: each reads the keys when it starts.\n")
    assert records(tmp_path)["alice"].revoked
    rc, out, _ = run("rotate", "alice")
    new = out.splitlines()[-1]
    assert rc == 0 and out.splitlines()[:3] == ["New key for alice (it was revoked: active again); the old key no longer "
                                                "works.", "No gateway is running on it: each reads the keys when it "
                                                "starts.", "The new key is shown once, here:"]
    rec = records(tmp_path)["alice"]
    assert new != first and rec.digest == hashlib.sha256(new.encode()).digest() and not rec.revoked
    rc, out, _ = run("rotate", "alice")
    assert "(it was revoked" not in out


def test_delete_the_last_key_says_the_gateways_need_none_again(run, tmp_path):
    run("add", "a")
    run("add", "b")
    rc, out, _ = run("delete", "a")
    assert rc == 0 and out == ("Deleted key a: its record and spend are gone, and its 0 stored objects (the usage "
                               "ledger keeps its requests); gateways refuse it (401).\n"
                               "No gateway is running on it: each reads the keys when it starts.\n")
    rc, out, _ = run("delete", "b")
    assert out.splitlines()[-2] == ("No named key is left: running gateways no longer require one (on loopback; the "
                                    "keys of qwen_client_keys_file still work).")
    assert records(tmp_path) == {}


@pytest.mark.parametrize("command", ["set", "revoke", "rotate", "delete"])
def test_a_key_that_does_not_exist(run, command):
    run("add", "alice")
    rc, out, err = run(command, "bob", *(["--rpm", "1"] if command == "set" else []))
    assert (rc, out) == (1, "")
    assert err == "qwen-keys: no key named 'bob' (qwen-keys list shows them)\n"


def test_adding_a_name_twice(run):
    run("add", "alice")
    rc, _, err = run("add", "alice")
    assert rc == 1 and err == ("qwen-keys: key 'alice' exists; revoke it first, `rotate` it for a new key, or `set` "
                               "its limits\n")


@pytest.mark.parametrize("name", ["-x", "a b", "ünï", "a" * 65, "a/b", "", "alice\n"])
def test_names_shown_in_logs_and_labels_are_plain(run, tmp_path, name):
    rc, _, err = run("add", "--", name) if name.startswith("-") else run("add", name)
    assert rc == 2 and "a key name is letters, digits, '@', '.', '_' or '-' (max 64)" in err
    assert not (tmp_path / FILENAME).exists()


@pytest.mark.parametrize("option,value,message", [
    ("--rpm", "-1", "not a whole number ≥ 0: '-1'"), ("--tpm", "1.5", "not a whole number ≥ 0: '1.5'"),
    ("--monthly-usd", "-2", "not an amount of USD ≥ 0: '-2'"), ("--monthly-usd", "nan", "not an amount of USD ≥ 0"),
    ("--monthly-usd", "inf", "not an amount of USD ≥ 0"), ("--monthly-usd", "five", "not an amount of USD ≥ 0"),
])
def test_limits_must_be_amounts(run, option, value, message):
    rc, _, err = run("add", "alice", option, value)
    assert rc == 2 and message in err


def test_list_before_any_key_creates_nothing(run, tmp_path):
    assert run("list") == (0, "No named keys yet (qwen-keys add NAME).\n", "")
    assert run("list", "--json") == (0, "[]\n", "")
    assert not (tmp_path / FILENAME).exists()


def test_list_as_json(run):
    run("add", "alice", "--rpm", "3")
    rc, out, _ = run("list", "--json")
    assert rc == 0 and json.loads(out) == [{
        "name": "alice", "state": "active", "rpm": 3, "tpm": None, "daily_tokens": None, "monthly_usd": None,
        "tokens_today": 0, "requests_today": 0, "refused_today": 0, "usd_this_month": 0.0,
        "unpriced_this_month": 0, "plan_requests_this_month": 0, "plan_tokens_this_month": 0, "last_used": "-"}]


def item(name, state, rpm=None, daily=None, usd=None, tokens=0, requests=0, refused=0, spent=0.0, plan_r=0, plan_t=0,
         last="-", unpriced=0) -> dict:
    return {"name": name, "state": state, "rpm": rpm, "tpm": None, "daily_tokens": daily, "monthly_usd": usd,
            "tokens_today": tokens, "requests_today": requests, "refused_today": refused, "usd_this_month": spent,
            "unpriced_this_month": unpriced, "plan_requests_this_month": plan_r, "plan_tokens_this_month": plan_t,
            "last_used": last}


def test_the_table_as_docs_keys_md_shows_it():
    rows = [item("alice", "active", rpm=3, tokens=15, requests=3, refused=2, spent=0.000051,
                 last="2026-11-23 14:02 UTC"),
            item("ci", "revoked", daily=20, usd=5.0, tokens=22, requests=1, refused=2, spent=0.000070,
                 last="2026-11-23 14:02 UTC")]
    assert keys.table(rows) == """\
NAME   STATE    TODAY                  THIS MONTH  LAST USED
alice  active   15 tokens, 3 requests  $0.000051   2026-11-23 14:02 UTC
  limits: rpm 3; 2 refused today
ci     revoked  22 tokens, 1 request   $0.000070   2026-11-23 14:02 UTC
  limits: daily-tokens 20, monthly-usd $5.00; 2 refused today"""
    assert keys.table(rows, wide=True) == """\
NAME   STATE    RPM  TPM  DAILY TOKENS  MONTHLY USD  TODAY                             THIS MONTH  LAST USED
alice  active   3    -    -             -            15 tokens, 3 requests, 2 refused  $0.000051   2026-11-23 14:02 UTC
ci     revoked  -    -    20            $5.00        22 tokens, 1 request, 2 refused   $0.000070   2026-11-23 14:02 UTC"""


def test_requests_no_price_counted_are_said_beside_the_usd():
    """Unknown is a value: the month's USD counts what had a price, and says how many answers had none."""
    lines = keys.table([item("bob", "active", requests=3, spent=0.000051, unpriced=2)], wide=True).splitlines()
    assert "$0.000051 + 2 unpriced" in lines[1]
    assert "$0 + 1 unpriced" in keys.table([item("eve", "active", requests=1, unpriced=1)], wide=True)
    assert keys.table([item("eve", "active", requests=1, unpriced=1)]).splitlines()[-1] == "  1 unpriced this month"


def test_plan_units_get_a_column_when_any_key_used_them():
    rows = [item("cp", "active", requests=1, plan_r=1, plan_t=0), item("tp", "active", plan_t=1200)]
    lines = keys.table(rows, wide=True).splitlines()
    assert lines[0].split("  ")[-2:] == ["PLAN THIS MONTH", "LAST USED"]
    assert "1 request  " in lines[1] and "1,200 tokens" in lines[2]


def test_exit_3_says_what_was_done_before_which_gateways_did_not_confirm(tmp_path, run):
    # issue 82: on one terminal "Not confirmed …" came before "Revoked key …"; the real command, both streams on one
    # pipe as a terminal has them, and a gateway's socket that takes the question and never answers
    assert run("add", "alice")[0] == 0
    (tmp_path / "gateways").mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as deaf:
        deaf.bind(str(tmp_path / "gateways" / "4242.sock"))
        deaf.listen()
        done = subprocess.run([str(Path(sys.executable).parent / "qwen-keys"), "revoke", "alice", "--state-dir",
                               str(tmp_path), "--wait", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=60, env={**os.environ, "QWEN_STATE_URL": ""})
    assert done.returncode == 3, done.stdout
    assert done.stdout.splitlines()[0] == "Revoked key alice: gateways refuse it (401)."
    assert done.stdout.splitlines()[1].startswith("qwen-keys: Not confirmed within "
                                                  "0.5 s by pid 4242"), done.stdout
