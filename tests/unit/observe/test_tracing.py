"""Traces' parts (observe/tracing.py, observe/otlp.py): when they are on, the client's traceparent, the standard
variables, and an inactive observer costing no call. Through real mitmdump and an OTLP receiver:
test_e2e_traces.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from qwen_gateway.settings.config import Config
from qwen_gateway.dispatch import Observers
from qwen_gateway.observe import tracing
from qwen_gateway.observer import Observer

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.mark.parametrize(("header", "got"), [
    (f"00-{TRACE}-{SPAN}-01", (TRACE, SPAN)),
    (f"  00-{TRACE.upper()}-{SPAN}-01 ", (TRACE, SPAN)),  # case and spaces as some proxies leave them
    (f"01-{TRACE}-{SPAN}-01-future", (TRACE, SPAN)),  # a later version: its first four fields read
    (f"00-{TRACE}-{SPAN}-00", False),  # the client does not record this trace: nor does the gateway
    (f"00-{TRACE}-{SPAN}-01-extra", None), (f"ff-{TRACE}-{SPAN}-01", None), (f"00-{'0' * 32}-{SPAN}-01", None),
    (f"00-{TRACE}-{'0' * 16}-01", None), ("00-abc-def-01", None), ("", None), (None, None)])
def test_the_clients_traceparent(header, got):
    assert tracing.continued(header) == got


def test_on_with_the_standard_endpoint_or_the_option_never_with_the_sdk_disabled():
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert not tracing.wanted("auto", {}) and tracing.wanted("auto", endpoint)
    assert tracing.wanted("auto", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not tracing.wanted("auto", {**endpoint, "OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.wanted("off", endpoint) and tracing.wanted("on", {})
    assert not tracing.wanted("on", {"OTEL_SDK_DISABLED": "true"})


def test_an_inactive_observer_is_never_called_until_configured_on(monkeypatch):
    calls = []

    class OptIn(Observer):
        active = False

        def configure(self, config: Config) -> None:
            self.active = config.otel == "on"

        def client_request(self, ex, flow) -> None:
            calls.append("client_request")

    observers = Observers([OptIn()])
    observers.notify("client_request", None, None)  # type: ignore[arg-type]
    observers.configure(Config(otel="on"))
    observers.notify("client_request", None, None)  # type: ignore[arg-type]
    observers.configure(Config(otel="off"))
    observers.notify("client_request", None, None)  # type: ignore[arg-type]
    assert calls == ["client_request"]


def test_with_an_endpoint_the_exporter_is_loaded_and_off_it_is_not(tmp_path):
    """The counterpart of test_lazy_imports.py: the same start, traces on by the standard variable."""
    code = ("import sys\nimport qwen_gateway.addon\nfrom mitmproxy.test import taddons\n"
            "gw = qwen_gateway.addon.QwenGateway()\nwith taddons.context(gw) as tctx:\n"
            "    gw.configure(set(tctx.options.keys()))\n    print('qwen_gateway.observe.otlp' in sys.modules)\n"
            "    tctx.configure(gw, qwen_otel='off')\n    print(any(o.active for o in gw.observers.all "
            "if type(o).__name__ == 'Tracing'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin",
                              "QWEN_GATEWAY_HOME": str(tmp_path)})  # its state folder: never the real home's
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]
