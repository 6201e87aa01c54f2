"""Logins a killed process left in temp files (auth/stranded.py), without a process: which are adopted (a valid,
newer login of the same account, written after the login file) and which are left alone or removed. Killed
processes for real: tests/unit/auth/test_filelock.py."""

from __future__ import annotations

import json
import os
import time

import pytest

from qwen_gateway.auth import stranded
from qwen_gateway.auth.credfile import LOGIN_ORDER, dump_creds, read_creds, write_creds
from unit.auth.test_filelock import login, temp_of  # a login and qwen-code's temp file, as written


def test_a_valid_newer_login_left_in_a_temp_file_is_adopted(tmp_path):
    path = tmp_path / "oauth_creds.json"
    write_creds(path, login(10), LOGIN_ORDER)
    os.utime(path, (time.time() - 60, time.time() - 60))  # written a minute ago; the temp just now
    newer = login(3600, access="at-new", refresh="rt-new")
    tmp = temp_of(path, newer)
    expected = tmp.read_bytes()
    found = stranded.recover(path)
    assert found.adopted == tmp.name and not found.left and not found.removed
    assert path.read_bytes() == expected and read_creds(path)["refresh_token"] == "rt-new"
    assert os.stat(path).st_mode & 0o777 == 0o600 and not tmp.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["oauth_creds.json"]
    assert "adopted" in found.lines("default")[0] and tmp.name in found.lines("default")[0]


def test_the_newest_of_several_is_adopted_and_the_older_copies_removed(tmp_path):
    path = tmp_path / "oauth_creds.json"
    write_creds(path, login(10), LOGIN_ORDER)
    os.utime(path, (time.time() - 60, time.time() - 60))
    older = temp_of(path, login(1800, access="at-1", refresh="rt-1"), age_s=30)
    newest = temp_of(path, login(3600, access="at-2", refresh="rt-2"))
    found = stranded.recover(path)
    assert found.adopted == newest.name and found.removed == [older.name]
    assert read_creds(path)["access_token"] == "at-2" and not older.exists() and not newest.exists()


@pytest.mark.parametrize("case", ["garbage", "half written", "not a login", "another account", "open to others",
                                  "not newer", "login rewritten since", "no login file"])
def test_what_is_never_adopted(tmp_path, case):
    path = tmp_path / "oauth_creds.json"
    if case != "no login file":
        write_creds(path, login(10), LOGIN_ORDER)
        os.utime(path, (time.time() - 60, time.time() - 60))
    before = path.read_bytes() if path.exists() else None
    newer = login(3600, access="at-new", refresh="rt-new")
    tmp = {
        "garbage": lambda: temp_of(path, "\x00\x01 not json"),
        "half written": lambda: temp_of(path, dump_creds(newer)[:40]),
        "not a login": lambda: temp_of(path, json.dumps({"access_token": "x"})),
        "another account": lambda: temp_of(path, {**newer, "resource_url": "dashscope.aliyuncs.com"}),
        "open to others": lambda: temp_of(path, newer, mode=0o644),
        "not newer": lambda: temp_of(path, login(5, access="at-new", refresh="rt-new")),
        "login rewritten since": lambda: temp_of(path, newer, age_s=120),  # the file was written after it
        "no login file": lambda: temp_of(path, newer),
    }[case]()
    kept = tmp.read_bytes()
    found = stranded.recover(path)
    assert found.adopted is None
    assert (path.read_bytes() if path.exists() else None) == before  # the login file untouched, never deleted
    if case in ("not newer", "login rewritten since"):  # a superseded copy of this account's login: removed
        assert found.removed == [tmp.name] and not tmp.exists()
    else:  # what the gateway cannot vouch for stays as it is, said once
        assert found.left and found.left[0][0] == tmp.name and tmp.read_bytes() == kept
        assert tmp.name in found.lines("default")[0]


def test_no_temp_file_no_work(tmp_path):
    path = tmp_path / "oauth_creds.json"
    write_creds(path, login(10), LOGIN_ORDER)
    (tmp_path / "oauth_creds_work.json.tmp.0f8e3c1e-0000-4000-8000-000000000000").write_text("another account's")
    found = stranded.recover(path)
    assert (found.adopted, found.removed, found.left, found.lines("default")) == (None, [], [], [])


def jwt(user: str, exp: float) -> str:
    import base64

    claims = base64.urlsafe_b64encode(json.dumps({"id": user, "exp": int(exp)}).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{claims}.sig"


@pytest.mark.parametrize("user", ["u-1", "u-2"])
def test_a_web_session_is_adopted_only_for_the_same_user(tmp_path, user):
    from qwen_gateway.auth import web_session as ws

    path = tmp_path / "chat.json"
    ws.save(path, ws.new_session(jwt("u-1", time.time() + 30), [], user_agent=None, bx={}))
    os.utime(path, (time.time() - 60, time.time() - 60))
    newer = ws.new_session(jwt(user, time.time() + 900), [], user_agent=None, bx={})
    tmp = temp_of(path, json.dumps(newer.to_json()))
    found = stranded.recover(path, ws.STRANDED)
    if user == "u-1":
        assert found.adopted == tmp.name and ws.load(path) == newer
    else:
        assert found.adopted is None and found.left == [(tmp.name, "another account's")] and tmp.exists()
