"""The nearest served names for a model nobody serves (models/suggestions.py)."""

from __future__ import annotations

from qwen_gateway.errors import CLIENT, UpstreamError
from qwen_gateway.models.model_map import ModelMap
from qwen_gateway.models.suggestions import message, nearest, unknown

SERVED = [m["id"] for m in ModelMap("coder-model").list()]


def test_a_typo_finds_the_name_meant_first():
    assert nearest("qwen3-coder-pluss", SERVED)[0] == "qwen3-coder-plus"
    assert nearest("qwen-plsu", SERVED)[0] == "qwen-plus"
    assert nearest("qwen3-coder-plus", ["qwen3-coder-plus", "qwen3-coder-flash"]) == ["qwen3-coder-flash"]


def test_nothing_near_says_where_the_list_is():
    said = message("zzzzzzzz-9", SERVED)
    assert said.startswith("The model `zzzzzzzz-9` does not exist or you do not have access to it.")
    assert "Did you mean" not in said and "GET /v1/models" in said


def test_a_mapped_name_says_what_it_was_asked_as():
    said = message("qwen3-coder-pluss", SERVED, asked="claude-opus-4-5")
    assert "`claude-opus-4-5` is sent to Qwen as `qwen3-coder-pluss`: qwen_model_map" in said
    assert "Did you mean `qwen3-coder-plus`" in said


def test_qwens_refusal_becomes_openais_404_which_no_retry_fixes():
    qwen = UpstreamError(CLIENT, 400, "The model `qwen3-coder-pluss` does not exist or you do not have access to it.",
                         "invalid_request_error", "model_not_found")
    err = unknown(qwen, "qwen3-coder-pluss", SERVED).to_gateway_error()
    assert (err.status, err.type, err.code, err.param) == (404, "invalid_request_error", "model_not_found", "model")
    assert err.headers == {"x-should-retry": "false"} and "`qwen3-coder-plus`" in err.message


# ---- the list's own choice for a model it lacks (issue 79 item 5) ---------------------------------------------

from qwen_gateway.models.suggestions import instead, not_in_list  # noqa: E402


def test_the_lists_own_choice_is_the_newest_of_the_same_family():
    listed = ["qwen3.6-plus", "qwen3.6-coder-plus", "qwen3.7-coder-plus", "qwen3.7-coder-plus-2026-09-01",
              "qwen3-coder-flash", "qwen3.7-max"]
    assert instead("qwen3-coder-plus", listed) == "qwen3.7-coder-plus"
    assert instead("qwen3-max", listed) == "qwen3.7-max"
    assert instead("qwen-plus", listed) == "qwen3.6-plus"
    assert instead("qwen3-coder-plus", ["text-embedding-v4"]) is None  # nothing of its family, nothing near


def test_what_an_account_names_that_its_list_lacks_is_said_with_the_lists_choice():
    named = {"qwen3-coder-plus": "its default model", "qwen3.6-plus": "the model map's claude-opus",
             "qwen3-max": "the model map's gpt-4o"}
    listed = ["qwen3.6-plus", "qwen3.7-coder-plus", "qwen3.7-max"]
    assert not_in_list(named, listed) == [("qwen3-coder-plus", "its default model", "qwen3.7-coder-plus"),
                                          ("qwen3-max", "the model map's gpt-4o", "qwen3.7-max")]
    assert not_in_list(named, []) == []  # no list read: nothing to judge by
