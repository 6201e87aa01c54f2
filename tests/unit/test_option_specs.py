"""What each option accepts (option_specs.py): the refusal names the option, what it got (never a URL's
password) and what it accepts; every declared option's default is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_gateway.config import SPECS
from qwen_gateway.option_specs import OptionSpec, problem, refusal, unknown


def test_every_default_is_a_value_its_option_accepts():
    assert [name for name, spec in SPECS.items() if problem(spec, spec.default)] == []


@pytest.mark.parametrize("spec,good,bad", [
    (OptionSpec("o", int, 1, "", minimum=0), [0, 5], [-1, "5", True]),
    (OptionSpec("o", bool, False, ""), [True, False], ["true", 1]),
    (OptionSpec("o", str, "a", "", choices=("a", "b")), ["b"], ["c"]),
    (OptionSpec("o", str, "", "", kind="url"), ["", "https://h.example/v1", "http://127.0.0.1:9"],
     ["h.example", "ftp://h", "https://"]),
    (OptionSpec("o", str, "", "", kind="model"), ["qwen3-coder-plus"], ["", "two words", "a\tb"]),
    (OptionSpec("o", list, [], "", kind="host"), [["api.openai.com", "[::1]", "10.0.0.1:443"]],
     [["api.openai.com/v1"], ["a b"]]),
    (OptionSpec("o", list, [], "", kind="model_map"), [["gpt-4o=qwen3-coder-plus", "a=b=c"]], [["gpt-4o"], ["=x"]]),
    (OptionSpec("o", list, [], "", kind="limits"), [["coder-model=1000"]], [["m=0"], ["m=x"], ["1000"]]),
    (OptionSpec("o", str, "", "", kind="text"), ["QwenCode/1 (linux)", ""], ["a\x1bb", "a\nb"]),
])
def test_values_are_judged_by_their_declaration(spec, good, bad):
    assert [v for v in good if problem(spec, v)] == []
    assert [v for v in bad if not problem(spec, v)] == []


def test_files_and_folders_are_looked_at(tmp_path: Path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    file, folder = OptionSpec("o", str, "", "", kind="file"), OptionSpec("o", str, "", "", kind="folder")
    assert problem(file, str(a_file)) is None and problem(file, str(tmp_path / "missing"))
    assert problem(folder, str(tmp_path)) is None and problem(folder, str(tmp_path / "new")) is None
    assert problem(folder, str(a_file)) == f"option o: got '{a_file}'; accepts the path of a folder (made if missing)"


def test_a_refusal_shows_what_was_given_but_never_a_password():
    line = refusal("qwen_state_url", "mysql://bob:hunter2@db.example/x", "postgresql://…")
    assert "hunter2" not in line and line.startswith("option qwen_state_url: got 'mysql://bob:…@db.example/x'")
    assert refusal("o", "a\x1b\ud800é", "x") == "option o: got 'a\\x1b\\ud800é'; accepts x"  # seen, and printable
    assert refusal("o", ["a", "b"], "x") == "option o: got 'a', 'b'; accepts x"


def test_an_unknown_name_suggests_the_close_one():
    assert unknown("qwen_default_modle", sorted(SPECS)) == \
        "unknown option qwen_default_modle (did you mean qwen_default_model?)"
    assert unknown("qwen_xyzzy_frobnicate", sorted(SPECS)).endswith("`mitmdump --options` lists them")
