"""Test-only mitmproxy script: makes one step of the gateway raise, once.

$QWEN_TEST_INJECT names it as `module:attribute` (e.g. `qwen_gateway.ingress.routing:route`, or
`qwen_gateway.upstream.engine:UpstreamEngine.open`). The first call raises; later calls run the real step, so a
test can show both the failure and that the next request is served."""

import functools
import importlib
import inspect
import os


class Injected(Exception):
    pass


def _patch(spec: str) -> None:
    module_name, _, path = spec.partition(":")
    owner = importlib.import_module(module_name)
    *parents, name = path.split(".")
    for p in parents:
        owner = getattr(owner, p)
    real = getattr(owner, name)
    fired = []

    if inspect.iscoroutinefunction(real):
        @functools.wraps(real)
        async def once(*a, **kw):
            if not fired:
                fired.append(1)
                raise Injected(spec)
            return await real(*a, **kw)
    else:
        @functools.wraps(real)
        def once(*a, **kw):
            if not fired:
                fired.append(1)
                raise Injected(spec)
            return real(*a, **kw)
    setattr(owner, name, once)


if os.environ.get("QWEN_TEST_INJECT"):
    _patch(os.environ["QWEN_TEST_INJECT"])

addons: list = []
