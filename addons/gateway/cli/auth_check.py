"""`qwen-auth check NAME [--deep]`: what the upstream says now of one key account against what the gateway
assumes, each difference printed with what to do. The check is the account's provider's (`Provider.drift`, asked
through the composition: DashScope's is upstream/dashscope/drift.py); this is the command around it — the
account found, the report printed (drift_report.py), the exit status. Never the key."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from urllib.parse import urlsplit

from ..accounts import KEY, AccountUnavailable, Credential
from ..auth.key_account import KeyAccount
from ..auth.registry import Registry
from ..drift_report import Report, cleaned
from ..settings.auth import AuthSettings
from .auth_common import EXIT_NO_ACCOUNT, EXIT_OK, EXIT_SERVER, CliError

EXIT_DIFFERENT = 6
TIMEOUT_S = 60.0
PROBED = "qwen3.6-flash"  # as upstream/dashscope/drift.py probes by default (said in the help)
CACHE_PROBE_TOKENS = "~2,300"

SUMMARY = "compare what Qwen says now of a key account with what the gateway assumes"
DESCRIPTION = f"""\
Compare what Qwen says now of a key account with what the gateway assumes, and print each difference with
what to do. Without --deep it spends nothing: it reads the key's own model list (GET /api/v1/models on the
base's host) and compares it with the catalogue: each model's prices by tier (on the account's billing), its
output cap and longest prompt, models the catalogue does not know, models the catalogue serves on the
account's plan that this key's list leaves out. A list that does not answer within 5 s is said as unread;
--deep then probes the chat API all the same.

--deep also spends a little of the key, each request on one model (--model):
  1. one range refusal: max_completion_tokens one above the cap the gateway assumes, a 1-token prompt
     (nothing is generated when Qwen refuses it; a stream Qwen takes is closed at once)
  2. one stream (8 tokens at most): its finish chunk, its usage chunk, its data: [DONE]
  3. partial mode: an answer's prefix continued, thinking off (8 tokens at most)
  4. the explicit cache: two identical requests whose ~1,200-token system prompt is marked for the cache
     (1 output token each): the second must read it. This one costs {CACHE_PROBE_TOKENS} prompt tokens;
     --no-cache-probe skips it.
It ends with the tokens spent, as Qwen's usage reports them.

On a self-hosted server (--provider selfhosted) it reads the server's list instead (its models, each one's
window, a default model it does not serve, a window too small for an agent); --deep sends tool_choice "auto"
with one tool and a request that asks for thinking (8 and 64 tokens at most): a missing tool or reasoning parser.

Output: `DIFF <what>: gateway assumes <x>, Qwen says <y> — <what to do>`, then `ok <what>` for what matched,
`skip <what>` for what could not be compared. Exit 0: no difference; 6: differences found."""


def check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the key account to check (as `qwen-auth list` names it)")
    p.add_argument("--deep", action="store_true", help="also send a few small requests with the key (see above)")
    p.add_argument("--model", metavar="MODEL", help=f"the model --deep probes (default: the account's default model, "
                                                    f"else {PROBED}, else the first chat model its list names)")
    p.add_argument("--no-cache-probe", action="store_true",
                   help=f"--deep without the explicit cache's probe ({CACHE_PROBE_TOKENS} prompt tokens)")
    p.add_argument("--json", action="store_true", help="print one JSON object: account, differences, matched, "
                                                       "skipped, spent_tokens")


Lookup = Callable[[AuthSettings, str], "tuple[str, Credential | None] | None"]
Checks = Callable[[str], "Callable[..., None] | None"]  # a provider's name -> its check (components.drift_check)


class Unreached(CliError):
    """The upstream did not answer: the report of what was checked before."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message, EXIT_SERVER)
        self.report = report


def account(settings: AuthSettings, name: str) -> tuple[str, Credential | None] | None:
    """The account's kind and, for a key account, its credential; None: no such account."""
    spec = Registry(settings).find(Registry(settings).load(), name)
    key = spec is not None and spec.get("kind") == KEY and isinstance(spec.get("base_url"), str)
    return None if spec is None else (str(spec.get("kind")), KeyAccount(spec).ready() if key else None)


def credential(name: str, settings: AuthSettings, lookup: Lookup = account) -> Credential:
    """The account's credential; CliError when there is no such account, it is no key, or its key is missing."""
    try:
        found = lookup(settings, name)
    except AccountUnavailable as e:
        raise CliError(f"{e}: the check needs the key") from None
    if found is None:
        raise CliError(f"no account named {name!r}", EXIT_NO_ACCOUNT)
    kind, cred = found
    if cred is None:
        raise CliError(f"account {name!r} is an {kind} account: `check` compares a key account's answers")
    return cred


def run(checks: Checks, name: str, settings: AuthSettings, *, deep: bool = False, model: str | None = None,
        cache_probe: bool = True, lookup: Lookup = account) -> Report:
    """The check of one key account by its provider's check (`checks`, from the composition), as `qwen-auth
    check` and the admin API run it (CliError: no such key account, or a provider without a check; Unreached:
    the upstream did not answer)."""
    import httpx
    cred = credential(name, settings, lookup)
    report = Report(name)
    check = checks(cred.provider)
    if check is None:
        raise CliError(f"account {name!r} is a key of a {cred.provider} server: `check` knows no way to ask it")
    try:
        with httpx.Client(timeout=TIMEOUT_S) as client:
            check(client, cred, report, deep=deep, model=model, cache_probe=cache_probe)
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        host = urlsplit(cred.base_url).netloc
        raise Unreached(f"could not reach {host} ({type(e).__name__}: {cleaned(str(e), cred.token)})",
                        report) from None
    return report


def cmd_check(a, settings: AuthSettings, checks: Checks, lookup: Lookup = account) -> int:
    try:
        report = run(checks, a.name, settings, deep=a.deep, model=a.model, cache_probe=not a.no_cache_probe, lookup=lookup)
    except Unreached as e:
        _print(a, e.report)
        raise
    _print(a, report)
    return EXIT_DIFFERENT if report.differences else EXIT_OK


def _print(a, report: Report) -> None:
    if a.json:
        print(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(report.lines()), flush=True)

