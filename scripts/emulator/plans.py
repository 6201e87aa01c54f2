"""What a plan lets call it: the Coding Plan serves coding agents only. Since 2026-03 users of other clients
get HTTP 405 `{"error": "Coding Plan is currently only available for Coding Agents"}` (aaif-goose/goose#8005,
iOfficeAI/AionUi#2555, bkywksj/knowledge-base#14) while Claude Code on the same key is served. Switch
`coding_plan_agents_only` (default off) plays it on the plan's paths: its OpenAI-compatible chat
(`coding-intl.dashscope.aliyuncs.com/v1` is the emulator's `/v1`; pay-as-you-go's `/compatible-mode/v1` is
never refused) and the Anthropic-compatible base's messages."""

from __future__ import annotations

REFUSAL = {"error": "Coding Plan is currently only available for Coding Agents"}
PLAN_PATHS = ("/v1/chat/completions", "/apps/anthropic/v1/messages")
# How the plan tells agents apart is not documented. The emulator's assumption: a User-Agent that names a
# known coding agent (lower case, anywhere in it). goose is left out: its users are among those refused.
CODING_AGENTS = ("claude-cli", "claude-code", "qwencode", "qwen-code", "codex", "opencode", "cline", "kilo",
                 "roo", "crush")


def coding_agent(user_agent: str) -> bool:
    low = user_agent.lower()
    return any(name in low for name in CODING_AGENTS)


def refuses(path: str, user_agent: str, switches: dict) -> bool:
    """The Coding Plan's refusal of a request (`path` without its query) from a client that is not a coding agent."""
    return bool(switches.get("coding_plan_agents_only")) and path.startswith(PLAN_PATHS) and not coding_agent(
        user_agent)
