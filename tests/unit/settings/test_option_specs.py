"""What each option accepts (settings/option_specs.py): the refusal names the option, what it got (never a URL's
password, at most the start of a long value) and what it accepts, bounds included. The declared options
themselves (defaults accepted, bounds): tests/unit/settings/test_option_table.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_gateway.settings.option_table import DAY_S, SPECS
from qwen_gateway.settings.option_specs import OptionSpec, problem, refusal, unknown


@pytest.mark.parametrize("spec,good,bad", [
    (OptionSpec("o", int, 1, "", minimum=0), [0, 5], [-1, "5", True]),
    (OptionSpec("o", int, 1, "", minimum=0, maximum=DAY_S), [0, DAY_S], [DAY_S + 1, 10**400]),
    (OptionSpec("o", bool, False, ""), [True, False], ["true", 1]),
    (OptionSpec("o", str, "a", "", choices=("a", "b")), ["b"], ["c"]),
    (OptionSpec("o", str, "", "", kind="url"), ["", "https://h.example/v1", "http://127.0.0.1:9"],
     ["h.example", "ftp://h", "https://", "https://h.example/v1\n"]),  # a final newline too
    (OptionSpec("o", str, "", "", kind="model"), ["qwen3-coder-plus"], ["", "two words", "a\tb", "qwen3-coder-plus\n"]),
    (OptionSpec("o", str, "", "", kind="optional_model"), ["", "qwen3-max"], ["  ", "two words", "qwen3-max\n"]),
    (OptionSpec("o", list, [], "", kind="host"), [["api.openai.com", "[::1]", "10.0.0.1:443"]],
     [["api.openai.com/v1"], ["a b"]]),
    (OptionSpec("o", list, [], "", kind="model_map"), [["gpt-4o=qwen3-coder-plus", "a=b=c"]], [["gpt-4o"], ["=x"]]),
    (OptionSpec("o", list, [], "", kind="limits"), [["coder-model=1000"]], [["m=0"], ["m=x"], ["1000"]]),
    # ASCII digits only, and few ('²' passes isdigit() but not int(); int() refuses 5,000 digits)
    (OptionSpec("o", list, [], "", kind="limits", minimum=1, maximum=10**9), [["m=1", " m = 1000000000 "]],
     [["m=1000000001"], ["m=²"], ["m=١٢"], ["m=" + "9" * 5000], ["m=1_000"]]),
    (OptionSpec("o", str, "", "", kind="text"), ["QwenCode/1 (linux)", ""], ["a\x1bb", "a\nb", "é", "QwenCode/1\n"]),  # a final newline too
    (OptionSpec("o", str, "", "", kind="text", max_length=5), ["abcde"], ["abcdef"]),
    (OptionSpec("o", list, [], "", kind="model_map", max_length=5), [["a=b", "ab=cd"]], [["abc=de"]]),
    # DNS's limits: 253 characters, 63 between dots (Python's resolver raises on a longer label)
    (OptionSpec("o", list, [], "", kind="host"), [["a" * 63 + ".example", ".".join(["a" * 63] * 4)[:253]]],
     [["a" * 64 + ".example"], [".".join(["a" * 63] * 4)[:254]]]),
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


def test_paths_that_cannot_be_a_file_or_folder_are_refused_but_a_read_only_folder_is_not(tmp_path: Path):
    file, folder = OptionSpec("o", str, "", "", kind="file"), OptionSpec("o", str, "", "", kind="folder")
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o500)  # the gateway starts on one (it then only reads)
    assert problem(folder, str(read_only)) is None and problem(folder, "") is None and problem(file, "") is None
    for bad in ("   ", str(tmp_path / ("n" * 300)), str(tmp_path / "a\x00b")):  # blank, over NAME_MAX, a NUL
        assert problem(folder, bad) and problem(file, bad), bad


def test_a_refusal_of_a_huge_value_is_one_short_line():
    line = problem(SPECS["qwen_user_agent"], "x" * (1 << 20))
    assert line is not None and len(line) < 200 and "x" * 80 + "…'" in line
    line = problem(SPECS["qwen_allowed_hosts"], ["a b"] * 1000)
    assert line == "option qwen_allowed_hosts: got 'a b', 'a b', 'a b', … (1000 entries); accepts " \
        + SPECS["qwen_allowed_hosts"].accepts


def test_a_refusal_shows_what_was_given_but_never_a_password():
    line = refusal("qwen_state_url", "mysql://bob:hunter2@db.example/x", "postgresql://…")
    assert "hunter2" not in line and line.startswith("option qwen_state_url: got 'mysql://bob:…@db.example/x'")
    assert refusal("o", "a\x1b\ud800é", "x") == "option o: got 'a\\x1b\\ud800é'; accepts x"  # seen, and printable
    assert refusal("o", ["a", "b"], "x") == "option o: got 'a', 'b'; accepts x"


def test_an_unknown_name_suggests_the_close_one():
    assert unknown("qwen_default_modle", sorted(SPECS)) == \
        "unknown option qwen_default_modle (did you mean qwen_default_model?)"
    assert unknown("qwen_xyzzy_frobnicate", sorted(SPECS)).endswith("`mitmdump --options` lists them")
