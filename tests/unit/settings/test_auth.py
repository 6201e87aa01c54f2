"""auth/ settings: defaults, environment variables, overrides, the one state-folder resolver."""

from __future__ import annotations

import pytest

from qwen_gateway.settings.auth import INTERVAL_ENV, AuthSettings, resolve_state_dir


def test_settings_from_env_and_overrides(monkeypatch, tmp_path):
    for k in ("QWEN_DIR", "QWEN_GATEWAY_HOME", "QWEN_OAUTH_BASE_URL", "QWEN_API_BASE", "QWEN_QUOTA_RESET_HOUR_UTC",
              *INTERVAL_ENV.values()):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    s = AuthSettings.from_env()
    assert s.qwen_dir == tmp_path / ".qwen" and s.state_dir == tmp_path / ".qwen-gateway"
    assert s.oauth_base_url == "https://chat.qwen.ai"
    assert s.default_api_base == "https://dashscope.aliyuncs.com/compatible-mode/v1"
    assert s.client_id == "f0304373b74a44d2b584a3fb70ca9e56" and s.lock_stale_s == 10.0
    monkeypatch.setenv("QWEN_DIR", str(tmp_path / "q"))
    monkeypatch.setenv("QWEN_GATEWAY_HOME", str(tmp_path / "g"))
    monkeypatch.setenv("QWEN_OAUTH_BASE_URL", "http://127.0.0.1:1/")
    monkeypatch.setenv("QWEN_API_BASE", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1")
    monkeypatch.setenv("QWEN_QUOTA_RESET_HOUR_UTC", "16")
    s = AuthSettings.from_env(state_dir=None, oauth_base_url="http://127.0.0.1:2")
    assert s.qwen_dir == tmp_path / "q" and s.state_dir == tmp_path / "g"
    assert s.oauth_base_url == "http://127.0.0.1:2" and s.quota_reset_hour_utc == 16
    assert s.default_api_base == "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
    assert s.creds_path("default").name == "oauth_creds.json" and s.creds_path("w").name == "oauth_creds_w.json"


def test_intervals_are_settings_with_env_vars(monkeypatch, tmp_path):
    for var in INTERVAL_ENV.values():
        monkeypatch.delenv(var, raising=False)
    s = AuthSettings.from_env(qwen_dir=tmp_path, state_dir=tmp_path)
    assert {k: getattr(s, k) for k in INTERVAL_ENV} == {
        "file_check_s": 5.0, "accounts_check_s": 5.0, "refresh_retry_s": 5.0, "refresh_backoff_s": 30.0,
        "refresh_wait_s": 1.0, "lock_stale_s": 10.0}
    for i, var in enumerate(INTERVAL_ENV.values()):
        monkeypatch.setenv(var, f"0.{i + 1}")
    s = AuthSettings.from_env(qwen_dir=tmp_path, state_dir=tmp_path, refresh_wait_s=0.25)
    assert [getattr(s, k) for k in INTERVAL_ENV] == [0.1, 0.2, 0.3, 0.4, 0.25, 0.6]  # an override wins
    monkeypatch.setenv("QWEN_REFRESH_RETRY_S", "soon")
    with pytest.raises(ValueError, match="QWEN_REFRESH_RETRY_S must be a number"):
        AuthSettings.from_env(qwen_dir=tmp_path, state_dir=tmp_path)
    with pytest.raises(ValueError, match="lock_stale_s"):
        AuthSettings(tmp_path, tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9/v1", lock_stale_s=-1)
    with pytest.raises(TypeError, match="unknown AuthSettings field"):
        AuthSettings.from_env(refresh_every_s=1)


def test_one_resolver_for_the_state_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("QWEN_GATEWAY_HOME", raising=False)
    assert resolve_state_dir() == tmp_path / ".qwen-gateway"
    monkeypatch.setenv("QWEN_GATEWAY_HOME", str(tmp_path / "env"))
    assert resolve_state_dir() == tmp_path / "env" == AuthSettings.from_env().state_dir
    assert resolve_state_dir("~/opt") == tmp_path / "opt" == AuthSettings.from_env(state_dir=tmp_path / "opt").state_dir
