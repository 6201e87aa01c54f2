"""upstream/dashscope/plans.py: the presets as Alibaba names them in late 2026 (QwenCloud outside China), each plan's
Anthropic-compatible base, a base URL described for people, and the plans' terms (docs/accounts.md's table
and notes kept in step with the code)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from qwen_gateway.upstream.dashscope import plans
from qwen_gateway.upstream.dashscope.plans import (CODING, PAYG, PLAN_LABELS, PLANS, PRESETS, TOKEN, anthropic_base,
                                                   describe_base, plan_of_url, plan_terms, workspace_base_url)

ROOT = Path(__file__).resolve().parents[4]
# Names that scripts, docs and accounts.json files already use: never renamed.
KNOWN_NAMES = ["dashscope-intl", "dashscope-cn", "dashscope-us", "coding-plan", "coding-plan-intl", "token-plan-cn",
               "token-plan-intl"]


def test_every_preset_name_in_use_still_works():
    assert list(PRESETS)[:len(KNOWN_NAMES)] == KNOWN_NAMES


@pytest.mark.parametrize("name,platform_region", [
    ("dashscope-intl", "QwenCloud international (Singapore)"), ("dashscope-us", "QwenCloud US (Virginia)"),
    ("coding-plan-intl", "QwenCloud international"), ("token-plan-intl", "QwenCloud international (Singapore)"),
    ("dashscope-cn", "China (Beijing)"), ("coding-plan", "China"), ("token-plan-cn", "China (Beijing)"),
])
def test_presets_outside_china_say_qwencloud(name, platform_region):
    assert PRESETS[name].region == platform_region


@pytest.mark.parametrize("name,anthropic", [
    ("dashscope-intl", "https://dashscope-intl.aliyuncs.com/apps/anthropic"),
    ("dashscope-cn", "https://dashscope.aliyuncs.com/apps/anthropic"),
    ("dashscope-us", "https://dashscope-us.aliyuncs.com/apps/anthropic"),
    ("coding-plan", "https://coding.dashscope.aliyuncs.com/apps/anthropic"),
    ("coding-plan-intl", "https://coding-intl.dashscope.aliyuncs.com/apps/anthropic"),
    ("token-plan-cn", "https://token-plan.cn-beijing.maas.aliyuncs.com/apps/anthropic"),
    ("token-plan-intl", "https://token-plan.ap-southeast-1.maas.aliyuncs.com/apps/anthropic"),
])
def test_each_plans_anthropic_base_is_derived_from_its_openai_base(name, anthropic):
    preset = PRESETS[name]
    assert anthropic_base(preset.base_url) == preset.anthropic_base_url == anthropic
    assert urlsplit(anthropic).hostname == urlsplit(preset.base_url).hostname  # same host: same key, same region
    assert plan_of_url(anthropic) == preset.plan


def test_a_workspace_domains_anthropic_base():
    base = workspace_base_url("llm-abc123", "ap-southeast-1")
    assert anthropic_base(base) == "https://llm-abc123.ap-southeast-1.maas.aliyuncs.com/apps/anthropic"
    assert anthropic_base(base + "/") == anthropic_base(base)


@pytest.mark.parametrize("url,described", [
    ("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "pay-as-you-go, QwenCloud international (Singapore)"),
    ("https://dashscope-intl.aliyuncs.com/compatible-mode/v1/", "pay-as-you-go, QwenCloud international (Singapore)"),
    ("https://coding.dashscope.aliyuncs.com/v1", "Coding Plan, China"),
    ("https://token-plan.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1",
     "Token Plan, QwenCloud international (Singapore)"),
    ("https://llm-abc123.cn-beijing.maas.aliyuncs.com/compatible-mode/v1",
     "pay-as-you-go, workspace llm-abc123 in cn-beijing"),
    ("https://trial.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1",
     "pay-as-you-go, trial host in ap-southeast-1 (lower limits)"),
    ("https://cn-hongkong.dashscope.aliyuncs.com/compatible-mode/v1", "pay-as-you-go"),  # a host no preset names
    ("http://127.0.0.1:9999/v1", None), ("https://example.com/v1", None),
])
def test_a_base_url_described_by_plan_and_region(url, described):
    assert describe_base(url) == described


def test_the_plans_terms_are_stated_for_the_plans_that_have_them():
    coding, token = plan_terms(CODING), plan_terms(TOKEN)
    assert "coding agents only" in coding and "405" in coding and \
        "Coding Plan is currently only available for Coding Agents" in coding
    assert "interactive AI tools only" in token and all(w in token for w in ("scripts", "backends", "batch"))
    assert plan_terms(PAYG) is None and plan_terms(None) is None
    assert "\n" not in coding + token  # one line each, at add time


# ---- docs/accounts.md says the same --------------------------------------------------------------------------


def _preset_rows() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "accounts.md").read_text(encoding="utf-8")
    rows = [ln.strip().strip("|").split("|") for ln in text.splitlines() if re.match(r"^\| `[a-z-]+` \|", ln)]
    return {cells[0].strip().strip("`"): [c.strip().strip("`") for c in cells[1:]] for cells in rows}


def test_the_docs_preset_table_is_the_code():
    rows = _preset_rows()
    assert list(rows) == list(PRESETS)
    for name, p in PRESETS.items():
        plan_region, base, anthropic, keys, model = rows[name]
        assert plan_region == f"{PLAN_LABELS[p.plan]}, {p.region}", name
        assert (base, anthropic, model) == (p.base_url, p.anthropic_base_url, p.default_model), name
        assert keys == ("sk-sp-…" if p.plan in (CODING, TOKEN) else "sk-…"), name


def test_the_docs_state_the_plans_terms_and_dates():
    text = " ".join((ROOT / "docs" / "accounts.md").read_text(encoding="utf-8").split())
    for said in ("QwenCloud", "Coding Plan is currently only available for Coding Agents", "plan_refused",
                 "interactive AI tools only", "2026-04-15", "30 days' notice", "3 months'",
                 "{WorkspaceId}.{region}.maas.aliyuncs.com", "--no-check"):
        assert said in text, said


@pytest.mark.parametrize("workspace,region", [("ws1\n", "cn-beijing"), ("ws1", "cn-beijing\n")])
def test_a_final_newline_never_reaches_a_workspace_url(workspace, region):
    from qwen_gateway.upstream.dashscope.plans import workspace_base_url

    with pytest.raises(ValueError):
        workspace_base_url(workspace, region)


@pytest.mark.parametrize("url, base", [
    ("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"),
    ("https://ws1.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1/",
     "https://ws1.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1"),
    ("http://127.0.0.1:9/compatible-mode/v1", "http://127.0.0.1:9/compatible-mode/v1"),  # an emulator's
    ("https://coding-intl.dashscope.aliyuncs.com/v1", None),  # the Coding Plan serves chat only
    ("https://token-plan.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1", None),  # not documented
    ("https://portal.qwen.ai/v1", None)])
def test_the_responses_api_is_pay_as_you_gos_compatible_mode_base(url, base):
    assert plans.responses_base(url) == base


def test_the_core_asks_the_plans_of_a_base_url():
    """What the key accounts and `qwen-auth add-key` ask of a provider's plans (provider_registry.KeyPlans)."""
    coding, other = PRESETS["coding-plan-intl"].base_url, "http://127.0.0.1:8000/v1"
    assert PLANS.presets is PRESETS and PLANS.label(coding) == PLAN_LABELS[CODING] and PLANS.label(other) is None
    assert PLANS.billing_of(coding) == "coding" and PLANS.billing_of(other) == ""
    assert PLANS.describe_base(coding) == describe_base(coding) and PLANS.terms(coding) == plan_terms(CODING)
    assert PLANS.key_warning("sk-abc", coding) is not None and PLANS.key_warning("sk-sp-abc", coding) is None
    assert PLANS.workspace_base_url("ws1", "cn-beijing") == workspace_base_url("ws1", "cn-beijing")
    assert PLANS.workspace_model == PRESETS["dashscope-intl"].default_model
