"""Absurd option values (settings/config.py, settings/option_specs.py) with the gateway in mitmproxy's own option manager
(taddons): while mitmproxy starts, each stops it with one line (the option, the value shortened, the
allowed range) and no traceback; once it runs, each is refused and the previous Config kept, and requests
are still answered."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from qwen_gateway.settings import config
from qwen_gateway.ingress import startup
from unit.test_addon import OAUTH_CRED, chat_flow, make, through

HUGE = 10**400  # an int, but no float: every timer and clock overflowed on it


A_FILE = "{a regular file}"  # replaced by the path of one
# (option, value, what the refusal says it accepts)
ABSURD: list[tuple[str, object, str]] = [
    ("qwen_upstream_timeout", HUGE, "an integer from 0 to 86400"),
    ("qwen_stream_idle_timeout", HUGE, "an integer from 0 to 86400"),
    ("qwen_head_timeout", HUGE, "an integer from 0 to 86400"),
    ("qwen_max_body_mb", 1 << 40, "an integer from 1 to 1024"),
    ("qwen_context_limits", ["coder-model=" + "9" * 5000], "tokens from 1 to 1000000000"),
    ("qwen_context_limits", ["coder-model=1000000001"], "tokens from 1 to 1000000000"),
    ("qwen_user_agent", "x" * (1 << 20), "printable ASCII text, at most 512 characters"),
    ("qwen_user_agent", "QwenCode/1 (linux; é)", "printable ASCII text"),
    ("qwen_state_dir", A_FILE, "the path of a folder"),
    ("qwen_state_dir", "   ", "the path of a folder"),
    ("qwen_client_keys_file", "k" * 5000, "at most 4096 characters"),
    ("qwen_intercept_hosts", ["a" * 64 + ".example"], "63 between dots"),
]


def absurd(tmp_path: Path) -> list[tuple[str, object, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    return [(name, str(a_file) if value == A_FILE else value, accepts) for name, value, accepts in ABSURD]


@pytest.mark.parametrize("case", range(len(ABSURD)), ids=[f"{n}-{str(v)[:12]}" for n, v, _ in ABSURD])
def test_an_absurd_value_stops_the_gateway_while_mitmproxy_starts_with_one_line(tmp_path, caplog, case):
    name, value, accepts = absurd(tmp_path)[case]
    gw, _ = make(OAUTH_CRED)
    caplog.set_level(logging.INFO, "qwen")
    with taddons.context(gw) as tctx:
        with pytest.raises(SystemExit) as e:
            tctx.configure(gw, **{name: value})
    assert e.value.code == startup.BAD_OPTION
    (line,) = [r.getMessage() for r in caplog.records if "cannot start" in r.getMessage()]
    assert line.startswith(f"qwen: the gateway cannot start: option {name}: got '") and accepts in line, line
    assert len(line) < 400 and not any(r.exc_info for r in caplog.records), line


async def test_absurd_values_at_run_time_are_refused_the_previous_config_kept_and_requests_answered(tmp_path):
    gw, qwen = make(OAUTH_CRED)
    with taddons.context(gw) as tctx:
        tctx.configure(gw, qwen_upstream_timeout=30)
        gw.running()
        before = gw.config
        for name, value, accepts in absurd(tmp_path):
            with pytest.raises(exceptions.OptionsError, match=f"^option {name}: got ") as e:
                tctx.configure(gw, **{name: value})
            assert accepts in str(e.value) and "\n" not in str(e.value)
            assert getattr(tctx.options, name) == config.SPECS[name].default or name == "qwen_upstream_timeout"
        assert _touched(gw.config) == _touched(before) and tctx.options.qwen_upstream_timeout == 30
        f = await through(gw, chat_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        assert f.response.status_code == 200 and len(qwen.requests) == 1
        await gw.done()


def test_every_bound_is_accepted_and_one_past_it_refused():
    with taddons.context() as tctx:
        config.declare(tctx.options)
        for name, spec in config.SPECS.items():
            if spec.typespec is not int:
                continue
            tctx.options.update(**{name: spec.maximum})
            assert getattr(config.parse(tctx.options), _field(name)) is not None
            tctx.options.update(**{name: spec.maximum + 1})
            with pytest.raises(exceptions.OptionsError, match=f"option {name}: got '{spec.maximum + 1}'"):
                config.parse(tctx.options)
            tctx.options.update(**{name: spec.default})


def test_paths_are_used_as_they_were_checked_without_spaces_around_them(tmp_path):
    with taddons.context() as tctx:
        config.declare(tctx.options)
        tctx.options.update(qwen_state_dir=f"  {tmp_path / 'state'}  ")
        assert config.parse(tctx.options).state_dir == tmp_path / "state"


def _field(option: str) -> str:
    """The Config field an int option fills (most drop `qwen_`; sizes are kept in bytes)."""
    return {"qwen_max_body_mb": "max_body", "qwen_max_header_kb": "max_head",
            "qwen_websocket_read_ahead_mb": "websocket_read_ahead"}.get(option, option.removeprefix("qwen_"))


def _touched(cfg: config.Config) -> tuple:
    """What the absurd values would have changed (a rollback rebuilds the Config: equal, not the same)."""
    return (cfg.upstream_timeout, cfg.stream_idle_timeout, cfg.head_timeout, cfg.max_body, cfg.context_limits,
            cfg.user_agent, cfg.state_dir, cfg.client_keys, cfg.intercept_hosts)
