"""The unit tests' own fixtures."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _a_state_folder_of_its_own(monkeypatch, tmp_path_factory):
    """A test that builds the gateway with its options' defaults writes the default state folder: its own, never the
    real ~/.qwen-gateway (seen: test_addon.py's steps wrote state.sqlite3 and learned.sqlite3 into root's home)."""
    if "QWEN_GATEWAY_HOME" not in os.environ:
        monkeypatch.setenv("QWEN_GATEWAY_HOME", str(tmp_path_factory.mktemp("state")))
