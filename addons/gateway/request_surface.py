"""The request surface, each field declared once: what every chat-form field is called in each client dialect and
what each provider does with it. The dialects (api/) copy their scalar fields into the chat form through `carry`,
and note the ones with no Qwen equivalent through `ignored`; the providers (upstream/) read their column through
`fates`. Hand code stays only for structure (messages and input, tools, reasoning and thinking), and names itself
here (`Hand`), so a new knob is one row. tests/repo/test_request_surface.py holds the table to the request schemas
the gateway checks (api/request_schemas.json, Messages' shape.FIELDS): every property has a row, no row a property
none has.

A dialect's column: "" (it has no such field), its name (dotted: a key inside an object, `text.verbosity`),
copied into the chat form as it is when not null, or a `Hand`: the dialect's own function translates it (a shape
of its own). A dialect's field that never becomes a chat-form field is a `Kept` row: the gateway's own, refused,
or accepted with no equivalent (noted on the flow, `IGNORED_NOTE`).

A provider's column, a `Fate`: SEND as it is; `rename(to)`; `rule(fn)`: sent through the provider's function
(`module.function` in its package), which may lower, clamp or move it; `read(fn)`: read by that function, which
sends what it means, and not sent itself; OWN: the gateway's own (answered or kept before Qwen), not sent;
`drop(why)`: not sent, noted on the flow. `gate`: the catalogue's column that decides it per model.

A provider with no column of its own (a new OpenAI-compatible host: its package and its line in provider_list.py,
nothing here) has the default one, `DEFAULT_COLUMN`: each field as an OpenAI-compatible server takes it. Every field
of OpenAI's chat schema SEND, as it is; the gateway's own (OWN in every provider's column: `store`, `metadata`,
`service_tier`) OWN; Qwen's own (`extra`) dropped, noted, since a strict server refuses a field it does not know. A
provider that needs more (a rule, a rename) writes its column."""

from __future__ import annotations

from dataclasses import dataclass, fields

DIALECTS = ("chat", "responses", "messages", "completions")  # a batch's lines are chat bodies
IGNORED_NOTE = "{}: accepted, no Qwen equivalent"


@dataclass(frozen=True)
class Fate:
    kind: str  # SEND, RENAME, RULE, READ, OWN or DROP
    what: str = ""  # the new name, the function (`module.function`), or why it is dropped or kept

    @property
    def sent(self) -> bool:
        """Whether the field goes on in the provider's body (as it is, or as its rule leaves it)."""
        return self.kind in ("send", "rule")


SEND, OWN = Fate("send"), Fate("own", "the gateway's own")


def rename(to: str) -> Fate:
    return Fate("rename", to)


def rule(fn: str) -> Fate:
    return Fate("rule", fn)


def read(fn: str) -> Fate:
    return Fate("read", fn)


def drop(why: str) -> Fate:
    return Fate("drop", why)


@dataclass(frozen=True)
class Hand:
    names: tuple[str, ...]  # the dialect's properties it reads
    fn: str  # the dialect's function that translates them (`module.function` under api/)


def hand(fn: str, *names: str) -> Hand:
    return Hand(names, fn)


@dataclass(frozen=True)
class Field:
    chat: str  # its name in the chat form (the chat dialect's own: a chat body is the chat form)
    # a provider's column, under the provider's name (`fates`); a provider with none has DEFAULT_COLUMN
    dashscope: Fate
    selfhosted: Fate
    qwenweb: Fate
    responses: str | Hand = ""
    messages: str | Hand = ""
    completions: str | Hand = ""
    extra: bool = False  # one of Qwen's own fields (openai-python's `extra_body`), beyond OpenAI's chat schema
    gate: str = ""  # the catalogue's column (models/catalogue.Model) that decides it per model


@dataclass(frozen=True)
class Kept:
    """A dialect's field that never becomes a chat-form field."""
    dialect: str
    name: str
    fate: str  # HONOURED (by the gateway itself), REFUSED (a 400 naming it), IGNORED (noted) or HANDLED (structure)
    what: str  # the function that honours or refuses it (`module.function` under api/), or what becomes of it


HONOURED, REFUSED, IGNORED, HANDLED = "honoured", "refused", "ignored", "hand"
_NO_WEB = drop("Qwen Chat web accounts have no such setting")
_NO_SEARCH = drop("a self-hosted model does not search the web")


def _sampling(name: str, *, messages: bool = True, completions: bool = True, responses: bool = True,
              dashscope: Fate = SEND) -> Field:
    """A sampling knob every server takes as it is and the web app has none of."""
    return Field(name, dashscope, SEND, _NO_WEB, responses=name if responses else "",
                 messages=name if messages else "", completions=name if completions else "")


FIELDS = (
    # structure: each dialect's hand code, each provider's own
    Field("model", rule("request.chat_to_qwen"), rule("request.chat_body"), read("request.completion_body"),
          hand("request.translate", "model"), hand("request.to_chat", "model"),
          hand("completions.completions_to_chat", "model")),  # the model map, then the route's model
    Field("messages", rule("rules.system_roles"), rule("template.one_system"), read("request.flatten"),
          hand("request.translate", "input", "instructions"), hand("request.to_chat", "messages", "system"),
          hand("completions.completions_to_chat", "prompt")),
    Field("tools", rule("request.chat_to_qwen"), SEND, read("tools.describe"), hand("request.translate", "tools"),
          hand("request._tools", "tools")),
    Field("tool_choice", rule("knobs.thinking_knobs"), SEND, read("tools.describe"),
          hand("request.translate", "tool_choice"), hand("request._tool_choice", "tool_choice")),
    Field("parallel_tool_calls", rule("request.chat_to_qwen"), SEND, _NO_WEB,
          hand("request.translate", "parallel_tool_calls"), hand("request._tool_choice", "tool_choice")),
    Field("response_format", rule("knobs.thinking_knobs"), SEND, _NO_WEB, hand("request.translate", "text"),
          hand("request._thinking", "output_config")),
    Field("reasoning_effort", rule("knobs.thinking_knobs"), read("request.chat_body"), read("request._thinking"),
          hand("request.translate", "reasoning"), hand("request._thinking", "thinking", "output_config"),
          gate="thinking"),
    Field("enable_thinking", rule("knobs.thinking_knobs"), read("request.chat_body"), read("request._thinking"),
          hand("request.translate", "reasoning"), hand("request._thinking", "thinking"), extra=True,
          gate="thinking"),
    Field("thinking_budget", rule("knobs.thinking_knobs"), read("template.thinking_budget"), _NO_WEB,
          messages=hand("request._thinking", "thinking"), extra=True, gate="budget"),
    Field("chat_template_kwargs", SEND, read("request.chat_body"), _NO_WEB, extra=True),
    Field("web_search_options", read("search.search_knobs"), _NO_SEARCH, read("request.refuse_unsupported"),
          hand("websearch.responses_options", "tools"), hand("websearch.messages_search", "tools"), gate="search"),
    Field("enable_search", SEND, _NO_SEARCH, _NO_WEB, extra=True, gate="search"),
    Field("search_options", SEND, _NO_SEARCH, _NO_WEB, extra=True, gate="search"),
    Field("vl_high_resolution_images", rule("rules.qwen_code_shape"),
          drop("the server reads images at its own resolution"), _NO_WEB, extra=True, gate="vision"),
    Field("stream", rule("params.stream_whole"), SEND, OWN, hand("request.translate", "stream"),
          hand("request.to_chat", "stream"), "stream", gate="stream_only"),
    Field("stream_options", rule("request.chat_to_qwen"), rule("request.chat_body"), OWN,
          completions="stream_options"),  # usage always asked of Qwen, the client's only if it asked
    # sampling
    _sampling("temperature", dashscope=rule("params.sampling_ranges")),
    _sampling("top_p", dashscope=rule("params.sampling_ranges")),
    Field("top_k", SEND, SEND, _NO_WEB, messages="top_k", extra=True),
    # the output cap (after the three above: the order a web account notes them in)
    Field("max_tokens", rename("max_completion_tokens"), rule("limits.fit"), _NO_WEB, completions="max_tokens"),
    Field("max_completion_tokens", rule("rules.clamp_output"), rule("limits.fit"), _NO_WEB,
          responses="max_output_tokens", messages="max_tokens", gate="output"),
    _sampling("seed", responses=False, messages=False),
    _sampling("stop", responses=False, messages=False),
    _sampling("presence_penalty", responses=False, messages=False),
    _sampling("frequency_penalty", responses=False, messages=False),
    Field("n", SEND, SEND, read("request.refuse_unsupported"), completions="n"),
    Field("logprobs", SEND, SEND, read("request.refuse_unsupported")),
    Field("top_logprobs", SEND, SEND, read("request.refuse_unsupported")),
    Field("min_p", SEND, SEND, _NO_WEB, extra=True),
    Field("repetition_penalty", SEND, SEND, _NO_WEB, extra=True),
    # who asks, and Qwen's prompt cache
    Field("user", SEND, SEND, read("pinning.Pinning.plan"), responses="user", completions="user"),
    Field("prompt_cache_key", read("rules.session_id"), OWN, OWN, "prompt_cache_key",
          hand("request._metadata", "metadata")),  # names the session (and the conversation's account)
    Field("prompt_cache_retention", read("markers.place"), drop("the server keeps its prefix cache its own way"),
          _NO_WEB, "prompt_cache_retention", gate="cache_ttls"),
    Field("prompt_cache_options", read("markers.place"), drop("the server keeps its prefix cache its own way"),
          _NO_WEB, "prompt_cache_options", gate="cache_ttls"),
    Field("cache_control", read("markers.place"), drop("the server keeps its prefix cache its own way"), _NO_WEB,
          messages=hand("request.to_chat", "cache_control"), extra=True, gate="cache_ttls"),
    Field("verbosity", read("rules.verbosity_hint"), drop("the server has no verbosity"), _NO_WEB,
          responses="text.verbosity"),
    # the gateway's own, and what Qwen has nothing for
    Field("store", OWN, OWN, OWN),  # a stored chat completion (store: true)
    Field("metadata", OWN, OWN, OWN),  # kept with a stored completion
    Field("service_tier", OWN, OWN, OWN),  # answered: the one tier Qwen has
    Field("safety_identifier", drop("Qwen has no such field"), drop("the server has no such field"), _NO_WEB),
    Field("moderation", SEND, drop("the server has no such field"), _NO_WEB),
    Field("modalities", drop("Qwen's chat models answer text"), drop("the server answers text"), _NO_WEB),
    Field("audio", drop("Qwen's chat models answer text"), drop("the server answers text"), _NO_WEB),
    Field("prediction", drop("Qwen has no predicted outputs"), drop("the server has no predicted outputs"),
          _NO_WEB),
)

KEPT = (
    Kept("chat", "functions", HANDLED, "chat_params.legacy_functions"),
    Kept("chat", "function_call", HANDLED, "chat_params.legacy_functions"),
    Kept("chat", "logit_bias", REFUSED, "chat_params.refuse_unsupported"),
    Kept("responses", "background", HONOURED, "background.check"),
    Kept("responses", "include", HONOURED, "fields.refuse_unhonoured"),
    Kept("responses", "metadata", HONOURED, "output.response_object"),
    Kept("responses", "previous_response_id", HONOURED, "endpoints.responses_endpoint"),
    Kept("responses", "safety_identifier", HONOURED, "output.response_object"),
    Kept("responses", "service_tier", HONOURED, "output.response_object"),
    Kept("responses", "store", HONOURED, "endpoints.responses_endpoint"),
    Kept("responses", "stream_options", HONOURED, "request.translate"),
    Kept("responses", "truncation", HONOURED, "endpoints.responses_endpoint"),
    Kept("responses", "max_tool_calls", HONOURED, "fields.limit_tools"),
    Kept("responses", "conversation", REFUSED, "fields.refuse_unhonoured"),
    Kept("responses", "prompt", REFUSED, "fields.refuse_unhonoured"),
    Kept("responses", "top_logprobs", REFUSED, "fields.refuse_unhonoured"),
    Kept("responses", "context_management", IGNORED, "accepted, noted"),
    Kept("responses", "moderation", IGNORED, "accepted, noted"),
    Kept("messages", "stop_sequences", HONOURED, "stops.sequences"),
    Kept("messages", "diagnostics", HONOURED, "diagnostics.asked"),
    *(Kept("messages", name, IGNORED, "accepted, noted") for name in (
        "context_management", "safeguards", "container", "mcp_servers", "service_tier", "inference_geo", "speed",
        "billing_policy", "compaction", "fallback_credit_token", "fallbacks", "thread")),
    Kept("completions", "logit_bias", IGNORED, "accepted, noted"),
    *(Kept("completions", name, REFUSED, "completions.completions_to_chat") for name in (
        "suffix", "echo", "logprobs", "best_of")),
)


def _carried(dialect: str) -> tuple[tuple[str, tuple[str, ...], str], ...]:
    """(the dialect's property, the keys inside it, the chat name) of each field it carries as it is."""
    return tuple((path[0], tuple(path[1:]), f.chat) for f in FIELDS
                 if isinstance(spelled := getattr(f, dialect), str) and spelled and (path := spelled.split(".")))


# Built once: a request's copy is a walk over a short tuple, its notes a set's test when there is nothing to say
CARRIED = {dialect: _carried(dialect) for dialect in DIALECTS if dialect != "chat"}
IGNORED_BY = {dialect: tuple(k.name for k in KEPT if k.dialect == dialect and k.fate == IGNORED)
              for dialect in DIALECTS}
_IGNORED_SETS = {dialect: frozenset(names) for dialect, names in IGNORED_BY.items()}


def carry(dialect: str, body: dict, chat: dict) -> dict:
    """The dialect's scalar fields copied into the chat form under their chat names, those not null."""
    for key, inner, name in CARRIED[dialect]:
        value = body.get(key)
        for k in inner:
            value = value.get(k) if isinstance(value, dict) else None
        if value is not None:
            chat[name] = value
    return chat


def ignored(dialect: str, body: dict, notes: list[str] | None) -> None:
    """A note for each field of the body the dialect accepts with no Qwen equivalent."""
    if notes is None or _IGNORED_SETS[dialect].isdisjoint(body):
        return
    for name in IGNORED_BY[dialect]:
        if name in body and (text := IGNORED_NOTE.format(name)) not in notes:
            notes.append(text)


# The providers' own columns: the `Fate` attributes of a row (annotations are strings here: `from __future__`)
COLUMNS = frozenset(f.name for f in fields(Field) if f.type in ("Fate", Fate))
NOT_OPENAI = drop("not an OpenAI field: an OpenAI-compatible server may not take it")


def _as_openai_takes_it(f: Field) -> Fate:
    """A field's fate on a provider with no column of its own (the module's docstring says the rule)."""
    if f.extra:
        return NOT_OPENAI
    if all(getattr(f, column).kind == "own" for column in COLUMNS):
        return OWN  # kept before any provider: the gateway answers it whoever serves the request
    return SEND


DEFAULT_COLUMN = {f.chat: _as_openai_takes_it(f) for f in FIELDS}


def fates(provider: str) -> dict[str, Fate]:
    """A provider's column: each chat-form field's fate there (`DEFAULT_COLUMN` when it has no column of its own)."""
    if provider not in COLUMNS:
        return dict(DEFAULT_COLUMN)
    return {f.chat: getattr(f, provider) for f in FIELDS}
