"""tests/helpers/procs.py, the e2e tests' gateway process: what it is started with."""

from __future__ import annotations

from pathlib import Path

from helpers.procs import Gateway


def test_a_gateway_whose_test_names_no_state_folder_keeps_its_state_in_its_workdir(tmp_path, monkeypatch):
    """A gateway started with the worker's environment alone wrote the machine's ~/.qwen-gateway (a crash test's
    state.sqlite3 was found there after a run)."""
    monkeypatch.delenv("QWEN_GATEWAY_HOME", raising=False)
    assert Gateway(tmp_path / "gw").environment()["QWEN_GATEWAY_HOME"] == str(tmp_path / "gw" / "state")
    given = Gateway(tmp_path / "gw", env={"QWEN_GATEWAY_HOME": "/elsewhere"}).environment()
    assert given["QWEN_GATEWAY_HOME"] == "/elsewhere"
    own_home = Gateway(tmp_path / "gw", env={"HOME": str(tmp_path)}).environment()
    assert "QWEN_GATEWAY_HOME" not in own_home or Path(own_home["QWEN_GATEWAY_HOME"]) != tmp_path / "gw" / "state"
