"""Fail closed on configuration (ingress/startup.py), with mitmproxy's own option manager: values mitmproxy
holds for the gateway are checked before it applies them; while mitmproxy starts, a problem ends the
process; once it runs, a bad value is refused and the previous one kept."""

from __future__ import annotations

import logging

import pytest
from mitmproxy import exceptions, optmanager
from mitmproxy.test import taddons

from qwen_gateway.settings import config
from qwen_gateway.ingress import startup


class Loader:
    def __init__(self, opts) -> None:
        self.add_option = opts.add_option


def deferred_options(*sets: str) -> optmanager.OptManager:
    opts = optmanager.OptManager()
    opts.set(*sets, defer=True)  # what mitmdump does with --set before any script has loaded
    config.declare(Loader(opts))
    return opts


def test_deferred_values_the_gateway_refuses_are_named_and_taken_out_of_mitmproxys_hands():
    opts = deferred_options("qwen_upstream_keepalive=ten", "qwen_allow_open=maybe", "qwen_remote_login=bogus",
                            "qwen_default_modle=x", "qwen_metrics=false", "web_port=1")
    problems = startup.check_deferred(opts)
    assert problems == ["option qwen_upstream_keepalive: got 'ten'; accepts an integer from 0 to 86400",
                        "option qwen_allow_open: got 'maybe'; accepts true or false",
                        "option qwen_remote_login: got 'bogus'; accepts one of off, loopback, on",
                        "unknown option qwen_default_modle (did you mean qwen_default_model?)"]
    assert set(opts.deferred) == {"qwen_metrics", "web_port"}  # the good one and mitmproxy's own stay
    opts.process_deferred()  # mitmproxy's own pass no longer fails
    assert opts.qwen_metrics is False


def test_a_value_of_the_right_type_beyond_its_bounds_is_said_with_the_rest():
    """Issue 51: a choice refused at load stopped the gateway before the bounds (checked at configure) were
    looked at: three bad values, one line."""
    opts = deferred_options("qwen_web_pin=bogus", "qwen_max_body_mb=0", "qwen_upstream_timeout=-1",
                            "qwen_upstream_keepalive=30")
    assert startup.check_deferred(opts) == ["option qwen_web_pin: got 'bogus'; accepts one of off, user",
                                            "option qwen_max_body_mb: got '0'; accepts an integer from 1 to 1024",
                                            "option qwen_upstream_timeout: got '-1'; accepts an integer from 0 "
                                            "to 86400"]
    assert set(opts.deferred) == {"qwen_upstream_keepalive"}


def test_names_no_addon_declared_are_said_with_the_one_meant():
    opts = deferred_options("flow_detial=1", "zzzzzz=1", "qwen_metrics=false")
    opts.add_option("flow_detail", int, 1, "")
    assert startup.unknown_options(opts, sorted(opts.keys())) == [
        "mitmproxy ignores unknown option flow_detial (did you mean flow_detail?)",
        "mitmproxy ignores unknown option zzzzzz; `mitmdump --options` lists them"]


def test_config_yaml_values_are_checked_too():
    opts = optmanager.OptManager()
    opts.update_defer(qwen_max_body_mb="ten", qwen_token_count=True)  # load_paths defers typed YAML values
    config.declare(Loader(opts))
    assert startup.check_deferred(opts) == ["option qwen_max_body_mb: got 'ten'; accepts an integer from 1 to 1024"]


def test_at_start_up_a_problem_ends_the_process_with_one_line_each(caplog):
    caplog.set_level(logging.ERROR, "qwen")
    with pytest.raises(SystemExit) as e:
        startup.stop(["option a: got 'x'; accepts y", "option b: got 'z'; accepts w"])
    assert e.value.code == startup.BAD_OPTION
    assert [r.getMessage() for r in caplog.records] == ["qwen: the gateway cannot start: option a: got 'x'; accepts y",
                                                        "qwen: the gateway cannot start: option b: got 'z'; accepts w"]


@pytest.mark.parametrize("running", [False, True])
def test_failures_in_load_and_configure(running, caplog):
    with pytest.raises(SystemExit if not running else exceptions.OptionsError) as e:
        with startup.fail_closed(running):
            raise exceptions.OptionsError("option a: got 'x'; accepts y\noption b: got 'z'; accepts w")
    if not running:
        assert e.value.code == startup.BAD_OPTION
        assert len([r for r in caplog.records if "cannot start" in r.getMessage()]) == 2
    caplog.clear()
    with pytest.raises(SystemExit if not running else exceptions.OptionsError) as e:
        with startup.fail_closed(running):
            raise KeyError("a bug")
    if running:  # refused like a bad value: mitmproxy keeps the previous settings
        assert "could not apply the change (KeyError): the previous settings are kept" in str(e.value)
    else:
        assert e.value.code == startup.FAILED
    assert any(r.exc_info for r in caplog.records)  # the traceback once, in the log


def test_mitmproxy_running_is_read_from_its_script_loader():
    with taddons.context() as tctx:
        assert startup.mitmproxy_running(tctx.master) is False
        assert startup.mitmproxy_running(None) is False
