"""The systemd user unit `qwen-gateway install-service` writes (cli/service_unit.py): its words quoted for systemd,
its stop timeout after the drain, the settings it carries, the environment file's template. Installing and running
it for real: tests/unit/cli/test_service.py."""

from __future__ import annotations

from pathlib import Path

from qwen_gateway.auth.registry import Registry
from qwen_gateway.cli import service_unit
from qwen_gateway.settings.auth import AuthSettings


def test_the_units_stop_timeout_follows_the_drain():
    assert service_unit.drain_seconds([]) == 30
    assert service_unit.drain_seconds(["--set", "qwen_drain_s=120", "-p", "9000"]) == 120
    assert "TimeoutStopSec=150" in service_unit.unit_text(["--set=qwen_drain_s=120"], Path("/e")).splitlines()


def test_systemd_quoting():
    assert service_unit.systemd_quote("/a/b") == "/a/b"
    assert service_unit.systemd_quote("a b") == '"a b"'
    assert service_unit.systemd_quote('say "hi"') == '"say \\"hi\\""'
    assert service_unit.systemd_quote("100%") == "100%%"
    assert service_unit.systemd_quote("$HOME") == "$$HOME"


def test_the_unit_carries_the_users_settings_quoted_and_never_a_key():
    environ = {"QWEN_DIR": "/home/me/q 1", "QWEN_API_BASE": 'https://x/v1?a="b"', "DASHSCOPE_API_KEY": "sk-secret",
               "QWEN_GATEWAY_KEYS": "sk-qg-secret", "QWEN_USER_AGENT": ""}
    text = service_unit.unit_text(["-p", "9000", "--set", "x=100%"], Path("/home/me/.config/qwen gateway.env"),
                                  environ)
    lines = text.splitlines()
    assert 'Environment="QWEN_DIR=/home/me/q 1"' in lines
    assert 'Environment="QWEN_API_BASE=https://x/v1?a=\\"b\\""' in lines
    assert not any("QWEN_USER_AGENT" in ln for ln in lines)  # empty: not set
    assert "sk-secret" not in text and "sk-qg-secret" not in text  # keys live in the private EnvironmentFile
    assert 'EnvironmentFile="/home/me/.config/qwen gateway.env"' in lines
    assert next(ln for ln in lines if ln.startswith("ExecStart=")).endswith(" -p 9000 --set x=100%%")
    assert text.endswith("\n[Install]\nWantedBy=default.target\n")


def test_the_drain_is_read_from_either_set_form_and_a_bad_value_is_ignored():
    assert service_unit.drain_seconds(["--set", "qwen_drain_s=5", "--set=qwen_drain_s=7"]) == 7
    assert service_unit.drain_seconds(["--set", "qwen_drain_s=soon"]) == 30
    assert service_unit.drain_seconds(["--set"]) == 30  # a trailing --set with nothing after it


def test_the_env_template_names_the_key_accounts_variables_commented_out():
    text = service_unit.env_template(["DASHSCOPE_KEY", "PLAN_KEY"])
    assert "#DASHSCOPE_KEY=\n#PLAN_KEY=" in text and "#QWEN_GATEWAY_KEYS=" in text
    assert not [ln for ln in text.splitlines() if ln and not ln.startswith("#")]  # nothing set: all comments
    assert "#DASHSCOPE_API_KEY=" in service_unit.env_template([])  # an example when no account names one


def test_key_variables_are_the_registrys_key_env_names(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN_GATEWAY_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("QWEN_DIR", str(tmp_path / ".qwen"))
    registry = Registry(AuthSettings.from_env())
    registry.put({"name": "b", "kind": "key", "base_url": "http://x/v1", "key_env": "B_KEY"})
    registry.put({"name": "a", "kind": "key", "base_url": "http://x/v1", "key_env": "A_KEY"})
    registry.put({"name": "s", "kind": "key", "base_url": "http://x/v1", "key": "sk-stored"})
    assert service_unit.key_variables() == ["A_KEY", "B_KEY"]
