"""Which Qwen model answers a client's model name (the model map), what each can do, and the list /v1/models shows."""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping, Sequence

from ..accounts import KEY, Credential
from ..accounts import OAUTH as OAUTH_KIND
from ..provider_registry import catalogued, of_kind
from .catalogue import (
    CHAT, CODING, EMBEDDING, OAUTH, PAYG_CN, PAYG_INTL, PAYG_US, ROWS, TOKEN, by_rules, chat_models,
    embedding_models, find)
from .live import LIVE_RETRY, LIVE_TTL, LiveModels  # noqa: F401  (where the rest of the gateway finds them)

# The ids the catalogue lists (models/catalogue.toml): OAuth-only names (coder-model, vision-model) first.
QWEN_MODELS = tuple(m.id for m in ROWS.values() if m.kind == CHAT)
EMBEDDING_MODELS = tuple(m.id for m in ROWS.values() if m.kind == EMBEDDING)
# The sizes each Qwen embedding model offers (`dimensions`), its default first; one size: takes no `dimensions`.
EMBEDDING_SIZES: dict[str, tuple[int, ...]] = {m.id: m.dimensions for m in ROWS.values() if m.kind == EMBEDDING}
# OpenAI's embedding models' sizes: a vector store created for one of them breaks on any other size.
OPENAI_EMBEDDING_SIZES = {"text-embedding-3-small": 1536, "text-embedding-ada-002": 1536,
                          "text-embedding-3-large": 3072}
OAUTH_ONLY = tuple(m.id for m in ROWS.values() if m.plans == (OAUTH,))
KEY_DEFAULT_MODEL = "qwen3-coder-plus"  # for key accounts that name no default: served by DashScope and Coding Plan
OAUTH_VISION_MODEL = "coder-model"
KEY_VISION_MODEL = "qwen3.6-plus"  # on Model Studio, Coding Plan and Token Plan keys alike


@functools.lru_cache(maxsize=256)  # asked per request about the few models a gateway serves
def output_cap(model: str) -> int | None:
    """The model's largest output cap as a source dated after its release gives it; None: not known (nothing
    is invented: a cap carried from before the model is not applied)."""
    row = find(model)
    return row.output if row is not None and "output" not in row.unsourced else None


@functools.lru_cache(maxsize=256)
def preserves_thinking(model: str) -> bool:
    """Whether the model keeps earlier turns' reasoning when asked (`preserve_thinking`: Qwen 3.6 and later)."""
    row = find(model)
    return row is not None and row.preserve_thinking


# Models that answer only streams: a request without `stream: true` gets DashScope's 400 "This model only support
# stream mode, please enable the stream parameter to access the model." (the catalogue's `stream_only` rows:
# QwQ, QVQ, the open-source Qwen3 thinking models). A model the catalogue does not name is judged by its
# family rule (qwq*, qvq*, qwen3-*-thinking*: the catalogue's `family_rules`), else learned from that 400 at run time
# (upstream/dashscope/ranges.py reads the refusal).
def stream_only(model: str, learned: Collection[str] = ()) -> bool:
    if model in learned:
        return True
    row = find(model)
    return (row if row is not None else by_rules(model)).stream_only


@functools.lru_cache(maxsize=256)
def is_vision(model: str) -> bool:
    row = find(model)
    return (row if row is not None else by_rules(model)).vision


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


# How an account's requests are paid (accounts.Credential.billing) -> the catalogue's plan
BILLING_PLANS = {"payg:intl": PAYG_INTL, "payg:cn": PAYG_CN, "payg:us": PAYG_US, "coding": CODING, "token": TOKEN}
KEY_PLANS = frozenset(BILLING_PLANS.values())
# (kind, billing, serves embeddings, name, provider) per configured account (from the pool's status rows)
Offers = Sequence[tuple[str, str, bool, str, str]]


def offers_of(rows: Sequence[Mapping]) -> Offers:
    """The offers of the pool's status rows (Pool.status)."""
    return [(row.get("kind") or "", row.get("billing") or "", bool(row.get("embeddings")), str(row.get("name") or ""),
             str(row.get("provider") or of_kind(row.get("kind") or ""))) for row in rows]


def served_plans(offers: Offers) -> set[str]:
    """The catalogue's plans the accounts belong to: a key on a host of no known plan (another OpenAI-compatible
    base) may serve any key plan's model; a Qwen OAuth login the portal's own; an account of a provider that serves
    no catalogue model (a self-hosted server) none."""
    plans: set[str] = set()
    for offer in offers:
        kind, billing, provider = offer[0], offer[1], offer[4] if len(offer) > 4 else of_kind(offer[0])
        if not catalogued(provider):
            continue
        if kind == KEY:
            plan = BILLING_PLANS.get(billing)
            plans.update((plan,) if plan else KEY_PLANS)
        elif kind == OAUTH_KIND:
            plans.add(OAUTH)
    return plans


class ModelMap:
    def __init__(self, default_model: str, aliases: Mapping[str, str] | None = None) -> None:
        self.default_model = default_model
        self.mapped = dict(aliases or {})  # qwen_model_map: the user's own word (the built-in aliases are not)
        self.aliases = {**DEFAULT_ALIASES, **self.mapped}
        self.live = LiveModels()
        self.accounts = LiveModels()  # each key account's own list, by account name (dashscope/key_models.py)

    def resolve(self, requested: str | None, cred: Credential | None = None) -> str:
        """The upstream model id for what the client asked, for this account."""
        name = (requested or "").strip()
        if cred is not None and name in cred.model_map:
            return cred.model_map[name]
        own = cred is not None and self.accounts.is_live(cred.account)
        if own and cred is not None and name in self.accounts.ids(cred.account):
            return name  # a model the account's own list names, as the client spelled it
        target = self.aliases.get(name)
        if target is None and name.startswith("claude-"):
            target = self.aliases.get(tier_alias(name) or "")
        if target is None:
            target = name if _looks_qwen(name) else ""
        if not target:
            target = (cred.default_model if cred is not None and cred.default_model else None) or self.default_model
        if cred is not None and cred.kind == KEY and target in OAUTH_ONLY:
            target = cred.default_model or KEY_DEFAULT_MODEL  # coder-model only exists behind Qwen OAuth
        if cred is not None and target != name and not catalogued(getattr(cred, "provider", "") or of_kind(cred.kind)):
            target = self._served(cred, target)  # an alias's catalogue model: what this server serves instead
        return target

    def named(self, cred: Credential) -> dict[str, str]:
        """The models this account is sent without a client naming them, each with where it is named: its default
        (as resolved), then the targets of its own model map and of qwen_model_map."""
        out = {self.resolve("", cred): "its default model"}
        for alias, target in {**self.mapped, **cred.model_map}.items():
            out.setdefault(target, f"the model map's {alias}")
        return out

    def _served(self, cred: Credential, target: str) -> str:
        """For an account that serves no catalogue model (a self-hosted server): `target` when its own list names
        it, else its default model, else the first its list names (unread: the default, else `target`)."""
        if not self.accounts.is_live(cred.account):
            return cred.default_model or target
        served = self.accounts.ids(cred.account)
        if target in served:
            return target
        if cred.default_model and (cred.default_model in served or not served):
            return cred.default_model
        return served[0] if served else target

    def list(self, offers: Offers | None = None) -> list[dict]:
        """What the configured accounts (`offers`; None: any) can serve: a key account's own list where its base
        answered one, else the catalogue's models for its plan (OAuth-only names only with an OAuth login,
        embedding models only with an account that serves them); the aliases; then the live catalogues'
        models (`owned_by: qwen-<kind>`, e.g. `qwen-web`; a listed id a live catalogue also holds says that
        kind)."""
        created = LISTED_SINCE
        windows: dict[str, int] = {}
        if offers is None:
            chat, embedding = QWEN_MODELS, EMBEDDING_MODELS
        else:
            own = [o for o in offers if o[0] == KEY and self.accounts.is_live(o[3])]
            rest = [o for o in offers if o not in own]
            plans = served_plans(rest)
            listed = [m for o in own for m in self.accounts.ids(o[3])]
            windows = {m: found.context for o in own if (kept := self.accounts.model_list(o[3])) is not None
                       for m, found in kept.models.items() if found.context and found.served_by}
            chat = tuple(dict.fromkeys([*listed, *chat_models(plans)]))
            embedding = tuple(embedding_models(plans)) if any(o[2] for o in rest) else ()
        names = list(dict.fromkeys([*chat, *embedding, *self.aliases]))
        owners = {n: "qwen" if _looks_qwen(n) or n in OAUTH_ONLY or n in chat else "qwen-gateway" for n in names}
        for model, kind in self.live.listed():
            owners.setdefault(model, f"qwen-{kind}")
            if owners[model] == "qwen":
                owners[model] = f"qwen-{kind}"
        out: list[dict] = [{"id": n, "object": "model", "created": created, "owned_by": owner,
                            "shutdown_date": _shutdown(n)} for n, owner in owners.items()]
        for entry in out if offers is not None and windows else ():
            if (size := windows.get(str(entry["id"]))) is not None:
                entry["max_model_len"] = size  # the window a self-hosted server gives it (prompt and answer)
        return out

    def get(self, model_id: str, offers: Offers | None = None) -> dict | None:
        for m in self.list(offers):
            if m["id"] == model_id:
                return m
        return None


def _shutdown(model: str) -> str | None:
    """OpenAI's `shutdown_date` for a model: the catalogue's last day it is served (None: none announced)."""
    row = find(model)
    return row.retires if row is not None else None


def tier_alias(name: str) -> str | None:
    """`claude-opus` for any Claude Opus id, and so on for sonnet and haiku (None for other names)."""
    for tier in ("opus", "sonnet", "haiku"):
        if tier in name.split("-"):
            return f"claude-{tier}"
    return None


def _looks_qwen(name: str) -> bool:
    return name in QWEN_MODELS or name in EMBEDDING_MODELS or name.startswith(("qwen", "qwq", "text-embedding-v"))
