"""The pieces a request schema compiles into (api/schema_checks.py): each check refuses what the schema refuses,
with OpenAI's code, its words and the path of the field, and takes a valid value without a word."""

from __future__ import annotations

import pytest

from qwen_gateway.api import schema_checks as sc
from qwen_gateway.api.schema_checks import Invalid


def refusal(check: sc.Check, value: object) -> Invalid:
    with pytest.raises(Invalid) as e:
        check(value)
    return e.value


def test_a_path_is_written_as_openai_names_params():
    e = Invalid("invalid_type", "x")
    for part in ("type", 2, "content", 0, "messages"):  # innermost first, as it is filled in on the way out
        sc.at(part, e)
    assert e.param() == "messages[0].content[2].type"


@pytest.mark.parametrize("types, value, ok", [
    (["string"], "x", True), (["string"], 1, False), (["integer"], 1.0, False), (["number"], 1, True),
    (["integer"], True, False), (["boolean"], False, True), (["null", "string"], None, True), (["object"], [], False),
])
def test_a_type_check_takes_its_types_only(types, value, ok):
    check = sc.of_type(types)
    if ok:
        check(value)
    else:
        assert refusal(check, value).code == "invalid_type"


def test_a_wrong_type_is_said_in_openais_words():
    e = refusal(sc.of_type(["string", "null"]), 5)
    assert e.what == "expected a string or null, but got an integer instead"


def test_a_value_not_listed_names_the_supported_ones():
    check = sc.one_of_values(["auto", "none"], ["string"])
    check("auto")
    e = refusal(check, "sometimes")
    assert (e.code, e.what) == ("invalid_value", '"sometimes" is not one of the supported values: \'auto\', \'none\'')
    assert refusal(check, 3).code == "invalid_type"  # the wrong type is said first
    assert refusal(check, ["auto"]).code == "invalid_type"


def test_true_is_not_the_value_one():
    check = sc.one_of_values([1])
    check(1)
    assert refusal(check, True).code == "invalid_value"


def test_an_object_needs_its_required_keys_and_refuses_unknown_ones():
    check = sc.fields(["model"], {"model": sc.of_type(["string"])}, None, sc.of_type(["object"]), None)
    check({"model": "m"})
    missing = refusal(check, {})
    assert (missing.code, missing.param()) == ("missing_required_parameter", "model")
    unknown = refusal(check, {"model": "m", "extra": 1})
    assert (unknown.code, unknown.param()) == ("unknown_parameter", "extra")
    assert refusal(check, {"model": 5}).param() == "model"
    assert refusal(check, []).code == "invalid_type"


def test_an_array_checks_its_length_then_each_item():
    check = sc.items(sc.of_type(["string"]), 1, 2, sc.of_type(["array"]))
    check(["a", "b"])
    assert refusal(check, []).what == "expected an array of 1 to 2 items, but got 0"
    assert refusal(check, ["a", 1]).param() == "[1]"  # the field holding the array adds its name before it
    assert refusal(check, "a").code == "invalid_type"


def test_options_told_apart_by_a_required_tag():
    check = sc.dispatch("role", {(str, "user"): sc.nothing, (str, "tool"): sc.of_type(["string"])}, "'user', 'tool'")
    check({"role": "user"})
    assert refusal(check, {}).code == "missing_required_parameter"
    wrong = refusal(check, {"role": "robot"})
    assert (wrong.code, wrong.param()) == ("invalid_value", "role")
    assert refusal(check, {"role": ["user"]}).code == "invalid_value"  # unhashable: no option, not a crash
    assert refusal(check, "user").code == "invalid_type"


def test_options_told_apart_by_json_type():
    check = sc.by_kind({"string": sc.nothing, "array": sc.items(sc.nothing, 0, None, sc.nothing)}, ["string", "array"])
    check("x")
    check([1])
    assert refusal(check, 5).what == "expected a string or an array, but got an integer instead"


def test_the_first_of_two_options_that_takes_a_value():
    check = sc.first_of(sc.one_of_values(["a"]), sc.one_of_values(["b"]))
    check("a")
    check("b")
    assert "'b'" in refusal(check, "c").what  # the second option's error
    assert sc.first_of(sc.nothing, sc.one_of_values(["b"])) is sc.nothing


def test_a_chain_of_steps_stops_at_the_first_refusal():
    seen: list[str] = []

    def step(name: str, ok: bool) -> sc.Check:
        def check(v: object) -> None:
            seen.append(name)
            if not ok:
                raise Invalid("invalid_value", name)
        return check
    e = refusal(sc.chain([step("a", True), sc.nothing, step("b", False), step("c", True)]), 1)
    assert e.what == "b" and seen == ["a", "b"]
    assert sc.chain([]) is sc.nothing and sc.chain([sc.nothing]) is sc.nothing


def test_options_with_an_optional_tag_try_only_the_ones_the_tag_allows():
    user = sc.Option({"type": (frozenset({"message"}), False), "role": (frozenset({"user"}), True)},
                     frozenset({"type", "role", "content"}),
                     sc.fields(["role"], {"type": sc.nothing, "role": sc.nothing, "content": sc.of_type(["string"])},
                               None, sc.nothing, None))
    call = sc.Option({"type": (frozenset({"function_call"}), True), "role": (None, False)},
                     frozenset({"type", "name"}),
                     sc.fields(["type", "name"], {"type": sc.nothing, "name": sc.of_type(["string"])}, None,
                               sc.nothing, None))
    check = sc.by_tags("type", [user, call], "'message', 'function_call'")
    check({"role": "user", "content": "hi"})  # no type: a message
    check({"type": "function_call", "name": "f"})
    e = refusal(check, {"role": "user", "content": 5})
    assert (e.code, e.param()) == ("invalid_type", "content")  # the nearest option's error
    assert refusal(check, {"type": "video"}).param() == "type"
