"""`qwen-auth check NAME [--deep]` on a team's own server (providers.Provider.drift): what the server says of itself
against what agents need of it. Without --deep it spends nothing: its list (`GET /v1/models`: the models, each one's
window) and its release (`/version`), a default model it does not serve, a window too small for an agent. --deep sends
two small requests on the account's model: `tool_choice: "auto"` with one tool (a server started without
`--enable-auto-tool-choice --tool-call-parser …` refuses it, and Codex and Claude Code send it), and thinking asked
(the reasoning comes apart from the answer only with a reasoning parser). The start lines to fix each are
docs/accounts.md's. Never the key."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ...accounts import Credential
from ...drift_report import Report, cleaned
from .models import parse, said, version_of

# An agent's window: Claude Code's first prompt is ~13,000-23,000 tokens and grows each turn, and its answers get
# what is left; below this the docs' start lines (131,072, or the model's own) are worth the server's memory.
AGENT_WINDOW = 65536
PROBE_TOOL = {"type": "function", "function": {"name": "get_time", "description": "The time now",
                                               "parameters": {"type": "object", "properties": {}}}}


def check(client: Any, cred: Credential, report: Report, *, deep: bool = False, model: str | None = None,
          cache_probe: bool = True) -> None:
    """Fills `report` (`client`: an httpx.Client; `cache_probe` is Model Studio's: no such probe here)."""
    base = cred.base_url.rstrip("/")
    headers = {"Authorization": f"Bearer {cred.token}"} if cred.token else {}
    resp = client.get(base + "/models", headers=headers)
    listed = parse(cred.account, resp.content, _version(client, base, headers)) if resp.status_code == 200 else None
    if listed is None:
        report.diff("the server's list", "", "", f"GET {base}/models answered {resp.status_code} "
                    f"({cleaned(resp.text, cred.token, 120)}): the models and their windows are unknown")
    else:
        report.ok(said(listed))
        if cred.default_model and cred.default_model not in listed.models:
            report.diff("default model", "", "", f"{cred.default_model} is not served (the server serves "
                        f"{', '.join(listed.models) or 'nothing'}): qwen-auth add-key {cred.account} --replace "
                        f"--default-model {next(iter(listed.models), 'MODEL')}, or serve it")
    probed = model or (cred.default_model if listed is None or cred.default_model in listed.models else "") or \
        next(iter(listed.models if listed is not None else ()), "")
    window = listed.models[probed].context if listed is not None and probed in listed.models else None
    if window is not None and window < AGENT_WINDOW:
        report.diff("window", "", "", f"{probed}'s is {window:,} tokens: an agent's prompt (Claude Code's ~20,000 "
                    f"and growing) leaves its answers little — start the server with --max-model-len 131072 (or the "
                    f"model's own; SGLang: --context-length)")
    elif window is None and listed is not None:
        report.skipped.append(f"window: the server does not say {probed or 'its model'}'s")
    if deep and probed:
        _probe_tools(client, base, headers, cred, probed, report)
        _probe_reasoning(client, base, headers, cred, probed, report)


def _version(client: Any, base: str, headers: dict) -> str:
    parts = urlsplit(base)
    try:
        resp = client.get(f"{parts.scheme}://{parts.netloc}/version", headers=headers)
    except Exception:  # no answer there (SGLang's release is elsewhere): its release unknown
        return ""
    return version_of(resp.status_code, resp.content)


def _chat(client: Any, base: str, headers: dict, report: Report, body: dict) -> Any:
    resp = client.post(base + "/chat/completions", headers=headers, json=body)
    report.requests += 1
    if resp.status_code == 200:
        usage = resp.json().get("usage") or {}
        report.spent += int(usage.get("total_tokens") or 0)
    return resp


def _probe_tools(client: Any, base: str, headers: dict, cred: Credential, model: str, report: Report) -> None:
    resp = _chat(client, base, headers, report, {"model": model, "max_tokens": 8, "tools": [PROBE_TOOL],
                                                 "tool_choice": "auto",
                                                 "messages": [{"role": "user", "content": "Say hi."}]})
    if resp.status_code == 200:
        report.ok('tool calls: tool_choice "auto" taken (a tool parser is set)')
    elif resp.status_code == 400 and "tool choice" in resp.text.lower():
        report.diff("tool calls", "", "", 'the server refuses tool_choice "auto", which Codex and Claude Code send: '
                    "start it with --enable-auto-tool-choice --tool-call-parser qwen3_coder (Qwen3.5 and later; "
                    "qwen3_xml for the 3.8 Flash; SGLang: --tool-call-parser)")
    else:
        report.skipped.append(f"tool calls: the probe answered {resp.status_code} "
                              f"({cleaned(resp.text, cred.token, 120)})")


def _probe_reasoning(client: Any, base: str, headers: dict, cred: Credential, model: str, report: Report) -> None:
    resp = _chat(client, base, headers, report, {"model": model, "max_tokens": 64, "chat_template_kwargs": {
        "enable_thinking": True}, "messages": [{"role": "user", "content": "Say hi."}]})
    if resp.status_code != 200:
        report.skipped.append(f"reasoning: the probe answered {resp.status_code} "
                              f"({cleaned(resp.text, cred.token, 120)})")
        return
    message = ((resp.json().get("choices") or [{}])[0] or {}).get("message") or {}
    if message.get("reasoning") or message.get("reasoning_content"):
        report.ok("reasoning apart from the answer (a reasoning parser is set)")
    elif "<think>" in str(message.get("content") or "") or "</think>" in str(message.get("content") or ""):
        report.diff("reasoning", "", "", "the model's thinking arrives inside the answer's text (clients show it as "
                    "the answer): start the server with --reasoning-parser qwen3")
    else:
        report.skipped.append("reasoning: the model did not think when asked (a model without thinking)")
