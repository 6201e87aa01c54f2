"""A retirement in the catalogue (models/catalogue.py): the loader's rules for `retires`, `successor`,
`successors` and `replaced_by`, and the words the gateway answers a retired model with."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_gateway.models import catalogue
from qwen_gateway.models.catalogue import ROWS, load, retired, retirement_message

HEAD = 'read = "2026-11-27"\n[sources]\nX = {date = "2026-10-10", text = "a notice"}\n'
NEW = '[models."new"]\nsources = "X"\nreleased = "2026"\n'


def toml(tmp_path: Path, old: str, new: str = NEW) -> Path:
    path = tmp_path / "catalogue.toml"
    path.write_text(HEAD + new + '[models."old"]\nsources = "X"\nreleased = "2025"\n' + old, encoding="utf-8")
    return path


def test_the_catalogue_loads_its_series_retirements():
    rows = load(catalogue.PATH)[0]
    assert rows["qwq-plus"].successors == ("qwen3.6-plus", "qwen3.7-max") and rows["qwq-plus"].successor is None


@pytest.mark.parametrize("old,why", [
    ('retires = "2026-10-09"\ncite = {retires = "X"}\n', "a retirement names its sources"),  # names no successor
    ('retires = "2026-10-09"\nsuccessor = "new"\n', "a retirement names its sources"),  # no cite.retires
    ('successor = "new"\ncite = {retires = "X"}\n', "a retirement names its sources"),  # no date
    ('retires = "2026-10-09"\nsuccessors = ["new"]\ncite = {retires = "X"}\n', "a retirement names"),  # no series
    ('retires = "2026-10-09"\nsuccessor = "new"\nsuccessors = ["new"]\nreplaced_by = "the New series"\n'
     'cite = {retires = "X"}\n', "a retirement names"),  # both forms
    ('retires = "2026-10-09"\nsuccessor = "gone"\ncite = {retires = "X"}\n', "successor gone is not a row"),
    ('retires = "2026-10-09"\nreplaced_by = "the New series"\nsuccessors = ["new", "nope"]\ncite = {retires = "X"}\n',
     "successor nope is not a row"),
    ('retires = "2026-10-09"\ncite = {retires = "Q"}\nsuccessor = "new"\n', "cites unknown sources"),
])
def test_the_loader_refuses_a_retirement_it_cannot_answer_for(tmp_path, old, why):
    with pytest.raises(ValueError, match=why):
        load(toml(tmp_path, old))


def test_a_successor_retired_too_is_refused_as_qwens_own_hint_would_give_it(tmp_path):
    """Qwen's 404 for qvq-max suggests qwen-vl-max, retired the same day: never a successor."""
    new = NEW + 'retires = "2026-10-09"\nsuccessor = "newer"\ncite = {retires = "X"}\n'
    new += '[models."newer"]\nsources = "X"\nreleased = "2026"\n'
    with pytest.raises(ValueError, match="successor new retires before it"):
        load(toml(tmp_path, 'retires = "2026-10-09"\nsuccessor = "new"\ncite = {retires = "X"}\n', new))
    rows = load(toml(tmp_path, 'retires = "2026-10-09"\nreplaced_by = "the New series"\nsuccessors = ["newer"]\n'
                               'cite = {retires = "X"}\n', new))[0]
    assert rows["old"].successors == ("newer",) and rows["old"].replaced_by == "the New series"


def test_the_answer_names_the_successor_or_the_series_with_examples():
    assert retirement_message("qwen4-max-preview", ROWS["qwen4-max-preview"]) == (
        "The model `qwen4-max-preview` was retired: Model Studio served it until 2026-11-25. Use `qwen4-max` "
        "instead.")
    assert retirement_message("qwen-turbo-latest", ROWS["qwen-turbo"]) == (
        "The model `qwen-turbo-latest` was retired: Model Studio served it until 2026-10-09. Model Studio names "
        "the Qwen3.6 and Qwen3.7 series as replacements, e.g. `qwen3.6-flash`, `qwen3.7-flash`.")
    assert "e.g. `qwen3.6-plus`, `qwen3.7-plus`." in retirement_message("qvq-max", ROWS["qvq-max"])
    assert "e.g. `qwen3.6-plus`, `qwen3.7-max`." in retirement_message("qwq-plus", ROWS["qwq-plus"])


@pytest.mark.parametrize("model", ["qwen-turbo", "qwen-vl-max", "qwen-vl-plus", "qwq-plus", "qvq-max",
                                   "qwen-turbo-latest", "qwen-vl-max-2025-01-25"])
def test_the_models_retired_on_2026_10_10_are_retired_after_their_last_day(model):
    assert retired(model, "2026-10-09") is None  # their last day served
    gone = retired(model, "2026-10-10")
    assert gone is not None and gone.successors and retired(model) is gone  # today (2026-11-27 or later)


@pytest.mark.parametrize("model", ["qwen4-max-preview", "qwen-turbo", "qwen-vl-max", "qwen-vl-plus", "qwq-plus",
                                   "qvq-max"])
def test_the_engine_answers_a_retired_model_in_the_catalogues_words(model):
    """upstream/engine.py's `still_served`, on every path that builds a body: 404 model_not_found, never sent."""
    from qwen_gateway.errors import GatewayError
    from qwen_gateway.upstream.before_build import still_served
    with pytest.raises(GatewayError) as e:
        still_served(model)
    assert (e.value.status, e.value.code, e.value.param) == (404, "model_not_found", "model")
    assert e.value.message == retirement_message(model, ROWS[model])
    still_served("qwen3.6-plus")  # served: nothing said
