"""Which Qwen model answers a client's model name (the model map), what each can do, and the list /v1/models shows."""

from __future__ import annotations

import enum
import functools
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from .accounts import KEY, Credential

# Model ids the Qwen upstreams know (coder-model / vision-model: OAuth portal only).
QWEN_MODELS = (
    "coder-model",
    "vision-model",
    "qwen3-coder-plus",
    "qwen3-coder-flash",
    "qwen3.5-plus",
    "qwen3.6-plus",
    "qwen3.7-plus",
    "qwen3-max",
    "qwen-max",
    "qwen-plus",
    "qwen-turbo",
)
EMBEDDING_MODELS = ("text-embedding-v4",)
# The sizes each Qwen embedding model offers (`dimensions`), its default first (Model Studio's embedding docs);
# v2 has one fixed size and takes no `dimensions`.
EMBEDDING_SIZES: dict[str, tuple[int, ...]] = {
    "text-embedding-v4": (1024, 2048, 1536, 768, 512, 256, 128, 64),
    "text-embedding-v3": (1024, 768, 512, 256, 128, 64),
    "text-embedding-v2": (1536,),
    "text-embedding-v1": (1536,),
}
# OpenAI's embedding models' sizes: a vector store created for one of them breaks on any other size.
OPENAI_EMBEDDING_SIZES = {"text-embedding-3-small": 1536, "text-embedding-ada-002": 1536,
                          "text-embedding-3-large": 3072}
OAUTH_ONLY = ("coder-model", "vision-model")
KEY_DEFAULT_MODEL = "qwen3-coder-plus"  # for key accounts that name no default: served by DashScope and Coding Plan

# Output caps: DashScope answers 400 "Range of max_tokens should be [1, N]" above them. Matched by the
# longest prefix (dated snapshots share their family's cap); unknown models get qwen-code's safe default.
OUTPUT_CAPS: dict[str, int] = {
    "coder-model": 65536, "vision-model": 32768, "qwen3-coder-plus": 65536, "qwen3-coder-flash": 65536,
    "qwen3.5-plus": 65536, "qwen3.6-plus": 65536, "qwen3.7-plus": 65536, "qwen3.7-flash": 32768,
    "qwen3.8-flash": 32768, "qwen3.8-max": 65536, "qwen3-max": 65536, "qwen-max": 8192, "qwen-plus": 32768,
    "qwen-turbo": 16384, "qwen-flash": 32768, "qwen-vl-max": 8192, "qwen-vl-plus": 8192, "qwen3-vl-plus": 32768,
    "qwq-plus": 8192, "qwen3-235b-a22b-thinking-2507": 32768,
}
DEFAULT_OUTPUT_CAP = 8192


class Thinking(enum.StrEnum):
    """How a model's thinking is switched (each model's: upstream/dashscope/thinking.py)."""

    HYBRID = "hybrid"  # enable_thinking true/false (+ thinking_budget)
    ONLY = "only"  # always thinks: refuses enable_thinking false
    EFFORT = "effort"  # takes reasoning_effort natively; refuses it together with thinking_budget
    NONE = "none"  # does not think: no knob means anything to it


# Vision-capable models (images refused by every other model). coder-model is Qwen OAuth's.
VISION_PREFIXES = ("coder-model", "vision-model", "qwen-vl", "qwen3-vl", "qwen3.5-plus", "qwen3.6-plus",
                   "qwen3.7-plus")
OAUTH_VISION_MODEL = "coder-model"
KEY_VISION_MODEL = "qwen3.6-plus"  # on Model Studio, Coding Plan and Token Plan keys alike


@functools.lru_cache(maxsize=256)  # asked per request about the few models a gateway serves
def output_cap(model: str) -> int:
    best = max((p for p in OUTPUT_CAPS if model.startswith(p)), key=len, default=None)
    return OUTPUT_CAPS[best] if best else DEFAULT_OUTPUT_CAP


def thinking_refusal(message: str) -> Thinking | None:
    """What a DashScope 400 says about the model's thinking knobs, for a model the table does not know
    (qwen-code learns "thinking is mandatory" the same way): a caller may remember it per model and retry."""
    low = message.lower()
    if "enable_thinking" in low and ("restricted to true" in low or "must be set to true" in low
                                     or "mandatory" in low):
        return Thinking.ONLY
    if "reasoning_effort" in low and "thinking_budget" in low:
        return Thinking.EFFORT
    return None


# Models that answer only streams: a request without `stream: true` gets DashScope's 400 "This model only support
# stream mode, please enable the stream parameter to access the model." (Model Studio's QwQ and QVQ, and the
# open-source Qwen3 thinking models such as qwen3-235b-a22b-thinking-2507). A model not listed is learned from
# that 400 at run time (`stream_refusal`).
STREAM_ONLY_PREFIXES = ("qwq", "qvq")


def stream_only(model: str, learned: Collection[str] = ()) -> bool:
    return model in learned or model.startswith(STREAM_ONLY_PREFIXES) or (
        model.startswith("qwen3-") and "-thinking" in model)


def stream_refusal(message: str) -> bool:
    """Whether a DashScope 400 says the model answers streams only (a caller remembers it and retries)."""
    return "only support stream mode" in message.lower()


def is_vision(model: str) -> bool:
    return model.startswith(VISION_PREFIXES)


def vision_model(model: str, *, oauth: bool, default_model: str | None = None) -> str:
    """The model that can see images for this account: `model` itself when it can, else the account's
    default model when that can, else the plan's vision model."""
    if is_vision(model):
        return model
    if default_model and is_vision(default_model) and (oauth or default_model not in OAUTH_ONLY):
        return default_model
    return OAUTH_VISION_MODEL if oauth else KEY_VISION_MODEL


# OpenAI names that clients send unchanged; "" means "the default model".
DEFAULT_ALIASES: dict[str, str] = {
    **{m: "" for m in (
        "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4", "gpt-4-turbo",
        "gpt-3.5-turbo", "gpt-3.5-turbo-instruct", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5-codex",
        "o1", "o1-mini", "o3", "o3-mini", "o4-mini", "codex-mini-latest",
    )},
    # Claude's tiers (any version: claude-opus-5-5, claude-sonnet-4-5-20250929, …; `tier_alias`): the account's
    # default model for opus and sonnet, the fast coder for haiku. --set qwen_model_map=claude-opus=… changes one.
    "claude-opus": "", "claude-sonnet": "", "claude-haiku": "qwen3-coder-flash",
    "text-embedding-3-small": "text-embedding-v4",
    "text-embedding-3-large": "text-embedding-v4",
    "text-embedding-ada-002": "text-embedding-v4",
}


def parse_model_map(items: Iterable[str]) -> dict[str, str]:
    """`alias=target` entries (from `--set qwen_model_map=gpt-4o=qwen3-coder-plus`)."""
    out: dict[str, str] = {}
    for item in items:
        alias, sep, target = item.partition("=")
        if not sep or not alias.strip() or not target.strip():
            raise ValueError(f"model map entry {item!r} is not of the form alias=target")
        out[alias.strip()] = target.strip()
    return out


# OpenAI's `created` is when a model appeared; Qwen's compatible API gives no date, so one fixed date for all
# (the day this list was last revised): a client that caches the list sees it unchanged.
LISTED_SINCE = 1_761_955_200  # 2025-11-01


LIVE_TTL = 3600.0  # how long a fetched catalogue is current (Qwen2API's default for the web catalogue)
LIVE_RETRY = 60.0  # after a failed fetch, the next try no sooner: a catalogue down is never hammered


class LiveModels:
    """The models each account kind's upstream currently offers (its live catalogue), per kind. An upstream
    registers its kind with the static list (the fallback and the offline answer) and a `refresh` callable
    that starts a fetch in the background and reports with `put` or `failed`; nothing here does I/O, so
    nothing on a request's path waits for a catalogue: `ids` is the cache, or the fallback."""

    def __init__(self, ttl: float = LIVE_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._fallback: dict[str, tuple[str, ...]] = {}
        self._refresh: dict[str, Callable[[], None]] = {}
        self._live: dict[str, tuple[tuple[str, ...], float]] = {}  # kind -> (ids, fetched at)
        self._failed: dict[str, float] = {}

    def register(self, kind: str, fallback: Sequence[str], refresh: Callable[[], None]) -> None:
        self._fallback[kind], self._refresh[kind] = tuple(fallback), refresh

    def ids(self, kind: str) -> tuple[str, ...]:
        live = self._live.get(kind)
        return live[0] if live else self._fallback.get(kind, ())

    def is_live(self, kind: str) -> bool:
        return kind in self._live

    def due(self, kind: str) -> bool:
        now = self.clock()
        live = self._live.get(kind)
        if live and now - live[1] < self.ttl:
            return False
        return kind not in self._failed or now - self._failed[kind] >= LIVE_RETRY

    def put(self, kind: str, ids: Sequence[str]) -> None:
        if ids:  # an empty catalogue is no answer: the last one (or the fallback) stays
            self._live[kind] = (tuple(ids), self.clock())
            self._failed.pop(kind, None)
        else:
            self.failed(kind)

    def failed(self, kind: str) -> None:
        self._failed[kind] = self.clock()

    def stale(self, kind: str) -> None:
        """The upstream said a model is gone: fetch again at the next chance."""
        if kind in self._live:
            self._live[kind] = (self._live[kind][0], self.clock() - self.ttl)
        self._failed.pop(kind, None)

    def wanted(self) -> None:
        """Starts the refresh of every kind whose catalogue is due (the callables only schedule)."""
        for kind, refresh in self._refresh.items():
            if self.due(kind):
                refresh()

    def listed(self) -> list[tuple[str, str]]:
        """(model id, account kind) for every registered kind's current models."""
        return [(m, kind) for kind in self._refresh for m in self.ids(kind)]


class ModelMap:
    def __init__(self, default_model: str, aliases: Mapping[str, str] | None = None) -> None:
        self.default_model = default_model
        self.aliases = {**DEFAULT_ALIASES, **(aliases or {})}
        self.live = LiveModels()

    def resolve(self, requested: str | None, cred: Credential | None = None) -> str:
        """The upstream model id for what the client asked, for this account."""
        name = (requested or "").strip()
        if cred is not None and name in cred.model_map:
            return cred.model_map[name]
        target = self.aliases.get(name)
        if target is None and name.startswith("claude-"):
            target = self.aliases.get(tier_alias(name) or "")
        if target is None:
            target = name if _looks_qwen(name) else ""
        if not target:
            target = (cred.default_model if cred is not None and cred.default_model else None) or self.default_model
        if cred is not None and cred.kind == KEY and target in OAUTH_ONLY:
            target = cred.default_model or KEY_DEFAULT_MODEL  # coder-model only exists behind Qwen OAuth
        return target

    def list(self) -> list[dict]:
        """The static list, then the live catalogues' models (`owned_by: qwen-<kind>`, e.g. `qwen-web`; a
        static id a catalogue also holds says that kind)."""
        created = LISTED_SINCE
        names = list(dict.fromkeys([*QWEN_MODELS, *EMBEDDING_MODELS, *self.aliases]))
        owners = {n: "qwen" if _looks_qwen(n) or n in OAUTH_ONLY else "qwen-gateway" for n in names}
        for model, kind in self.live.listed():
            owners.setdefault(model, f"qwen-{kind}")
            if owners[model] == "qwen":
                owners[model] = f"qwen-{kind}"
        return [{"id": n, "object": "model", "created": created, "owned_by": owner} for n, owner in owners.items()]

    def get(self, model_id: str) -> dict | None:
        for m in self.list():
            if m["id"] == model_id:
                return m
        return None


def tier_alias(name: str) -> str | None:
    """`claude-opus` for any Claude Opus id, and so on for sonnet and haiku (None for other names)."""
    for tier in ("opus", "sonnet", "haiku"):
        if tier in name.split("-"):
            return f"claude-{tier}"
    return None


def _looks_qwen(name: str) -> bool:
    return name in QWEN_MODELS or name in EMBEDDING_MODELS or name.startswith(("qwen", "qwq", "text-embedding-v"))
