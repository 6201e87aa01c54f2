"""The chat request as DashScope takes it: DashScope's rules applied, in qwen-code's shape (OAuth logins and
keys alike). Pure functions: the client's body is never altered."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import request_surface
from ...accounts import Capability
from ...errors import GatewayError
from ...exchange import note
from ...models.model_map import EMBEDDING_SIZES
from . import knobs, params, relations, rules, search

if TYPE_CHECKING:
    from ...models.learned import LearnedFacts

# DashScope's column of the request surface: what its rules read first (prompt_cache_key: the session id;
# verbosity: a system hint) and the gateway's own go unsaid; what Qwen has no field for is noted; max_tokens by
# its current name (Model Studio deprecated it for max_completion_tokens, notice of 2026-04-20).
_FATES = request_surface.fates("dashscope")
_READ_FIRST = ("rules.session_id", "rules.verbosity_hint")  # the readers chat_to_qwen calls first (the others pop)
_UNSENT = tuple(k for k, f in _FATES.items() if f.kind == "own" or f.kind == "read" and f.what in _READ_FIRST)
_DROPPED = tuple((k, f.what) for k, f in _FATES.items() if f.kind == "drop")
_DROPPED_NAMES = frozenset(k for k, _ in _DROPPED)
_RENAMED = tuple((k, f.what) for k, f in _FATES.items() if f.kind == "rename")


def own_body(body: dict, *, model: str, capability: Capability, notes: list[str] | None = None,
             learned: LearnedFacts | None = None) -> dict:
    """A pass-through body (DashScope's OpenAI-compatible embeddings, a plan's Anthropic-compatible base, Model
    Studio's own Responses API): the dialect's own, with the Qwen model (the route's: one that sees images when
    there are some, the engine chose it), its thinking by the same table as the translation's, the output
    within the model's cap (catalogue or learned) and the relations Qwen holds kept."""
    if capability is Capability.EMBEDDINGS:
        return embedding_body(body, model if model.startswith("text-embedding") else "text-embedding-v4", notes)
    out = {**body, "model": model}
    if "input" in out and "messages" not in out:  # a Responses body (Model Studio's own Responses API)
        out = knobs.responses_thinking(responses_verbosity(out, notes), notes, learned=learned)
        return rules.clamp_output(out, notes, field="max_output_tokens", learned=learned)
    if capability is Capability.CHAT:
        out.pop("vl_high_resolution_images", None)  # an OpenAI-compatible extra: not for the Anthropic base
        out = knobs.anthropic_thinking(out, notes, learned=learned)  # on the model that answers
    out = rules.clamp_output(out, notes, field="max_tokens", learned=learned)  # Anthropic's own name for the cap
    return relations.keep(out, notes)


def responses_verbosity(body: dict, notes: list[str] | None) -> dict:
    """A Responses body's `verbosity` (the gateway's, from `text.verbosity`: Model Studio takes none) as the
    chat path gives it, one sentence at the end of the instructions, the same every turn."""
    if "verbosity" not in body:
        return body
    out = dict(body)
    hinted = rules.verbosity_hint([{"role": "system", "content": out.get("instructions") or ""}],
                                  out.pop("verbosity"), notes)
    if hinted[0]["content"]:
        out["instructions"] = hinted[0]["content"]
    return out


def embedding_body(body: dict, model: str, notes: list[str] | None = None) -> dict:
    """The embeddings body on a model that offers the size asked (`dimensions`): the model itself, else the
    first that does (text-embedding-v4 offers the most); a model with one fixed size takes no `dimensions`."""
    dims = body.get("dimensions")
    sizes = EMBEDDING_SIZES.get(model)
    if dims is None or sizes is None:
        return {**body, "model": model}
    if dims not in sizes:
        other = next((m for m, s in EMBEDDING_SIZES.items() if dims in s), None)
        if other is None:
            raise GatewayError(400, f"{model} cannot answer {dims} dimensions: it offers "
                                    f"{', '.join(map(str, sorted(sizes, reverse=True)))}.", param="dimensions",
                               code="unsupported_value")
        note(notes, f"{other} asked instead of {model}: {model} has no {dims}-dimension vectors")
        model, sizes = other, EMBEDDING_SIZES[other]
    out = {**body, "model": model}
    if len(sizes) == 1:
        out.pop("dimensions")  # a fixed size: the model takes no `dimensions`
    return out


def chat_to_qwen(body: dict, *, model: str, oauth: bool, session_id: str | None = None,
                 notes: list[str] | None = None, learned: LearnedFacts | None = None) -> dict:
    """The body Qwen gets, obeying DashScope's rules, in qwen-code's shape (OAuth and keys alike).

    `notes` collects what was changed from the client's request (the model is the request's route's: images
    go to a vision model by qwen_routes, the engine's choice); `session_id` overrides the one derived from the
    conversation; `learned`: what Qwen's refusals taught (dashscope/ranges.py, models/learned.py) over the
    catalogue: a model's thinking switch, that it answers streams only, its output cap and largest budget.
    """
    # A shallow copy: every step below builds new containers where it changes one (copy on write), so
    # the client's body is never altered (a deep copy of a long conversation costs more than the rest).
    out = dict(body)
    session = session_id or rules.session_id(body)
    out["model"] = model
    out["messages"] = rules.system_roles([m for m in out.get("messages") or [] if isinstance(m, dict)], notes)
    effort = out.get("reasoning_effort")
    out["messages"] = rules.verbosity_hint(out["messages"], out.get("verbosity"), notes)
    for key in _UNSENT:
        out.pop(key, None)
    if not _DROPPED_NAMES.isdisjoint(out):
        for key, why in _DROPPED:
            if out.pop(key, None) is not None:
                note(notes, f"{key} not sent: {why}")
    for key, to in _RENAMED:
        if key in out:
            legacy = out.pop(key)
            out.setdefault(to, legacy)  # the current name wins when both come
    if out.get("stream"):
        # Always ask for usage: the gateway needs it; the client only sees it if it asked.
        out["stream_options"] = {**(out.get("stream_options") or {}), "include_usage": True}
    else:
        out.pop("stream_options", None)
    if not out.get("tools"):
        out.pop("tools", None)
        out.pop("tool_choice", None)
        out.pop("parallel_tool_calls", None)
    if rules.has_parts(out["messages"]):  # images come in lists of parts only
        out["messages"] = params.tool_images(out["messages"], notes)
    out = search.search_knobs(out, oauth=oauth, notes=notes)  # on the model that answers (after its route)
    out = params.stream_whole(out, notes, learned=learned.stream_only if learned is not None else ())
    out = params.sampling_ranges(out, notes)
    out = rules.clamp_output(out, notes, learned=learned)  # first: the knobs' budgets follow the cap sent
    out = knobs.thinking_knobs(out, effort, notes, learned=learned)
    out = relations.keep(out, notes)
    return rules.qwen_code_shape(out, session=session, oauth=oauth, notes=notes)
