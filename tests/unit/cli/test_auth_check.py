"""The command around a provider's drift check (cli/auth_check.py): the account found or not, a provider with no
check said, the exit status in the command's docs. The check itself: tests/unit/upstream/dashscope/test_drift.py."""

from __future__ import annotations

import json

from qwen_gateway.cli import auth as cli
from qwen_gateway.cli import auth_check

BASE = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
KEY_TEXT = "sk-unit-secret-key"


def test_the_command_without_such_a_key_account(settings, capsys):
    argv = ["--state-dir", str(settings.state_dir), "--qwen-dir", str(settings.qwen_dir), "check", "ds"]
    assert cli.main(argv) == 5 and capsys.readouterr().err == "qwen-auth: no account named 'ds'\n"
    settings.state_dir.mkdir(parents=True)
    settings.accounts_path.write_text(json.dumps({"accounts": [
        {"name": "ds", "kind": "key", "base_url": BASE, "key_env": "QWEN_UNIT_CHECK_KEY"},
        {"name": "gpu", "kind": "key", "base_url": "http://127.0.0.1:9/v1", "key": KEY_TEXT,
         "provider": "selfhosted"}]}))
    assert cli.main(argv) == 1 and "env var QWEN_UNIT_CHECK_KEY is not set" in capsys.readouterr().err
    # a team's own server is asked too (upstream/selfhosted/drift.py): none listens here
    assert cli.main([*argv[:-1], "gpu"]) == 4 and "could not reach 127.0.0.1:9" in capsys.readouterr().err
    assert "6  `check` found differences" in cli.__doc__



def test_the_help_names_what_the_check_spends():
    assert auth_check.EXIT_DIFFERENT == 6 and auth_check.CACHE_PROBE_TOKENS in auth_check.DESCRIPTION
