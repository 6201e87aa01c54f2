"""Quiet by default: in a real mitmdump one request prints one line (the gateway's request line), unless
the user asks mitmproxy for more (`flow_detail`); mitmweb gets the summary column unless the user chose
the columns. The gateway gives these defaults only to options nobody set (addons/gateway/settings/mitmproxy_defaults.py)."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from mitmproxy import optmanager

from qwen_gateway.settings import mitmproxy_defaults

REQUEST_LINE = re.compile(r"^\[[\d:.]+\] POST /v1/chat/completions gpt-4o→coder-model acct=default 200 ")


def _opts(**declared) -> optmanager.OptManager:
    o = optmanager.OptManager()
    for name, (typespec, default) in declared.items():
        o.add_option(name, typespec, default, "")
    return o


def test_an_option_set_to_its_default_value_counts_as_set():
    o = _opts(flow_detail=(int, 1), termlog_verbosity=(str, "info"))
    assert not mitmproxy_defaults.user_set(o, "flow_detail")
    o.update(flow_detail=1)  # what --set flow_detail=1 does: the default value, but set
    assert mitmproxy_defaults.user_set(o, "flow_detail")
    mitmproxy_defaults.apply(o, {"flow_detail", "termlog_verbosity"})
    assert o.flow_detail == 1
    assert mitmproxy_defaults.user_set(o, "no_such_option")  # unknown options are never touched


def test_defaults_only_for_options_nobody_set():
    o = _opts(flow_detail=(int, 1), termlog_verbosity=(str, "info"), web_columns=(list, ["path", "status"]))
    mitmproxy_defaults.apply(o, {"flow_detail", "termlog_verbosity", "web_columns"})
    assert o.flow_detail == 0 and o.web_columns == ["path", "status", "comment"]
    o2 = _opts(web_columns=(list, ["path", "status"]))
    o2.update(web_columns=["path"])
    mitmproxy_defaults.apply(o2, {"web_columns"})
    assert o2.web_columns == ["path"]


def test_mitmweb_without_flow_detail_is_quiet_too():
    """mitmweb has no `flow_detail` (mitmdump's dumper declares it): its connection lines are off unless
    `termlog_verbosity=debug` asks for them, as the README says."""
    import logging
    logger = logging.getLogger(mitmproxy_defaults.CONNECTION_LOGGER)
    before = logger.level
    try:
        o = _opts(termlog_verbosity=(str, "info"), web_columns=(list, ["path"]))
        mitmproxy_defaults.apply(o, {"termlog_verbosity", "web_columns"})
        assert logger.level == logging.WARNING
        o.update(termlog_verbosity="debug")
        mitmproxy_defaults.apply(o, {"termlog_verbosity"})
        assert logger.level == logging.NOTSET
    finally:
        logger.setLevel(before)


def _log_size_after_startup(gw) -> int:
    """The log's length once the gateway has said which accounts it loaded (its `running` line): under load
    that line can reach the log after the port file, and would be counted as the request's."""
    deadline = time.monotonic() + 15
    while "qwen: account" not in gw.log():
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.05)
    return len(gw.log())


def _new_lines(gw, before: int, wait_for: re.Pattern, settle: float = 1.0) -> list[str]:
    """Log lines written after `before` bytes, once `wait_for` matched one and `settle` s passed (mitmproxy
    logs the client's disconnect after the answer)."""
    deadline = time.monotonic() + 15
    while not any(wait_for.match(ln) for ln in gw.log()[before:].splitlines()):
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.05)
    time.sleep(settle)
    return [ln for ln in gw.log()[before:].splitlines() if ln.strip()]


def _one_request(gw, *, stream: bool = False) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "one line"}], "stream": stream}
    with httpx.Client(trust_env=False, timeout=10) as c:  # closed here: mitmproxy sees the disconnect
        r = c.post(gw.url + "/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text



@pytest.mark.e2e
def test_one_request_prints_one_line(make_gateway, emu, oauth_home):
    gw = make_gateway("quiet", env=oauth_home["env"])
    before = _log_size_after_startup(gw)
    _one_request(gw)
    lines = _new_lines(gw, before, REQUEST_LINE)
    assert len(lines) == 1 and REQUEST_LINE.match(lines[0]), lines


@pytest.mark.e2e
def test_one_stream_prints_one_line(make_gateway, emu, oauth_home):
    gw = make_gateway("quiet-stream", env=oauth_home["env"])
    before = _log_size_after_startup(gw)
    _one_request(gw, stream=True)
    lines = _new_lines(gw, before, REQUEST_LINE)
    assert len(lines) == 1 and REQUEST_LINE.match(lines[0]), lines


@pytest.mark.e2e
def test_one_request_prints_one_line_in_mitmweb(make_gateway, emu, oauth_home):
    from e2e.test_mitmweb import free_port  # noqa: PLC0415 (a helper of the mitmweb tests)

    gw = make_gateway("quiet-web", tool="mitmweb", env=oauth_home["env"],
                      args=("--set", f"web_port={free_port()}", "--set", "web_password=pw"))
    before = _log_size_after_startup(gw)
    _one_request(gw, stream=True)
    lines = _new_lines(gw, before, REQUEST_LINE)
    assert len(lines) == 1 and REQUEST_LINE.match(lines[0]), lines


@pytest.mark.e2e
@pytest.mark.parametrize("args", [("--set", "flow_detail=1"), ("--flow-detail", "2")])
def test_flow_detail_brings_mitmproxys_lines_back(make_gateway, emu, oauth_home, args):
    gw = make_gateway("verbose", env=oauth_home["env"], args=args)
    before = _log_size_after_startup(gw)
    _one_request(gw)
    lines = _new_lines(gw, before, REQUEST_LINE)
    text = "\n".join(lines)
    assert sum(bool(REQUEST_LINE.match(ln)) for ln in lines) == 1, text
    assert "client connect" in text and "client disconnect" in text, text
    # the flow as the client called it (the reverse target is a label: claim.show_as_called)
    assert f"POST http://127.0.0.1:{gw.port}/v1/chat/completions" in text and "<< 200 OK" in text, text


@pytest.mark.e2e
def test_mitmweb_shows_the_comment_column_unless_the_user_chose_columns(make_gateway, emu, oauth_home):
    from e2e.test_mitmweb import free_port  # noqa: PLC0415 (a helper of the mitmweb tests)

    def columns(name: str, *args: str) -> list[str]:
        port = free_port()
        gw = make_gateway(name, tool="mitmweb", env=oauth_home["env"],
                          args=("--set", f"web_port={port}", "--set", "web_password=pw", *args))
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": "Bearer pw"},
                           trust_env=False, timeout=10)
        deadline = time.monotonic() + 20
        while True:
            try:
                r = api.get("/options")
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, gw.log()
            time.sleep(0.1)
        gw.stop()
        return r.json()["web_columns"]["value"]

    assert columns("web-default") == ["tls", "icon", "path", "method", "status", "size", "time", "comment"]
    assert columns("web-chosen", "--set", "web_columns=path", "--set", "web_columns=status") == ["path", "status"]
