"""`qwen-auth add-key`: an API-key account from a plan preset, a workspace domain or any base URL."""

from __future__ import annotations

import getpass
import os
import re
import sys

from ..accounts import KEY
from ..auth_settings import AuthSettings
from .cli_common import ENV_NAME_RE, EXIT_OK, CliError
from .names import check_name
from .plans import PLAN_LABELS, PRESETS, WORKSPACE_DEFAULT_MODEL, key_warning, plan_of_url, workspace_base_url
from .registry import Registry


def _read_key(a) -> str:
    if sys.stdin.isatty():
        key = getpass.getpass("API key (not echoed): ")
    else:
        key = sys.stdin.readline()
    key = key.strip()
    if not key:
        raise CliError("no key on standard input")
    return key


def _endpoint(a) -> tuple[str, str | None]:
    """(base URL, default model) from --workspace/--region, --preset and --base-url."""
    if a.workspace or a.region:
        if not (a.workspace and a.region):
            raise CliError("--workspace ID and --region REGION go together (e.g. --workspace ws-1 --region cn-beijing)")
        if a.preset or a.base_url:
            raise CliError("--workspace/--region name the endpoint: drop --preset and --base-url")
        try:
            return workspace_base_url(a.workspace, a.region), WORKSPACE_DEFAULT_MODEL
        except ValueError as e:
            raise CliError(str(e)) from e
    preset = PRESETS[a.preset] if a.preset else None
    base = (a.base_url or (preset.base_url if preset else "")).rstrip("/")
    if not base:
        raise CliError("give --preset NAME, --workspace ID --region REGION, or --base-url URL (presets: "
                       + ", ".join(PRESETS) + ")")
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


def cmd_add_key(a, settings: AuthSettings) -> int:
    check_name(a.name)
    reg = Registry(settings)
    old = reg.find(reg.load(), a.name)
    if old is not None and old.get("kind") != KEY:
        raise CliError(f"account {a.name!r} already exists as an {old.get('kind')} account; remove it first")
    if old is not None and not a.replace:
        raise CliError(f"account {a.name!r} already exists (key account, {old.get('base_url') or 'no base URL'}); "
                       "add --replace to replace it (its key is kept unless you give a new one)")
    base, model = _endpoint(a)
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
    reg.put(spec, replace=a.replace)
    plan = plan_of_url(base)
    print(f"{'Replaced' if old else 'Added'} key account {a.name}: {PLAN_LABELS[plan] + ', ' if plan else ''}{base}"
          f" (key {where}{'; default model ' + spec['default_model'] if spec.get('default_model') else ''}"
          f"{'; group ' + spec['group'] if spec.get('group') else ''}).")
    if old is not None and old.get("key") and "key" not in source:
        print(f"The key that was stored for {a.name} in accounts.json is removed (replaced by ${a.key_env}).")
    warning = key_warning(key or "", plan)
    if warning:
        print(f"Warning: {warning}.", file=sys.stderr)
    if "key_env" in source and not os.environ.get(source["key_env"]):
        print(f"Warning: ${source['key_env']} is not set in this shell; set it where the gateway runs.",
              file=sys.stderr)
    return EXIT_OK
