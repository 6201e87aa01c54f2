"""api/function_schema.py: a chat function whose `parameters` is no JSON Schema is OpenAI's 400
`invalid_function_parameters` naming the function (issue 51 item 2: `properties: 99` went to Qwen), while the
schemas clients send (draft 2020-12 and draft-07 forms) are taken."""

from __future__ import annotations

import pytest

from qwen_gateway.api.chat import validate_chat_request
from qwen_gateway.api.function_schema import schema_problem
from qwen_gateway.errors import GatewayError

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}


def fn_tool(parameters: object, name: str = "get_weather") -> dict:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


@pytest.mark.parametrize("parameters, context, words", [  # issue 51 item 2: these went to Qwen
    ({"type": "object", "properties": 99}, "('properties',)", "99 is not of type 'object'"),
    ({"type": "object", "properties": {"a": 5}}, "('properties', 'a')", "5 is not of type 'object', 'boolean'"),
    ({"type": "object", "properties": {"a": {"type": "strin"}}}, "('properties', 'a', 'type')",
     "\"strin\" is not one of 'array', 'boolean', 'integer', 'null', 'number', 'object', 'string'"),
    ({"type": 7}, "('type',)", "7 is not of type 'string', 'array'"),
    ({"type": "object", "required": "a"}, "('required',)", "\"a\" is not of type 'array'"),
    ({"type": "object", "required": ["a", 1]}, "('required', 1)", "1 is not of type 'string'"),
    ({"type": "object", "properties": {"a": {"anyOf": []}}}, "('properties', 'a', 'anyOf')", "[] should be non-empty"),
    ({"type": "object", "properties": {"a": {"type": "array", "items": 3}}}, "('properties', 'a', 'items')",
     "3 is not of type 'object', 'boolean'"),
    ({"type": "object", "properties": {"a": {"enum": "x"}}}, "('properties', 'a', 'enum')", "is not of type 'array'"),
    ({"type": "object", "additionalProperties": "no"}, "('additionalProperties',)", "is not of type 'object', 'boolean'"),
    ({"$defs": {"d": []}}, "('$defs', 'd')", "[] is not of type 'object', 'boolean'"),
])
def test_function_parameters_that_are_no_json_schema_are_refused_naming_the_function(parameters, context, words):
    for body, param in ((CHAT | {"tools": [fn_tool({"type": "object"}, "ok"), fn_tool(parameters)]},
                         "tools[1].function.parameters"),
                        (CHAT | {"functions": [{"name": "get_weather", "parameters": parameters}]},
                         "functions[0].parameters")):
        with pytest.raises(GatewayError) as e:
            validate_chat_request(body)
        err = e.value
        assert (err.status, err.type, err.code, err.param) == (400, "invalid_request_error",
                                                               "invalid_function_parameters", param)
        assert err.message.startswith(f"Invalid schema for function 'get_weather': In context={context}, "), \
            err.message
        assert words in err.message


@pytest.mark.parametrize("parameters", [
    {}, {"type": "object", "properties": {}}, {"type": ["object", "null"]},
    {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "additionalProperties": False,
     "properties": {"a": {"type": "string", "enum": ["x"], "default": "x", "pattern": "^x$", "maxLength": 3},
                    "b": {"type": "array", "items": {"type": "integer", "minimum": 0, "exclusiveMinimum": 0},
                          "maxItems": 2}, "c": True, "d": {"$ref": "#/$defs/D"},
                    "e": {"type": "array", "items": [{"type": "string"}]},  # draft-07's tuple form
                    "f": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
     "required": ["a"], "$defs": {"D": {"type": "object"}}},
])
def test_function_parameters_clients_send_are_taken(parameters):
    body = CHAT | {"tools": [fn_tool(parameters)]}
    assert validate_chat_request(body) is body


def test_a_deep_schema_is_checked_without_recursion():
    deep: dict = {"type": "object"}
    for _ in range(5000):
        deep = {"type": "object", "properties": {"a": deep}}
    assert validate_chat_request(CHAT | {"tools": [fn_tool(deep)]})


def test_a_problem_names_the_path_down_to_it_and_values_are_not_walked():
    assert schema_problem({"properties": {"a": {"items": [{"type": "string"}, {"required": [1]}]}}}) == (
        ("properties", "a", "items", 1, "required", 0), "1 is not of type 'string'")
    # a property named like a keyword is a name; `default`, `enum`, `const` hold data, not schemas
    assert schema_problem({"properties": {"type": {"type": "string"}, "required": True},
                           "default": {"type": 5}, "enum": [{"properties": 1}], "const": {"type": []}}) is None
    assert schema_problem(True) is None and schema_problem([]) == ((), "[] is not of type 'object', 'boolean'")
