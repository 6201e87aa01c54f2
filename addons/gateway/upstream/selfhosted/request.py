"""The chat form as an OpenAI-compatible inference server takes it (vLLM's and SGLang's chat completions API): only
the fields it documents go, Model Studio's own switches become the server's (thinking through the chat template's
`enable_thinking`), and what it has no knob for is said on the flow, never sent to be silently ignored."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from ... import request_surface
from ...accounts import Credential
from ...exchange import note
from ...models import catalogue
from ...models.catalogue import Thinking
from ...models.listed import ListedModel
from ...providers import Prompt, Wire
from . import limits, template

# The server's column of the request surface: the chat completions fields the servers document (vLLM's
# ChatCompletionRequest, SGLang's) go, what the chat template takes (`chat_template_kwargs`, thinking, its budget)
# this module writes, what the server has no field for is said. Not `cache_salt`: the gateway's own, per client key
# (a client's could be another tenant's).
_FATES = request_surface.fates("selfhosted")
SENT = frozenset(k for k, f in _FATES.items() if f.sent)
THINKING = "enable_thinking"
NO_KNOB = {k: f.what for k, f in _FATES.items() if f.kind == "drop"}
OFF_EFFORTS = ("none", "minimal")


def chat_body(chat: dict, *, model: str, notes: list[str], listed: ListedModel | None = None,
              prompt: Prompt | None = None, system_first: bool = False, tenant: str = "") -> dict:
    """The server's body for a chat request: the documented fields, thinking on or off as the client asked (its
    `enable_thinking`, else `reasoning_effort` none/minimal as off and any other effort as on; nothing asked: the
    model's own default), usage asked of a stream. With what the server's list says of the model (`listed`): the
    output cap within its window (`prompt`: the prompt's size), a thinking budget in the server's own form. Its
    chat template's rules: system text as one leading message where it takes no other (`system_first`: Qwen3.6 and
    later, or a refusal said so), earlier turns' thinking kept for an agent where the model card asks it. A named
    client key's requests keep a prefix cache of their own on vLLM (`cache_salt`: no tenant can probe another's
    prompts by timing)."""
    body = {k: v for k, v in chat.items() if k in SENT}
    body["model"] = model
    if isinstance(body.get("messages"), list):
        body["messages"] = template.one_system(body["messages"], notes) if system_first else \
            template.no_developer(body["messages"], notes)
    kwargs: dict = dict(chat["chat_template_kwargs"]) if isinstance(chat.get("chat_template_kwargs"), dict) else {}
    thinking = chat.get(THINKING)
    effort = chat.get("reasoning_effort")
    if not isinstance(thinking, bool) and isinstance(effort, str):
        thinking = effort not in OFF_EFFORTS
    if isinstance(thinking, bool):
        kwargs[THINKING] = thinking
    if isinstance(effort, str):
        notes.append(f"reasoning_effort {effort} sent as thinking {'on' if thinking else 'off'} (chat_template_kwargs)")
    if thinking is not False and template.keeps_thinking(model) and template.agent(body) \
            and template.PRESERVE not in kwargs:
        kwargs[template.PRESERVE] = True
        note(notes, f"{template.PRESERVE} sent: {model}'s model card asks it for agents (earlier turns' thinking kept)")
    if kwargs:
        body["chat_template_kwargs"] = kwargs
    if not NO_KNOB.keys().isdisjoint(chat):
        notes += [f"{key} not sent: {why}" for key, why in NO_KNOB.items() if key in chat]
    body = limits.fit(body, window=listed.context if listed is not None else None, prompt=prompt, notes=notes,
                      source="the server's model list")
    budget = chat.get("thinking_budget")
    if isinstance(budget, int) and not isinstance(budget, bool) and thinking is False:
        note(notes, f"thinking_budget {budget} not sent: thinking is off")
    elif isinstance(budget, int) and not isinstance(budget, bool):
        body = template.thinking_budget(body, budget, listed.served_by if listed is not None else "", notes,
                                        listed.server_version if listed is not None else "")
    if tenant and listed is not None and listed.served_by == template.VLLM:
        body["cache_salt"] = salt(tenant)
    if body.get("stream") is True:
        opts = body.get("stream_options")
        body["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
    else:
        body.pop("stream_options", None)  # vLLM refuses it on a whole answer (400 "Stream options can only be …")
    return body


def salt(tenant: str) -> str:
    """A client key's cache salt: the same for each of its requests, its name not shown to the server."""
    return hashlib.sha256(f"qwen-gateway cache salt\0{tenant}".encode()).hexdigest()[:32]


def thinks(body: dict) -> bool | None:
    """Whether the body has the model think: as its chat template is told, None when told nothing (the model's
    own default: Qwen3's hybrid models think)."""
    kwargs = body.get("chat_template_kwargs")
    asked = kwargs.get(THINKING) if isinstance(kwargs, dict) else None
    return asked if isinstance(asked, bool) else None


def continued(body: dict, prefix: str) -> dict | None:
    """The sent body going on from `prefix`, the answer so far, as the final assistant message the chat template
    continues (`continue_final_message`, no generation prompt): only with thinking off (a thinking turn's prefix
    would be rendered after an empty think block) and one choice. None: it cannot."""
    messages, asked = body.get("messages"), thinks(body)
    row = catalogue.find(str(body.get("model") or ""))
    never = asked is None and row is not None and row.thinking is Thinking.NONE  # a model that never thinks
    if not (asked is False or never) or body.get("n") not in (None, 1) or not isinstance(messages, list):
        return None
    return {**body, "messages": [*messages, {"role": "assistant", "content": prefix}],
            "continue_final_message": True, "add_generation_prompt": False}


def wire(cred: Credential, suffix: str, body: dict, *, stream: bool, client_agent: str, gateway_agent: str,
         base: str | None = None) -> Wire:
    """The request: the account's base and key (a server started without --api-key takes any), the client's own
    User-Agent (else the gateway's name), nothing else of the client's."""
    url = (base or cred.base_url).rstrip("/") + "/" + suffix
    parts = urlsplit(url)
    headers = [("Host", parts.netloc), ("Accept", "text/event-stream" if stream else "application/json"),
               ("Content-Type", "application/json"), ("Accept-Encoding", "identity"),
               ("User-Agent", client_agent or gateway_agent)]
    if cred.token:
        headers.append(("Authorization", f"Bearer {cred.token}"))
    return Wire(url, headers, body)
