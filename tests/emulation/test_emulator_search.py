"""The emulator's DashScope web search (scripts/emulator/search.py), driven directly over HTTP: `enable_search`
only on search models, sources as `search_info` (shape assumed) and `[ref_N]` markers in the text, whole and
streamed with the markers split across chunks."""

from __future__ import annotations

import pytest

from emulation.test_emulator import API_KEY, emulator_fixtures

pytestmark = pytest.mark.e2e  # starts an emulator process

SEARCH = {"enable_search": True, "search_options": {"enable_source": True, "enable_citation": True,
                                                    "citation_format": "[ref_<number>]"}}

proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY)


@pytest.mark.parametrize("model", ["coder-model", "qwen3-coder-plus", "qwen3-vl-plus"])
def test_enable_search_is_refused_on_models_that_cannot_search(emu, model):
    r = emu.chat(model=model, **SEARCH)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_parameter_error"
    assert f"The model {model} does not support enable_search" in r.json()["error"]["message"]
    assert emu.chat(model=model, enable_search=False).status_code == 200


def test_a_searched_answer_carries_its_sources_and_citation_markers(emu):
    r = emu.chat("rain?", model="qwen-max", **SEARCH)
    assert r.status_code == 200, r.text
    body = r.json()
    results = body["search_info"]["search_results"]
    assert [x["index"] for x in results] == [1, 2] and all(x["url"].startswith("https://") for x in results)
    assert body["choices"][0]["message"]["content"] == "Echo: rain?[ref_1] More on the web[ref_2]."
    plain = emu.chat("rain?", model="qwen-max", enable_search=True).json()  # no sources, no markers asked
    assert "search_info" not in plain and plain["choices"][0]["message"]["content"] == "Echo: rain?"


def test_a_searched_stream_has_sources_first_and_markers_split_across_chunks(emu):
    events = emu.events("rain?", model="qwen3.6-plus", enable_thinking=False, **SEARCH)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["search_info"]["search_results"][0]["index"] == 1
    assert all("search_info" not in c for c in chunks[1:])
    pieces = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
    assert "".join(pieces) == "Echo: rain?[ref_1] More on the web[ref_2]."
    assert not any("[ref_1]" in p for p in pieces)  # the marker spans chunks


@pytest.mark.parametrize("model", ["qwen4-max", "qwen3.7-max", "qwen-flash", "qwen3-max-2026-01-23"])
def test_the_search_models_are_the_catalogues(emu, model):
    """Model Studio's "Web search" page as the catalogue records it (`search = true`, a snapshot as its family)."""
    r = emu.chat("rain?", model=model, enable_thinking=False, **SEARCH)
    assert r.status_code == 200, r.text
    assert r.json()["search_info"]["search_results"][0]["index"] == 1
