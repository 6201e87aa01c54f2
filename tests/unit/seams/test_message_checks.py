"""mitmproxy's check of a message's fields (seams/message_checks.py): the same fields accepted and the same
TypeError raised as by mitmproxy's own check, without an exception (and its reference cycle) for each field
that is None; installed only in a process mitmproxy's `run` started, only over the code it was written
against. The work is counted (cyclic garbage left per message), never timed."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import typing

import pytest
from helpers import another_mitmproxy
from mitmproxy import http, options
from mitmproxy.test import taddons
from mitmproxy.tools.dump import DumpMaster

from qwen_gateway.seams import fingerprint, message_checks


@pytest.fixture(autouse=True)
def mitmproxys_own():
    """A test that loaded the gateway into a DumpMaster installed the seam for the whole process: each test here
    starts from mitmproxy's own check, and leaves it."""
    message_checks.uninstall()
    yield
    message_checks.uninstall()


@pytest.fixture
async def installed():
    m = DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    assert message_checks.install(m)
    yield
    message_checks.uninstall()


# In a process of its own: the collector counts every thread's garbage, and a worker's other tests leave threads
# (a storage probe of a database a test took away leaves a failed connect's cycle every half second: CI, 0.1725)
_MEASURE = """
import asyncio, gc, sys
from mitmproxy import http, options
from mitmproxy.tools.dump import DumpMaster
from qwen_gateway.seams import message_checks

async def main():
    if sys.argv[1] == "installed":
        assert message_checks.install(DumpMaster(options.Options(), with_termlog=False, with_dumper=False))
    gc.collect()
    gc.disable()
    for _ in range(200):
        http.Response.make(200, b"{}", {"content-type": "application/json"})
        http.Request("127.0.0.1", 8080, b"POST", b"http", b"", b"/v1/chat/completions", b"HTTP/1.1",
                     http.Headers(host="x"), b"{}", None, 1.0, None)
    print(gc.collect() / 400)

asyncio.run(main())
"""


def _cyclic_garbage_per_message(check: str) -> float:
    """The cyclic garbage a made message leaves, with mitmproxy's own check (`own`) or the seam's (`installed`)."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, check], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return float(out.stdout)


def test_mitmproxys_own_check_leaves_cyclic_garbage_for_every_message():
    assert _cyclic_garbage_per_message("own") > 20  # a TypeError raised and caught per field that is None


def test_installed_a_message_leaves_no_cyclic_garbage():
    assert _cyclic_garbage_per_message("installed") == 0


VALUES = [None, b"x", "x", 0, 1.5, True, http.Headers(), (b"a", b"b"), [], object()]


@pytest.mark.parametrize("cls", [http.RequestData, http.ResponseData])
def test_the_same_values_are_accepted_and_the_same_errors_raised(cls, installed):
    """Every field of mitmproxy's message classes, with a value of each kind: the seam's check and mitmproxy's
    own agree on what passes, and raise the same TypeError for what does not."""
    good = {"http_version": b"HTTP/1.1", "headers": http.Headers(), "content": b"", "trailers": None,
            "timestamp_start": 1.0, "timestamp_end": None, "host": "h", "port": 1, "method": b"GET",
            "scheme": b"http", "authority": b"", "path": b"/", "status_code": 200, "reason": b"OK"}
    kwargs = {f.name: good[f.name] for f in dataclasses.fields(cls)}
    for field in dataclasses.fields(cls):
        for value in VALUES:
            made = {**kwargs, field.name: value}
            try:
                message_checks.uninstall()
                want = _outcome(cls, made)
            finally:
                http.MessageData.__post_init__ = message_checks._post_init  # type: ignore[method-assign]
            assert _outcome(cls, made) == want, (field.name, value)


def _outcome(cls, kwargs) -> str:
    try:
        cls(**kwargs)
    except TypeError as e:
        return f"TypeError: {e}"
    return "accepted"


def test_what_each_type_accepts():
    assert message_checks.accepted(bytes) == (bytes,)
    assert message_checks.accepted(bytes | None) == (bytes, type(None))
    assert message_checks.accepted(float | None) == (float, type(None), int)  # as check_option_type: an int is a float
    assert message_checks.accepted(list[str]) is None  # left to check_option_type
    assert message_checks.accepted(bytes | list[str]) is None
    # a class `isinstance` cannot take (check_option_type accepts anything for Any): left to check_option_type
    assert message_checks.accepted(typing.Any) is None
    assert message_checks.accepted(int | typing.Any) is None


async def test_a_field_mitmproxy_types_as_any_is_accepted_as_mitmproxys_check_accepts_it(installed):
    WithAny = dataclasses.make_dataclass("WithAny", [("note", typing.Any, None)], bases=(http.ResponseData,))
    made = WithAny(b"HTTP/1.1", http.Headers(), b"", None, 1.0, None, 200, b"OK", note=object())
    assert made.note is not None


def test_not_installed_by_a_tests_master():
    with taddons.context() as tctx:
        assert not message_checks.install(tctx.master)
    assert http.MessageData.__dict__["__post_init__"] is message_checks._original


async def test_on_another_mitmproxy_the_seam_stays_out(tmp_path, monkeypatch, caplog):
    module = another_mitmproxy.release("mitmproxy.utils.typecheck", tmp_path, monkeypatch)
    monkeypatch.setattr("mitmproxy.utils.typecheck.check_option_type", module.check_option_type)
    monkeypatch.setattr(fingerprint, "_told", set())
    monkeypatch.setattr(fingerprint, "decided", {})  # this test decides anew
    m = DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    with caplog.at_level(logging.WARNING, logger="qwen"):
        assert not message_checks.install(m)
    assert http.MessageData.__dict__["__post_init__"] is message_checks._original
    assert [r.getMessage().split(" (mitmproxy 12")[0] for r in caplog.records] == [
        f"qwen: message fields checked without an exception each: left out, as this mitmproxy "
        f"({fingerprint.version.VERSION}) is not the code it was written against"]


async def test_installed_once(installed):
    m = DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    assert not message_checks.install(m)  # MessageData's check is not mitmproxy's own any more
