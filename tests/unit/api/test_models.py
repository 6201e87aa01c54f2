"""GET /v1/models answered locally (api/models.py): Anthropic's list shape and paging for an Anthropic SDK, and
Codex's catalog refresh answered empty."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.api import models
from qwen_gateway.errors import GatewayError

ROWS = [{"id": f"m{n}", "created": 0} for n in range(5)]


def ids(page: dict) -> list[str]:
    return [m["id"] for m in page["data"]]


def test_anthropics_list_shape():
    page = models.anthropic_list([{"id": "qwen3-max", "created": 86400}])
    assert page == {"data": [{"type": "model", "id": "qwen3-max", "display_name": "qwen3-max",
                              "created_at": "1970-01-02T00:00:00Z", "lifecycle": "active"}],
                    "has_more": False, "first_id": "qwen3-max", "last_id": "qwen3-max"}
    assert models.anthropic_list([]) == {"data": [], "has_more": False, "first_id": None, "last_id": None}


def test_a_retirement_is_told_in_anthropics_terms(monkeypatch):
    monkeypatch.setattr(models.catalogue, "today", lambda: "2026-11-27")
    listed = models.anthropic_list([{"id": "a", "created": 0, "shutdown_date": "2026-12-31"},
                                    {"id": "b", "created": 0, "shutdown_date": "2026-10-09"},
                                    {"id": "c", "created": 0, "shutdown_date": None}])["data"]
    assert [m["lifecycle"] for m in listed] == ["deprecated", "retired", "active"]


def test_a_page_after_an_id():
    page = models.anthropic_page(ROWS, {"limit": "2", "after_id": "m1"})
    assert ids(page) == ["m2", "m3"] and page["has_more"] is True


def test_a_page_before_an_id_is_the_ones_just_before_it():
    page = models.anthropic_page(ROWS, {"limit": "2", "before_id": "m4"})
    assert ids(page) == ["m2", "m3"] and page["has_more"] is False


def test_the_default_page_holds_twenty():
    page = models.anthropic_page([{"id": f"m{n}", "created": 0} for n in range(25)], {})
    assert len(page["data"]) == 20 and page["has_more"] is True


@pytest.mark.parametrize("limit", ["0", "1001", "many"])
def test_a_limit_out_of_anthropics_range_is_refused(limit):
    with pytest.raises(GatewayError) as e:
        models.anthropic_page(ROWS, {"limit": limit})
    assert (e.value.status, e.value.param) == (400, "limit")


def test_a_messages_client_lists_claude_names_then_qwens_chat_models():
    listed = [{"id": "gpt-4o", "owned_by": "qwen-gateway"}, {"id": "qwen3-max", "owned_by": "qwen"},
              {"id": "claude-opus-5-5", "owned_by": "qwen-gateway"},
              {"id": "text-embedding-v4", "owned_by": "qwen"}]
    assert [m["id"] for m in models._for_messages(listed)] == ["claude-opus-5-5", "qwen3-max"]


async def test_codexs_catalog_refresh_is_an_empty_catalog_with_an_etag():
    resp = await models.codex_catalog(None, None, None)
    assert resp.status_code == 200 and json.loads(resp.content) == {"models": []}
    assert resp.headers["etag"] == '"qwen-gateway-empty"'
