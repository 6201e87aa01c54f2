"""What a provider's drift check found (`qwen-auth check`, providers.Provider.drift): each difference between
what the upstream says now and what the gateway assumes, with what to do; what matched; what was skipped; the
tokens it spent. Provider-neutral: the check itself is the provider's (upstream/dashscope/drift.py)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Found:
    """One difference: what, what the gateway assumes, what Qwen says, what to do."""

    what: str
    gateway: str
    qwen: str
    todo: str

    def line(self) -> str:
        if not self.gateway and not self.qwen:
            return f"DIFF {self.what}: {self.todo}"
        return f"DIFF {self.what}: gateway assumes {self.gateway}, Qwen says {self.qwen} — {self.todo}"


@dataclass
class Report:
    account: str
    differences: list[Found] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    spent: int = 0  # tokens, from the usage Qwen reported
    requests: int = 0  # chat requests sent
    uncounted: bool = False  # a probe cut before Qwen reported its usage

    def diff(self, what: str, gateway: str, qwen: str, todo: str) -> None:
        self.differences.append(Found(what, gateway, qwen, todo))

    def ok(self, what: str) -> None:
        self.matched.append(what)

    def lines(self) -> list[str]:
        out = [f.line() for f in self.differences] + [f"ok {m}" for m in self.matched] + \
            [f"skip {s}" for s in self.skipped]
        if self.requests:
            more = " and what the cut range probe generated (not reported)" if self.uncounted else ""
            out.append(f"spent: {self.spent:,} tokens of this key ({self.requests} requests){more}")
        return out

    def as_json(self) -> dict:
        return {"account": self.account, "differences": [vars(f) | {"line": f.line()} for f in self.differences],
                "matched": self.matched, "skipped": self.skipped, "spent_tokens": self.spent}


def cleaned(text: str, key: str, most: int = 200) -> str:
    """Text from the network fit for one line: printable, single spaces, never the key, at most `most` chars."""
    text = " ".join("".join(c for c in text if c.isprintable() or c.isspace()).split())
    return (text.replace(key, "…") if key else text)[:most]
