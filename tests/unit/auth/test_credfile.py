"""The credential file qwen-code and the gateway share: its bytes, its mode, its validation, freshness."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from qwen_gateway.auth.credfile import (LOGIN_ORDER, REFRESH_ORDER, CredentialFileError, dump_creds, is_fresh,
    read_creds, write_creds)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_write_creds_is_byte_compatible_with_qwen_code(tmp_path):
    path = tmp_path / "q" / "oauth_creds.json"
    creds = {"expiry_date": 1767225600000, "resource_url": "portal.qwen.ai", "token_type": "Bearer",
             "refresh_token": "rt", "access_token": "at"}
    old = os.umask(0)
    try:
        write_creds(path, creds, LOGIN_ORDER)
    finally:
        os.umask(old)
    raw = path.read_text()
    assert raw == ('{\n  "access_token": "at",\n  "refresh_token": "rt",\n  "token_type": "Bearer",\n'
                   '  "resource_url": "portal.qwen.ai",\n  "expiry_date": 1767225600000\n}')
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    write_creds(path, creds, REFRESH_ORDER)
    assert list(json.loads(path.read_text())) == list(REFRESH_ORDER)
    assert [p.name for p in path.parent.iterdir()] == ["oauth_creds.json"]  # no temp files left


def test_write_creds_drops_none_and_tightens_an_open_file(tmp_path):
    path = tmp_path / "oauth_creds.json"
    path.write_text("{}")
    path.chmod(0o644)
    write_creds(path, {"access_token": "a", "refresh_token": "r", "token_type": "Bearer", "resource_url": None,
                       "expiry_date": 5}, LOGIN_ORDER)
    assert list(json.loads(path.read_text())) == ["access_token", "refresh_token", "token_type", "expiry_date"]
    assert mode(path) == 0o600
    assert dump_creds({"a": "é"}) == '{\n  "a": "é"\n}'  # ensure_ascii=False, like JSON.stringify


@pytest.mark.parametrize("content,problem", [
    ("{not json", "not valid JSON"),
    ('{"access_token": "a", "token_type": "Bearer", "expiry_date": 1}', "not a valid"),
    ('{"access_token": "a", "refresh_token": "r", "token_type": "Bearer", "expiry_date": "soon"}', "numeric"),
    ('{"access_token": "a", "refresh_token": "r", "token_type": "Bearer", "expiry_date": true}', "numeric"),
    ("[]", "not a valid"),
])
def test_read_creds_applies_qwen_codes_validation(tmp_path, content, problem):
    path = tmp_path / "oauth_creds.json"
    path.write_text(content)
    with pytest.raises(CredentialFileError, match=problem) as e:
        read_creds(path)
    assert '"a"' not in str(e.value)
    assert read_creds(tmp_path / "absent.json") is None


def test_freshness_uses_the_30_second_buffer():
    creds = {"expiry_date": 100_000}
    assert is_fresh(creds, now_ms=69_999)
    assert not is_fresh(creds, now_ms=70_000)
