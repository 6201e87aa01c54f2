"""Fail closed on configuration: a gateway that cannot load stops mitmproxy; it never leaves it forwarding.

mitmproxy holds `--set` and config.yaml values of options it does not know yet ("deferred") until an addon
declares them, then applies them while it registers the addon: a value that does not parse there makes the
registration fail, mitmproxy drops the addon without a word and serves on as a plain proxy to the reverse
target. So the gateway reads its own deferred values first (`check_deferred`), and every problem found
while mitmproxy starts ends the process with one line per problem (`SystemExit`: mitmproxy's listener
serves no connection before the script has loaded, so none is served). Once mitmproxy runs, a bad value
(mitmweb's options editor, `:set`) is refused as mitmproxy refuses any: the previous value is kept.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from mitmproxy import exceptions
from mitmproxy.utils import typecheck

from ..settings.config import SPECS
from ..settings.option_specs import problem, refusal, unknown

log = logging.getLogger("qwen")

BAD_OPTION = 2  # the exit status of a gateway stopped by a value it cannot use (argparse's for bad usage)
FAILED = 1  # the exit status of a gateway that failed to load for any other reason


def check_deferred(opts) -> list[str]:
    """The gateway's deferred values mitmproxy would fail on, each as one line; those values are dropped
    from the deferred set so that mitmproxy's own pass cannot drop the addon. Unknown `qwen_*` names too."""
    deferred = getattr(opts, "deferred", {})
    problems = []
    for name in [n for n in deferred if n.startswith("qwen_")]:
        raw = deferred[name]
        if name not in SPECS:
            problems.append(unknown(name, sorted(SPECS)))
            del deferred[name]
            continue
        shown = getattr(raw, "val", raw)  # a --set value is still its strings (mitmproxy's _UnconvertedStrings)
        if isinstance(shown, list) and len(shown) == 1 and SPECS[name].typespec in (str, int, bool):
            shown = shown[0]
        try:
            value = opts._parse_setval(opts._options[name], raw.val) if hasattr(raw, "val") else raw
            typecheck.check_option_type(name, value, SPECS[name].typespec)
            if problem(SPECS[name], value):  # a choice, a bound, a meaning: all said now, one line each
                raise exceptions.OptionsError(name)
        except (exceptions.OptionsError, TypeError, ValueError):
            problems.append(refusal(name, shown, SPECS[name].accepts))
            del deferred[name]
    return problems


def say_unknown_options(opts) -> None:
    """At `running`: each `--set` name no addon declared, one line each."""
    for line in unknown_options(opts, sorted(opts.keys())):
        log.warning("qwen: %s", line)


def unknown_options(opts, known: Sequence[str]) -> list[str]:
    """Once every addon has loaded: the `--set` names none declared (mitmproxy keeps them for an addon that may
    come later, and says nothing), each with the name meant. The gateway's own were refused at load."""
    return [f"mitmproxy ignores {unknown(name, known)}" for name in sorted(getattr(opts, "deferred", {}))
            if not name.startswith("qwen_")]


def deferred_values(opts, running: bool) -> None:
    """At load: the gateway's deferred values checked. While mitmproxy starts, a problem stops it; at a
    reload (mitmproxy serves), the values stay unset, each problem said, and the gateway keeps serving."""
    if problems := check_deferred(opts):
        if not running:
            stop(problems)
        for line in problems:
            log.error("qwen: %s", line)


def mitmproxy_running(master) -> bool:
    """Whether mitmproxy already serves (a script reloaded, an option changed) or is still starting."""
    loader = master.addons.get("scriptloader") if master is not None else None
    return bool(getattr(loader, "is_running", False))


def stop(problems: list[str], status: int = BAD_OPTION) -> None:
    """mitmproxy is still starting: one line per problem, then the process ends before it serves."""
    for line in problems:
        log.error("qwen: the gateway cannot start: %s", line)
    raise SystemExit(status)


@contextlib.contextmanager
def fail_closed(running: bool) -> Iterator[None]:
    """Around `load` and `configure`: at start-up any failure stops mitmproxy; at run time a bad value is
    refused (mitmproxy keeps the previous one) and any other failure too, said in one line."""
    try:
        yield
    except exceptions.OptionsError as e:
        if not running:
            stop(str(e).splitlines())
        raise
    except Exception as e:
        if not running:
            log.exception("qwen: the gateway cannot start: %s", type(e).__name__)
            raise SystemExit(FAILED) from None
        log.exception("qwen: the new settings could not be applied")
        raise exceptions.OptionsError(f"the gateway could not apply the change ({type(e).__name__}): "
                                      "the previous settings are kept") from None
