"""Account names become file names: only safe ones."""

from __future__ import annotations

import pytest

from qwen_gateway.auth.names import check_name


def test_account_names_are_safe_file_names():
    assert check_name("work-2.b_c") == "work-2.b_c"
    for bad in ("", "../x", "a/b", "default", ".hidden", "x" * 65, "a b", "x.json"):
        with pytest.raises(ValueError):
            check_name(bad)


def test_a_final_newline_is_no_part_of_a_name():
    with pytest.raises(ValueError):  # `$` matches before a final newline: the name would break log lines
        check_name("team\n")
