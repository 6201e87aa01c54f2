"""`qwen-auth add-key`: an API-key account from a plan preset, a workspace domain or any base URL, and one
check of the key against its base (GET {base}/models) once it is saved."""

from __future__ import annotations

import getpass
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..accounts import KEY
from ..provider_list import PROVIDERS  # the gateway's own providers (and, imported, declared: provider_registry.py)
from ..provider_registry import KeyPlans, Preset, of_kind, plans as plans_of
from ..settings.auth import AuthSettings
from .auth_common import ENV_NAME_RE, EXIT_OK, CliError
from ..auth.names import check_name
from ..auth.registry import Registry

if TYPE_CHECKING:  # httpx is imported when a key is checked, as auth/oauth.py does
    import httpx

CHECK_TIMEOUT_S = 10.0
CONNECT_TRIES, CONNECT_WAIT_S = 4, 0.5  # a refused connection is tried again for about 1.5 s
MODELS_SHOWN = 3
CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,63}\Z")  # an error code worth repeating: invalid_api_key, Throttling.X
CODING_AGENTS_ONLY = "only available for Coding Agents"  # the Coding Plan's 405 to other clients


def _read_key(a) -> str:
    if sys.stdin.isatty():
        key = getpass.getpass("API key (not echoed): ")
    else:
        key = sys.stdin.readline()
    key = key.strip()
    if not key:
        raise CliError("no key on standard input")
    return key


def presets() -> dict[str, Preset]:
    """Every provider's plans' presets (`--preset`): name -> endpoint."""
    return {name: preset for p in PROVIDERS if (plans := p.plans) is not None for name, preset in plans.presets.items()}


def preset_table() -> str:
    """The presets as `qwen-auth add-key --help` lists them: name, plan and region, base URL."""
    return "\n".join(f"  {name:<17} {plans.describe_base(preset.base_url)}: {preset.base_url}"
                     for p in PROVIDERS if (plans := p.plans) is not None for name, preset in plans.presets.items())


def _endpoint(a, provider: str, plans: KeyPlans | None) -> tuple[str, str | None]:
    """(base URL, default model) from --workspace/--region, --preset and --base-url, in `provider`'s `plans`."""
    if a.workspace or a.region:
        if not (a.workspace and a.region):
            raise CliError("--workspace ID and --region REGION go together (e.g. --workspace ws-1 --region cn-beijing)")
        if a.preset or a.base_url:
            raise CliError("--workspace/--region name the endpoint: drop --preset and --base-url")
        if plans is None:
            raise CliError(f"--workspace/--region: a {provider} server has no workspaces; give --base-url")
        try:
            return plans.workspace_base_url(a.workspace, a.region), plans.workspace_model
        except ValueError as e:
            raise CliError(str(e)) from e
    known = plans.presets if plans is not None else {}
    if a.preset and a.preset not in known:
        raise CliError(f"--preset {a.preset}: a {provider} server has no such plan; give --base-url")
    preset = known[a.preset] if a.preset else None
    base = (a.base_url or (preset.base_url if preset else "")).rstrip("/")
    if not base:
        raise CliError("give --preset NAME, --workspace ID --region REGION, or --base-url URL (presets: "
                       + ", ".join(presets()) + ")")
    if not re.match(r"^https?://[^/\s]+", base):
        raise CliError("--base-url must be an http(s) URL, e.g. https://dashscope-intl.aliyuncs.com/compatible-mode/v1")
    return base, preset.default_model if preset else None


def _key_source(a, old: dict | None) -> tuple[dict, str | None, str]:
    """({key_env} | {key}, the key when we can see it, a description) - the old entry's when none is given."""
    if a.key_env:
        if not ENV_NAME_RE.match(a.key_env):
            # Never echo it: it may be the key itself, pasted in the wrong place.
            raise CliError("--key-env takes the NAME of an environment variable (letters, digits, _), not a key")
        return {"key_env": a.key_env}, os.environ.get(a.key_env), f"read from ${a.key_env} at run time"
    if a.key_stdin:
        key = _read_key(a)
        return {"key": key}, key, "stored in accounts.json, mode 0600"
    if old is not None and (old.get("key_env") or old.get("key")):
        if old.get("key_env"):
            return ({"key_env": old["key_env"]}, os.environ.get(old["key_env"]),
                    f"kept: read from ${old['key_env']} at run time")
        return {"key": old["key"]}, old["key"], "kept: stored in accounts.json, mode 0600"
    raise CliError("give the key: --key-env VAR (read at run time) or --key-stdin (stored, mode 0600)")


@dataclass(frozen=True)
class KeyCheck:
    """What GET {base}/models answered: an HTTP status (None: not reached), the model ids it listed, the
    error's code, the error's class and reason when the base was not reached. Never the key."""
    status: int | None
    models: tuple[str, ...] = ()
    code: str = ""
    error: str = ""
    agents_only: bool = False
    unsendable: bool = False  # the key is not ASCII: no HTTP header carries it (nor would the gateway's)


def _shown(text: str, key: str) -> str:
    """Text from the network made fit for one terminal line: printable, one space between words, the key
    (should a server or an error repeat it) replaced by "…"."""
    text = " ".join("".join(c for c in text if c.isprintable() or c.isspace()).split())
    return text.replace(key, "…") if key else text


def _answer(status: int, body, text: str, key: str) -> KeyCheck:
    """A KeyCheck from an answer's status and JSON body (or None); nothing that holds the key survives."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    code = code if isinstance(code, str) and CODE_RE.match(code) and code not in key else ""
    data = body.get("data") if isinstance(body, dict) else None
    ids = [m.get("id") for m in data if isinstance(m, dict)] if isinstance(data, list) else []
    models = tuple(i for i in ids if isinstance(i, str) and i.isprintable() and key not in i and i not in key)
    return KeyCheck(status, models if status == 200 else (), code,
                    agents_only=status == 405 and CODING_AGENTS_ONLY in text)


def check_key(base_url: str, key: str, *, transport: httpx.BaseTransport | None = None) -> KeyCheck:
    """One GET {base_url}/models with the key as a bearer token; proxies from the environment as httpx reads
    them (HTTP(S)_PROXY, NO_PROXY). Never raises for what the network or the base does."""
    import httpx
    if not key.isascii():
        return KeyCheck(None, unsendable=True)
    try:
        with httpx.Client(timeout=CHECK_TIMEOUT_S, transport=transport) as client:
            for attempt in range(CONNECT_TRIES):  # a base started a moment ago (a local one) may not listen yet
                try:
                    r = client.get(base_url.rstrip("/") + "/models", headers={"Authorization": f"Bearer {key}"})
                    break
                except httpx.ConnectError:
                    if attempt == CONNECT_TRIES - 1:
                        raise
                    time.sleep(CONNECT_WAIT_S)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as e:  # ValueError: e.g. a control character in the key
        reason = _shown(str(e), key)[:160]
        return KeyCheck(None, error=f"{type(e).__name__}: {reason}" if reason else type(e).__name__)
    try:
        body = r.json()
    except ValueError:
        body = None
    return _answer(r.status_code, body, r.text, key)


def _listed(models: tuple[str, ...]) -> str:
    if not models:
        return "the base lists no models"
    more = ", …" if len(models) > MODELS_SHOWN else ""
    return f"the base lists {len(models)} model{'' if len(models) == 1 else 's'}: " + \
        ", ".join(models[:MODELS_SHOWN]) + more


def not_listed(spec: dict, models: tuple[str, ...]) -> str:
    """What the account names (its default model, its map's targets) that the base's own list leaves out, with the
    list's own choice offered (the newest of the same family, else the nearest name: models/suggestions.py); ""
    when the list names them all (or lists nothing to judge by)."""
    from ..models.suggestions import not_in_list
    named = {spec["default_model"]: "--default-model "} if spec.get("default_model") else {}
    for alias, target in (spec.get("model_map") or {}).items():
        named.setdefault(target, f"--model-map {alias}=")
    missing = not_in_list(named, list(models))
    if not missing:
        return ""
    more = ", …" if len(models) > MODELS_SHOWN else ""
    one = len(missing) == 1
    choices = " ".join(f"{flag}{alt}" for _, flag, alt in missing if alt)
    return (f"{', '.join(m for m, _, _ in missing)} {'is' if one else 'are'} not in the base's own model list (retired, "
            f"or not for this key): requests for {'it' if one else 'them'} will be refused there (it lists "
            f"{', '.join(models[:MODELS_SHOWN])}{more})" + (f"; the list's own choice: {choices}." if choices else "."))


def _refusal_meaning(status: int) -> str:
    if status == 403:  # DashScope's 403 is also billing or a model not enabled, not only a bad key (R7)
        return "Model Studio also answers 403 for an account in arrears or a model not enabled"
    return "a key works only with the base URL of its own plan and region"


def check_line(check: KeyCheck, base_url: str, warning: str | None,
               plans: KeyPlans | None = None) -> tuple[bool, str]:
    """(whether the key worked, the one line that says what the check reached). `warning` is the key's provider's
    plans' advice (KeyPlans.key_warning), given with a refusal: the likeliest reason for it."""
    if check.status == 200:
        where = plans.describe_base(base_url) if plans is not None else None
        return True, f"Key check: the key works{f' ({where})' if where else ''}; {_listed(check.models)}"
    if check.unsendable:
        return False, "key check: not sent: the key holds a character that is not ASCII, which no HTTP header " \
                      "carries (the gateway could not send it either)."
    if check.status is None:
        host = urlsplit(base_url).hostname or base_url
        return False, f"key check: could not reach {host} ({check.error}); the account is saved, the key unchecked."
    if check.status in (401, 403):
        code = f" {check.code}" if check.code else ""
        return False, (f"key check: the base refused the key (HTTP {check.status}{code}): "
                       f"{warning or _refusal_meaning(check.status)}.")
    if check.agents_only:
        return False, ("key check: the Coding Plan answers HTTP 405 to clients it does not count as coding agents, "
                       "as it did to this check: the key itself is not judged.")
    code = f" {check.code}" if check.code else ""
    return False, f"key check: inconclusive: GET {base_url.rstrip('/')}/models answered HTTP {check.status}{code}."


def cmd_add_key(a, settings: AuthSettings) -> int:
    check_name(a.name)
    reg = Registry(settings)
    old = reg.find(reg.load(), a.name)
    if old is not None and old.get("kind") != KEY:
        raise CliError(f"account {a.name!r} already exists as an {old.get('kind')} account; remove it first")
    if old is not None and not a.replace:
        raise CliError(f"account {a.name!r} already exists (key account, {old.get('base_url') or 'no base URL'}); "
                       "add --replace to replace it (its key is kept unless you give a new one)")
    provider = _provider(getattr(a, "provider", None) or of_kind(KEY))  # unnamed: the provider of keys naming none
    plans = plans_of(provider)
    base, model = _endpoint(a, provider, plans)
    source, key, where = _key_source(a, old)
    spec: dict = {"name": a.name, "kind": KEY, "base_url": base, **source}
    mapping = {}
    for item in a.model_map:
        alias, sep, target = item.partition("=")
        if not sep or not alias.strip() or not target.strip():
            raise CliError(f"--model-map takes ALIAS=MODEL, not {item!r}")
        mapping[alias.strip()] = target.strip()
    if mapping:
        spec["model_map"] = mapping
    if a.default_model or model:
        spec["default_model"] = a.default_model or model
    if a.embeddings:
        spec["embeddings"] = True
    if provider != of_kind(KEY):  # accounts.json names a key's provider only when it is not the default
        spec["provider"] = provider
    if a.group:
        try:
            spec["group"] = check_name(a.group, allow_default=True)
        except ValueError:
            raise CliError("--group takes a name (letters, digits, '.', '_', '-'): the same for every key of one "
                           "Alibaba Cloud account") from None
    if a.month_day is not None:
        if not 1 <= a.month_day <= 31:
            raise CliError("--month-day takes the day of the month (1-31) the Coding Plan subscription started")
        spec["month_day"] = a.month_day
    reg.put(spec, replace=a.replace)  # saved before the check: a key that fails it may still be right (offline)
    plan = plans.label(base) if plans is not None else None
    print(f"{'Replaced' if old else 'Added'} key account {a.name}: {plan + ', ' if plan else ''}{base}"
          f" (key {where}{'; default model ' + spec['default_model'] if spec.get('default_model') else ''}"
          f"{'; group ' + spec['group'] if spec.get('group') else ''}).", flush=True)
    if old is not None and old.get("key") and "key" not in source:
        print(f"The key that was stored for {a.name} in accounts.json is removed (replaced by ${a.key_env}).")
    terms = plans.terms(base) if plans is not None else None
    if terms:
        print(f"Note: {terms}.", file=sys.stderr)
    warning = plans.key_warning(key or "", base) if plans is not None else None
    check = check_key(base, key) if key and not a.no_check else None
    refused = check is not None and check.status in (401, 403)
    if warning and not refused:  # a refusal's line carries the advice itself
        print(f"Warning: {warning}.", file=sys.stderr)
    if "key_env" in source and not os.environ.get(source["key_env"]):
        print(f"Warning: ${source['key_env']} is not set in this shell; set it where the gateway runs.",
              file=sys.stderr)
    if check is not None:
        worked, line = check_line(check, base, warning, plans)
        if worked:
            print(line)
        else:
            print(f"Warning: {line}", file=sys.stderr)
        if worked and (unserved := not_listed(spec, check.models)):
            print(f"Warning: {unserved}", file=sys.stderr)
        if not check.agents_only:  # the Coding Plan's 405 judges the client, not the key
            _note_check(settings, spec, worked, line)
    return EXIT_OK


def _note_check(settings: AuthSettings, spec: dict, worked: bool, line: str) -> None:
    """The check's outcome kept in the account's state: `qwen-auth status` and /health show it."""
    from ..auth.key_account import KeyAccount
    from ..auth.state import AccountState

    state = AccountState(settings.state_db_path)
    try:
        KeyAccount(spec, state).note_check(worked, line)
    finally:
        state.close()


def _provider(name: str) -> str:
    """A provider a key account may name: one the gateway has (provider_list.PROVIDERS) that takes keys."""
    names = [p.name for p in PROVIDERS if p.keys]
    if name not in names:
        raise CliError(f"--provider takes one of {', '.join(names)}, not {name!r}")
    return name
