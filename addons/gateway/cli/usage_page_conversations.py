"""The report page's Conversations section: the rows of `qwen-usage conversations` (usage_conversations.py, read
with the page's filters) as a table of the page's own (usage_page.py's cells, every value escaped). Only digests
and counts: the ledger holds no prompt text."""

from __future__ import annotations

from .usage_conversations import lost_usd
from .usage_page import _c, _n, _table

SHOWN = 20  # the newest conversations on the page (by their last turn), oldest first as the command lists them
HEAD = ["conversation", "first seen", "turns", "1-hour turns", "prompt", "cached", "hit share", "missed turns", "lost tokens",
        "lost USD", "causes"]


def section(rows: list[dict]) -> str:
    """The heading, what a miss is, and the table (or one line when no conversation was recorded)."""
    head = "<h2>Conversations</h2>"
    if not rows:
        return (f'{head}<p class="meta" id="no-conversations">No conversations recorded in this period (the cache '
                "doctor names each answered turn's conversation in the ledger: docs/observability.md, "
                "Cache doctor).</p>")
    table = _table("conversations", HEAD, [[
        _c(r["conversation"], "t"), _c(r["first_seen"], "t"), _n(f"{r['turns']:,}"), _n(f"{r['hour_turns']:,}"),
        _n(f"{r['prompt_tokens']:,}"),
        _n(f"{r['cached_tokens']:,}"), _n(f"{round(r['hit_share'] * 100)}%"), _n(f"{r['missed_turns']:,}"),
        _n(f"{r['lost_tokens']:,}"), _n(lost_usd(r)), _c(r["causes"], "why")] for r in rows])
    return (f'{head}<p class="meta">The conversations the cache doctor saw (the newest {SHOWN}, oldest first; '
            "named by a digest, never by their text): their turns and the share of their prompts Qwen read from "
            "its cache. A <b>miss</b> is a turn that read less of Qwen's cache than the turn before it: lost "
            "tokens are the prompt tokens its cache should have served, lost USD what they cost above cache reads "
            "(pay-as-you-go accounts), causes what changed (the system text, the tools' order, another account, "
            "the five-minute expiry…) with the turns; 1-hour turns asked Qwen's hour-long cache (the client, or "
            "<code>qwen_cache_lifetime=auto</code>). How the doctor tells: docs/observability.md, “Cache "
            f"doctor”; the same rows: <code>qwen-usage conversations</code>.</p>{table}")
