"""Which accounts a request may use (`qwen_account_bindings`), the admin's word over the pool's round-robin: a mixed
pool (a Model Studio key beside the team's own servers) sends each client key, model or client where the admin says.

    WHO=ACCOUNTS      WHO: key:NAME (a named client key), model:NAME (the model the client asked, or the fallback
                      group's model sent instead: qwen_fallbacks; a trailing `*` matches any ending: model:claude-*),
                      dialect:openai|anthropic, agent:PREFIX (User-Agent)
                      ACCOUNTS: account names, or provider:NAME (every account of a provider), comma-separated

The first entry whose WHO matches decides; a request no entry matches may use any account. When none of a request's
accounts can take it, the pool's own answer says why (cooling, down…), naming only those accounts: nothing is ever
sent outside them. The retry policy applies it to every account it asks the pool for (upstream/retry.py)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

SCOPES = ("key", "model", "dialect", "agent")
_FORM = "WHO=ACCOUNTS, e.g. model:claude-*=gpu1,gpu2, key:ci=provider:selfhosted, dialect:openai=ms"


@dataclass(frozen=True, slots=True)
class Binding:
    scope: str
    who: str
    accounts: tuple[str, ...]  # names, or provider:NAME

    def matches(self, *, key: str, model: str, dialect: str, agent: str) -> bool:
        if self.scope == "key":
            return key == self.who
        if self.scope == "model":
            return model.startswith(self.who[:-1]) if self.who.endswith("*") else model == self.who
        if self.scope == "dialect":
            return dialect == self.who
        return agent.lower().startswith(self.who)

    def admits(self, account: str, provider: str) -> bool:
        return account in self.accounts or f"provider:{provider}" in self.accounts

    def __str__(self) -> str:
        return f"{self.scope}:{self.who}={','.join(self.accounts)}"


class Bindings:
    def __init__(self, entries: Sequence[Binding] = ()) -> None:
        self.entries = tuple(entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def find(self, *, key: str, model: str, dialect: str, agent: str) -> Binding | None:
        return next((b for b in self.entries if b.matches(key=key, model=model, dialect=dialect, agent=agent)), None)

    @staticmethod
    def outside(binding: Binding, accounts: Iterable[tuple[str, str]]) -> list[str]:
        """The accounts (name, provider) the binding leaves out."""
        return [name for name, provider in accounts if not binding.admits(name, provider)]


def parse_bindings(entries: Iterable[str], providers: Collection[str] = ()) -> Bindings:
    """`qwen_account_bindings` entries -> Bindings; ValueError naming the entry and what is wrong with it."""
    out = []
    for entry in entries:
        head, sep, targets = entry.partition("=")
        scope, colon, who = head.strip().partition(":")
        accounts = tuple(t.strip() for t in targets.split(",") if t.strip())
        if not sep or not colon or not who.strip() or not accounts:
            raise ValueError(f"qwen_account_bindings: {entry!r} is not {_FORM}")
        if scope not in SCOPES:
            raise ValueError(f"qwen_account_bindings: {entry!r}: {scope!r} is not one of {', '.join(SCOPES)}")
        for target in accounts:
            named = target.removeprefix("provider:")
            if target.startswith("provider:") and providers and named not in providers:
                raise ValueError(f"qwen_account_bindings: {entry!r}: no provider {named!r} (the gateway has "
                                 f"{', '.join(sorted(providers))})")
        who = who.strip().lower() if scope in ("dialect", "agent") else who.strip()
        out.append(Binding(scope, who, accounts))
    return Bindings(out)
