"""Which ledger qwen-usage reads (cli/usage_store.py): the one the folder's gateway writes, said when it is a
database the user did not name. Through the real command, a gateway moved to PostgreSQL:
tests/e2e/test_e2e_what_people_see.py."""

from __future__ import annotations

from qwen_gateway.cli import usage_store
from qwen_gateway.tenancy.place import store_note

URL = "postgresql://qwen@db.internal:5432/qwen_gateway"


def test_the_folders_ledger_when_its_gateway_uses_no_database(tmp_path):
    assert usage_store.database(tmp_path, None) == (None, "")
    store_note(tmp_path, "")  # a gateway on the folder: no note
    assert usage_store.database(tmp_path, None) == (None, "")


def test_the_database_the_folders_gateway_uses_said_on_the_way(tmp_path):
    store_note(tmp_path, URL)  # what a gateway started with qwen_state_url writes
    url, said = usage_store.database(tmp_path, None)
    assert url == URL
    assert said.startswith(f"qwen-usage: the gateway on {tmp_path} uses the shared database {URL} (since ")
    assert str(tmp_path / "gateway-store.json") in said and "--state-url ''" in said


def test_what_the_user_names_wins_and_an_empty_url_is_the_folders_own(tmp_path):
    store_note(tmp_path, URL)
    assert usage_store.database(tmp_path, "postgresql://other@host/db") == ("postgresql://other@host/db", "")
    assert usage_store.database(tmp_path, "") == (None, "")
