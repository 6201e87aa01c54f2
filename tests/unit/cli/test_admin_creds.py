"""The admin API's credentials (cli/admin_creds.py) and the qwen-keys commands that make them: printed once,
stored as a SHA-256 in a 0600 file written atomically, never a client key's prefix, revoked but kept listed."""

from __future__ import annotations

import hashlib
import stat

from qwen_gateway.cli import admin_creds, keys


def test_add_admin_prints_the_secret_once_and_stores_its_digest(tmp_path, capsys):
    assert keys.main(["add-admin", "lead", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    secret = out[-1]
    assert secret.startswith("sk-qga-") and len(secret) > 40 and "shown once" in out[0]
    path = tmp_path / admin_creds.FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert secret not in text and hashlib.sha256(secret.encode()).hexdigest() in text
    assert admin_creds.who(tmp_path, secret) == "lead"
    assert admin_creds.who(tmp_path, secret + "x") is None
    assert admin_creds.who(tmp_path, "sk-qg-" + secret[7:]) is None  # a client key's prefix: never an admin
    assert not list(tmp_path.glob("*.tmp.*"))  # written atomically, nothing left beside it


def test_a_name_twice_is_refused_and_a_revoked_one_stops_working(tmp_path, capsys):
    secret = admin_creds.add(tmp_path, "lead")
    assert keys.main(["add-admin", "lead", "--state-dir", str(tmp_path)]) == 1
    assert "exists" in capsys.readouterr().err
    assert keys.main(["revoke-admin", "lead", "--state-dir", str(tmp_path)]) == 0
    assert admin_creds.who(tmp_path, secret) is None
    assert keys.main(["list-admins", "--state-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("lead  revoked  created ")
    assert keys.main(["revoke-admin", "lead", "--state-dir", str(tmp_path)]) == 1
    again = admin_creds.add(tmp_path, "lead")  # a revoked name may be given a new credential
    assert admin_creds.who(tmp_path, again) == "lead" and admin_creds.who(tmp_path, secret) is None
