"""Alibaba Cloud Model Studio's keyed plans: presets for `qwen-auth add-key`, and whether a key fits a plan; what the
core asks of them (provider_registry.KeyPlans) is `PLANS`, this provider's `Provider.plans`.

The international platform is now called QwenCloud (the dashscope domains still work), and workspace
domains `{WorkspaceId}.{region}.maas.aliyuncs.com` are what Alibaba recommends. A base URL and a key must come
from the same plan and region (a mismatch is a 401):

| Plan | Keys | OpenAI-compatible base URL |
|---|---|---|
| pay-as-you-go | `sk-…` | `https://dashscope-intl.aliyuncs.com/compatible-mode/v1` (Singapore), `dashscope` (Beijing), `dashscope-us` (Virginia); workspace domains `https://{WorkspaceId}.{region}.maas.aliyuncs.com/compatible-mode/v1` |
| Coding Plan | `sk-sp-…` | `https://coding.dashscope.aliyuncs.com/v1`, `https://coding-intl.dashscope.aliyuncs.com/v1` |
| Token Plan | `sk-sp-…` | `https://token-plan.cn-beijing.maas.aliyuncs.com/compatible-mode/v1`, `…ap-southeast-1…` |

Each has an Anthropic-compatible base on the same host, `/apps/anthropic` (`anthropic_base`).
Sources: Model Studio's "Base URL overview", "Coding Plan quick start" and "Token Plan quick start" pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

PAYG, CODING, TOKEN = "payg", "coding", "token"
PLAN_LABELS = {PAYG: "pay-as-you-go", CODING: "Coding Plan", TOKEN: "Token Plan"}
PLAN_KEY_PREFIX = "sk-sp-"  # Coding Plan and Token Plan keys; pay-as-you-go keys are other `sk-` keys


@dataclass(frozen=True)
class Preset:
    name: str
    plan: str
    region: str
    base_url: str
    default_model: str

    @property
    def anthropic_base_url(self) -> str:
        return anthropic_base(self.base_url) or ""


# The names are kept as they are: scripts, docs and accounts.json files use them. "QwenCloud" is the
# international platform's name now (the same dashscope hosts and keys); mainland China's keep their region.
QWENCLOUD = "QwenCloud"
PRESETS = {p.name: p for p in (
    Preset("dashscope-intl", PAYG, f"{QWENCLOUD} international (Singapore)",
           "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "qwen3-coder-plus"),
    Preset("dashscope-cn", PAYG, "China (Beijing)", "https://dashscope.aliyuncs.com/compatible-mode/v1",
           "qwen3-coder-plus"),
    Preset("dashscope-us", PAYG, f"{QWENCLOUD} US (Virginia)", "https://dashscope-us.aliyuncs.com/compatible-mode/v1",
           "qwen3-coder-plus"),
    Preset("coding-plan", CODING, "China", "https://coding.dashscope.aliyuncs.com/v1", "qwen3-coder-plus"),
    Preset("coding-plan-intl", CODING, f"{QWENCLOUD} international", "https://coding-intl.dashscope.aliyuncs.com/v1",
           "qwen3-coder-plus"),
    Preset("token-plan-cn", TOKEN, "China (Beijing)",
           "https://token-plan.cn-beijing.maas.aliyuncs.com/compatible-mode/v1", "qwen3.6-plus"),
    Preset("token-plan-intl", TOKEN, f"{QWENCLOUD} international (Singapore)",
           "https://token-plan.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1", "qwen3.6-plus"),
)}
WORKSPACE_DEFAULT_MODEL = "qwen3-coder-plus"
WORKSPACE_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")  # \Z: no final newline
REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+(?:-\d{1,2})?\Z")  # cn-beijing, ap-southeast-1, eu-central-1


def workspace_base_url(workspace: str, region: str) -> str:
    """A pay-as-you-go workspace-dedicated domain's OpenAI-compatible base URL. Raises ValueError."""
    if not WORKSPACE_RE.match(workspace or ""):
        raise ValueError("--workspace takes a workspace id (letters, digits and '-'), as shown in the Model "
                         "Studio console")
    if not REGION_RE.match(region or ""):
        raise ValueError("--region takes a region id such as cn-beijing, ap-southeast-1 or eu-central-1")
    return f"https://{workspace.lower()}.{region}.maas.aliyuncs.com/compatible-mode/v1"


def plan_of_url(url: str) -> str | None:
    """Which plan a Model Studio base URL belongs to (PAYG, CODING, TOKEN), or None for any other host."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host.endswith(".dashscope.aliyuncs.com") and host.split(".")[0] in ("coding", "coding-intl"):
        return CODING
    if host.startswith("token-plan.") and host.endswith(".maas.aliyuncs.com"):
        return TOKEN
    if re.fullmatch(r"(?:[a-z0-9-]+\.)?dashscope(?:-[a-z]+)?\.aliyuncs\.com", host) or \
            host.endswith(".maas.aliyuncs.com"):
        return PAYG
    return None


def describe_base(url: str) -> str | None:
    """A Model Studio base URL for people: "plan, region" (a preset's), "pay-as-you-go, workspace W in R", the
    plan alone for other Model Studio hosts, or None for any other host."""
    plan = plan_of_url(url)
    if plan is None:
        return None
    base = url.rstrip("/")
    preset = next((p for p in PRESETS.values() if p.base_url == base), None)
    if preset is not None:
        return f"{PLAN_LABELS[preset.plan]}, {preset.region}"
    labels = (urlsplit(url).hostname or "").lower().rstrip(".").split(".")
    if plan == PAYG and labels[-3:] == ["maas", "aliyuncs", "com"] and len(labels) == 5:
        if labels[0] == "trial":  # Alibaba's trial hosts, not a workspace: lower limits
            return f"{PLAN_LABELS[PAYG]}, trial host in {labels[1]} (lower limits)"
        return f"{PLAN_LABELS[PAYG]}, workspace {labels[0]} in {labels[1]}"
    return PLAN_LABELS[plan]


# What each plan's terms allow, said once when a key of the plan is added (sources: docs/accounts.md).
PLAN_TERMS = {
    CODING: "the Coding Plan serves coding agents only: it answers other clients HTTP 405 \"Coding Plan is "
            "currently only available for Coding Agents\" (the gateway passes each client's User-Agent on, and "
            "answers such a refusal as 403 plan_refused after trying another account)",
    TOKEN: "the Token Plan's terms allow interactive AI tools only, no scripts, backends or batch jobs: a gateway "
           "that serves a team through this key should keep to that",
}


def plan_terms(plan: str | None) -> str | None:
    """The one-line rule a plan's terms set for its keys (Coding Plan, Token Plan), or None."""
    return PLAN_TERMS.get(plan or "")


def billing_of(url: str) -> str:
    """How requests through a base URL are paid, as the price table (pricing/prices.py) names it: `payg:intl`,
    `payg:cn`, `payg:us` (pay-as-you-go, by the region whose price list applies), `coding`, `token` (a plan's
    own unit), or "" (unknown: OAuth logins, web sessions, any other host). Workspace domains are priced by
    their region: `cn-*` as China (Beijing), `us-*` as US (Virginia), others as international (Singapore)."""
    plan = plan_of_url(url)
    if plan in (CODING, TOKEN):
        return plan
    if plan != PAYG:
        return ""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    labels = host.split(".")
    if host.endswith(".maas.aliyuncs.com") and len(labels) >= 5:
        region = labels[-4]  # {workspace}.{region}.maas.aliyuncs.com
    else:
        region = {"dashscope": "cn-beijing", "dashscope-us": "us-east-1"}.get(labels[-3], "ap-southeast-1")
    return "payg:cn" if region.startswith("cn-") else "payg:us" if region.startswith("us-") else "payg:intl"


def key_warning(key: str, plan: str | None) -> str | None:
    """Why `key` probably does not work with `plan` (a sentence that never contains the key), or None."""
    if plan is None or not key:
        return None
    key = key.strip()
    label = PLAN_LABELS[plan]
    if not key.startswith("sk-"):
        return f"this key does not look like a Model Studio key (those start with sk-); the {label} endpoint " \
               "will likely refuse it (401)"
    if plan in (CODING, TOKEN) and not key.startswith(PLAN_KEY_PREFIX):
        return f"{label} keys start with {PLAN_KEY_PREFIX}; this one looks like a pay-as-you-go key, which the " \
               f"{label} endpoint refuses (401)"
    if plan == PAYG and key.startswith(PLAN_KEY_PREFIX):
        return f"this looks like a Coding Plan or Token Plan key ({PLAN_KEY_PREFIX}…), which pay-as-you-go " \
               "endpoints refuse (401); use a coding-plan* or token-plan-* preset"
    return None


def responses_base(url: str) -> str | None:
    """A pay-as-you-go base (regional or workspace domain) whose `/responses` is Model Studio's own Responses API
    ("OpenAI compatible - Responses": `…/compatible-mode/v1/responses`): the base itself; None for the Coding
    Plan (its `/v1` serves chat only), the Token Plan (not documented) and any other URL."""
    base = url.rstrip("/")
    if not urlsplit(base).path.endswith("/compatible-mode/v1") or plan_of_url(base) == TOKEN:
        return None
    return base


def anthropic_base(url: str) -> str | None:
    """A keyed plan's Anthropic-compatible base (Model Studio pay-as-you-go, Coding Plan, Token Plan and
    workspace domains serve it as `/apps/anthropic` on the host of their OpenAI-compatible base), from the
    OpenAI-compatible base URL; None when the URL is no such base."""
    parts = urlsplit(url.rstrip("/"))
    for tail in ("/compatible-mode/v1", "/v1"):
        if parts.path.endswith(tail):
            return f"{parts.scheme}://{parts.netloc}{parts.path[:-len(tail)]}/apps/anthropic"
    return None


class ModelStudioPlans:
    """The plans as the core asks of a provider's (provider_registry.KeyPlans): of a key account's base URL."""

    presets = PRESETS
    workspace_model = WORKSPACE_DEFAULT_MODEL

    def workspace_base_url(self, workspace: str, region: str) -> str:
        return workspace_base_url(workspace, region)

    def billing_of(self, base_url: str) -> str:
        return billing_of(base_url)

    def label(self, base_url: str) -> str | None:
        plan = plan_of_url(base_url)
        return PLAN_LABELS[plan] if plan else None

    def describe_base(self, base_url: str) -> str | None:
        return describe_base(base_url)

    def terms(self, base_url: str) -> str | None:
        return plan_terms(plan_of_url(base_url))

    def key_warning(self, key: str, base_url: str) -> str | None:
        return key_warning(key, plan_of_url(base_url))


PLANS = ModelStudioPlans()
