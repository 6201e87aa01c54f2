"""The fixtures the accounts' tests share (the credentials in tests/unit/auth/, the pool in tests/unit/upstream/pool/,
`qwen-auth` in tests/unit/cli/): settings with nothing reachable and a fresh account state."""

from __future__ import annotations

import pytest

from qwen_gateway.auth.state import AccountState
from qwen_gateway.settings.auth import AuthSettings


@pytest.fixture
def settings(tmp_path) -> AuthSettings:
    return AuthSettings.from_env(qwen_dir=tmp_path / ".qwen", state_dir=tmp_path / "state",
                                 oauth_base_url="http://127.0.0.1:9", default_api_base="http://127.0.0.1:9/v1")


@pytest.fixture
def state(tmp_path):
    s = AccountState(tmp_path / "state.sqlite3")
    yield s
    s.close()
