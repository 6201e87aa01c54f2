"""The routes (`qwen_routes`, models/routes.py): the rules as written, refused with a clear message when bad, the
defaults after them, the conditions read from the catalogue (never an invented window)."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions

from qwen_gateway.models.routes import (
    FAST, IMAGES, LONG, Rule, Routes, has_image, is_fast, long_target, parse_routes, siblings, window)
from helpers.observe_testlib import parsed_config
from qwen_gateway.pricing.prices import builtin


def test_rules_are_parsed_in_order_with_the_defaults_last():
    routes = parse_routes(["fast=qwen3.6-flash", "images@key:ci=qwen3-vl-plus", "long-context@dialect:Anthropic=off",
                           "fast@agent:Claude-CLI=qwen3-coder-flash"])
    assert [str(r) for r in routes.rules] == [
        "fast=qwen3.6-flash", "images@key:ci=qwen3-vl-plus", "long-context@dialect:anthropic=off",
        "fast@agent:claude-cli=qwen3-coder-flash", "long-context=sibling", "images=vision"]
    assert routes.fast and routes.scoped


def test_nothing_set_keeps_the_defaults_only():
    routes = Routes()
    assert [str(r) for r in routes.rules] == ["long-context=sibling", "images=vision"]
    assert not routes.fast  # no rule for the fast tier: the model name is not even looked at
    assert routes.rule(IMAGES, "openai", "", "") == Rule(IMAGES, "vision")
    assert routes.rule(FAST, "openai", "", "") is None


def test_the_first_matching_rule_wins_and_off_stops_the_condition():
    routes = parse_routes(["images@key:ci=off", "images@agent:codex=qwen3-vl-plus", "fast@dialect:anthropic=qwen-flash"])
    assert routes.rule(IMAGES, "openai", "ci", "codex_cli_rs/0.1") is None  # the key's rule first: off
    assert routes.rule(IMAGES, "openai", "bob", "codex_cli_rs/0.1").target == "qwen3-vl-plus"
    assert routes.rule(IMAGES, "openai", "bob", "OpenAI/Python 1.0").target == "vision"  # the default
    assert routes.rule(FAST, "anthropic", "", "claude-cli/2.0").target == "qwen-flash"
    assert routes.rule(FAST, "openai", "", "claude-cli/2.0") is None


@pytest.mark.parametrize("entry, says", [
    ("fast", "is not condition[@scope]=target"),
    ("fast=", "is not condition[@scope]=target"),
    ("slow=qwen-flash", "the condition 'slow' is not one of long-context, images, fast"),
    ("fast@team:x=qwen-flash", "the scope 'team:x' is not key:NAME"),
    ("fast@key:=qwen-flash", "the scope 'key:' is not key:NAME"),
    ("fast@dialect:gemini=qwen-flash", "the dialect 'gemini' is not one of openai, anthropic"),
    ("fast=gpt-4o", "gpt-4o is not a chat model the catalogue names"),
    ("fast=text-embedding-v4", "text-embedding-v4 is not a chat model"),
    ("long-context=qwen3-coder-plus", "the catalogue gives no context window for qwen3-coder-plus"),
    ("long-context=qwen4-flash", "the catalogue gives no context window for qwen4-flash"),
    ("images=qwen4-flash", "the catalogue does not say qwen4-flash can read images"),
    ("images=qwen3-coder-plus", "qwen3-coder-plus cannot read images"),
    ("images=sibling", "`sibling` is a target of long-context only"),
    ("fast=vision", "`vision` is a target of images only"),
])
def test_a_bad_rule_is_refused_naming_it(entry, says):
    with pytest.raises(ValueError, match="qwen_routes: ") as caught:
        parse_routes([entry])
    assert repr(entry) in str(caught.value) and says in str(caught.value)


def test_a_qwen_model_newer_than_the_catalogue_is_a_fast_target_with_a_warning(caplog):
    # issue 82: `fast=qwen4-flash` stopped the gateway at start; it is a model unknown to the catalogue (no price,
    # no window), said once, and routed as asked
    routes = parse_routes(["fast=qwen4-flash", "fast@key:ci=qwen3.6-flash"])
    assert [str(r) for r in routes.rules][0] == "fast=qwen4-flash"
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith("qwen: qwen_routes: 'fast=qwen4-flash': qwen4-flash is not in the catalogue") and \
        "unpriced" in said
    assert builtin().cost("payg:intl", "qwen4-flash", {"prompt_tokens": 10, "completion_tokens": 5}) \
        is None  # unknown, never $0


def test_the_option_is_parsed_once_and_a_bad_one_refuses_to_start():
    cfg = parsed_config(qwen_routes=["fast=qwen3.6-flash"])
    assert [str(r) for r in cfg.routes.rules][0] == "fast=qwen3.6-flash"
    assert [str(r) for r in parsed_config().routes.rules] == ["long-context=sibling", "images=vision"]
    with pytest.raises(exceptions.OptionsError, match="qwen_routes: 'fast=gpt-4o'"):
        parsed_config(qwen_routes=["fast=gpt-4o"])


def test_windows_come_from_the_catalogue_only():
    assert window("qwen3-max") == 258_048  # its longest input, before its context (262,144)
    assert window("qwen3-max-2026-01-23") == 258_048  # a snapshot: its family's
    assert window("qwen3.6-plus") == 1_000_000
    assert window("qwen3-coder-plus") is None and window("gpt-4o") is None  # not given: never invented


def test_the_long_context_sibling_is_the_same_tier_served_on_the_same_plans():
    assert siblings("qwen3-max")[0] == "qwen4-max"  # newest first; payg-intl and payg-cn both serve it
    assert set(siblings("qwen3-max")) <= {"qwen4-max", "qwen3.8-max", "qwen3.8-max-0902", "qwen3.7-max"}
    assert siblings("qwen3-max-2026-01-23") == ()  # also on the Coding Plan: no larger max there
    assert siblings("qwen3-coder-plus") == ()  # no window in the catalogue: never routed for length
    assert long_target(Rule(LONG, "sibling"), "qwen3-max", 300_000) == "qwen4-max"
    assert long_target(Rule(LONG, "sibling"), "qwen3-max", 5_000_000) is None  # no sibling takes it
    assert long_target(Rule(LONG, "qwen3.6-plus"), "qwen3-max", 300_000) == "qwen3.6-plus"
    assert long_target(Rule(LONG, "qwen3.6-plus"), "qwen3-max", 1_200_000) is None


def test_fast_tiers_and_images():
    for name in ("claude-haiku-4-5-20251001", "claude-3-5-haiku-latest", "gpt-4o-mini", "gpt-5-nano", "o4-mini",
                 "codex-mini-latest", "GPT-4.1-MINI"):
        assert is_fast(name), name
    for name in ("gpt-4o", "claude-sonnet-4-5", "gemini-2.5-pro", "minimax-m2", "qwen3-coder-plus"):
        assert not is_fast(name), name
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    assert has_image([{"role": "user", "content": [{"type": "text", "text": "x"}, image]}])
    assert has_image([{"role": "user", "content": [{"type": "tool_result", "content": [{"type": "image"}]}]}])
    assert not has_image([{"role": "user", "content": "x"}, "not an object"])
