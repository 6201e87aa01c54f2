"""The check every seam makes before it patches mitmproxy (seams/fingerprint.py): the source of the code it was
written against, hashed, compared with what is installed. Each seam's own test (test_seams_*.py) shows it
refusing another mitmproxy's code."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from mitmproxy import master, version

from qwen_gateway import seams
from qwen_gateway.seams import fingerprint

SEAMS = ("hook_dispatch", "server_connect", "http1_heads", "body_limit", "loop_reports", "shutdown_signals",
         "message_checks", "websocket_messages", "terminal_log")


def test_the_seams_are_these_and_no_other():
    """request_target.py is gone: a claimed flow's URL is set by mitmproxy's own setters (ingress/claim.py)."""
    assert seams.SEAMS == SEAMS
    assert not (Path(seams.__file__).parent / "request_target.py").exists()


def test_every_seam_fits_the_installed_mitmproxy():
    """Fails after an upgrade of mitmproxy that changed code a seam names: read the change, adapt the seam,
    then take the new digest shown here. In a process of its own: here, seams are installed already."""
    code = ("import json\nfrom qwen_gateway.seams import fingerprint, " + ", ".join(SEAMS) + "\n"
            f"print(json.dumps({{name: fingerprint.digest(name) for seam in ({', '.join(SEAMS)},) "
            "for name, expected in seam.WRITTEN.code if fingerprint.digest(name) != expected}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {}, "changed: the installed mitmproxy's digests"


def test_code_that_is_not_there_or_has_no_source_is_not_the_code(monkeypatch):
    assert fingerprint.digest("mitmproxy.nowhere:Master.run") is None
    assert fingerprint.digest("mitmproxy.master:Master.ran") is None
    namespace: dict = {}
    exec("async def run(self):\n    pass\n", namespace)  # no file to read it from
    monkeypatch.setattr(master.Master, "run", namespace["run"])
    assert fingerprint.digest("mitmproxy.master:Master.run") is None
    written = fingerprint.WrittenAgainst("x", "y", (("builtins:len", "0000000000000000"),))
    assert written.differing() == ["builtins:len"]  # a builtin has no source: refused, not crashed


def test_a_refusal_is_one_line_per_seam_and_process(monkeypatch, caplog):
    monkeypatch.setattr(fingerprint, "_told", set())
    monkeypatch.setattr(fingerprint, "decided", {})  # this test decides anew
    written = fingerprint.WrittenAgainst("the seam", "what is lost", (
        ("mitmproxy.master:Master.run", "0000000000000000"),
        ("mitmproxy.master:Master.shutdown", fingerprint.digest("mitmproxy.master:Master.shutdown") or "")))
    with caplog.at_level(logging.WARNING, logger="qwen"):
        assert not written.fits() and not written.fits()
    assert caplog.messages == [
        f"qwen: the seam: left out, as this mitmproxy ({version.VERSION}) is not the code it was written against "
        f"(mitmproxy {fingerprint.WRITTEN_AGAINST}; changed: Master.run); what is lost"]


def _named() -> list[str]:
    import importlib

    return [name for seam in SEAMS for name, _ in importlib.import_module(f"qwen_gateway.seams.{seam}").WRITTEN.code]


def test_a_digest_is_of_the_source_inspect_reads():
    """The digests were taken of `inspect.getsource`'s text: what the check reads is that text, for every named
    function and class."""
    import hashlib
    import importlib
    import inspect

    for name in _named():
        module, _, qualname = name.partition(":")
        found: object = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        expected = hashlib.sha256(inspect.getsource(found).encode()).hexdigest()[:16]  # type: ignore[arg-type]
        assert fingerprint.digest(name) == expected, name


def test_a_file_is_parsed_once_for_all_the_classes_it_holds(monkeypatch):
    """A class's source is found by parsing its whole file (inspect parses it again for each class): three named
    classes share mitmproxy's 1,000-line HTTP/1 layer. Counted at the gateway's start (seams checked once each)."""
    import ast

    parsed: list[str] = []
    parse = ast.parse
    monkeypatch.setattr(fingerprint, "_class_starts", {})
    monkeypatch.setattr(ast, "parse", lambda source, *a, **kw: parsed.append(source[:200]) or parse(source, *a, **kw))
    names = _named()
    for name in names:
        fingerprint.digest(name)
    classes = {name.partition(":")[0] for name in names if name.partition(":")[2].rpartition(".")[2][:1].isupper()}
    assert len(parsed) == len(classes) == len(set(parsed))



def _fresh(code: str) -> object:
    """`code` run in a process of its own (here, seams may be installed already); what it printed, as JSON."""
    out = subprocess.run([sys.executable, "-c", "import json, sys\n" + code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


NAMED = f"""
import importlib, inspect, hashlib
from mitmproxy import version
from qwen_gateway.seams import fingerprint
named = {{name: expected for seam in {SEAMS!r}
         for name, expected in importlib.import_module(f"qwen_gateway.seams.{{seam}}").WRITTEN.code}}
"""


def test_known_code_is_the_code_its_source_says_and_the_table_is_current():
    """`known` vouches only for what reading the source finds; on the mitmproxy KNOWN was taken from, it knows
    every named piece of code (else: the table to paste, printed)."""
    found = _fresh(NAMED + """
table = {}
for name, expected in named.items():
    if fingerprint.digest(name) != expected:
        continue
    module, _, qualname = name.partition(":")
    code = importlib.import_module(module)
    for part in qualname.split("."):
        code = getattr(code, part)
    code = inspect.unwrap(code)
    if inspect.isclass(code):
        file, where = sys.modules[code.__module__].__file__, code.__qualname__
    else:
        file, where = code.__code__.co_filename, code.__code__.co_firstlineno
    table[name] = [expected, hashlib.sha256(open(file, "rb").read()).hexdigest()[:16], where]
print(json.dumps({"version": version.VERSION, "table": table,
                  "checked": {n: [e, fingerprint.known(n, e), fingerprint.digest(n)] for n, e in named.items()}}))
""")
    assert isinstance(found, dict)
    for name, (expected, known, digest) in found["checked"].items():
        assert not known or digest == expected, name
    if found["version"] != fingerprint.KNOWN_FROM:
        pytest.skip(f"KNOWN was taken from mitmproxy {fingerprint.KNOWN_FROM}; this is {found['version']}: every "
                    "seam reads its sources at start (correct, ~60 ms slower)")
    rows = "".join(f"    {n!r}: {tuple(v)!r},\n" for n, v in sorted(found["table"].items()))
    assert {n: list(v) for n, v in fingerprint.KNOWN.items()} == found["table"], "KNOWN for this mitmproxy:\n" + rows
    assert all(known for _, known, _ in found["checked"].values())


def test_at_start_no_source_is_read_when_every_named_code_is_known():
    """The gateway's start: each seam's check with no source read (~70 ms of reading and tokenizing, before)."""
    found = _fresh(NAMED + f"""
read = []
fingerprint._source = lambda code: read.append(repr(code)) or ""
differing = [importlib.import_module(f"qwen_gateway.seams.{{s}}").WRITTEN.differing() for s in {SEAMS!r}]
print(json.dumps({{"version": version.VERSION, "differing": differing, "read": read}}))
""")
    assert isinstance(found, dict)
    if found["version"] != fingerprint.KNOWN_FROM:
        pytest.skip(f"KNOWN was taken from mitmproxy {fingerprint.KNOWN_FROM}; this is {found['version']}")
    assert found == {"version": fingerprint.KNOWN_FROM, "differing": [[]] * len(SEAMS), "read": []}


def test_code_moved_replaced_or_in_another_file_is_read_not_known():
    found = _fresh(NAMED + """
from mitmproxy.proxy.layers.http import _http1
body = "mitmproxy.proxy.layers.http._http1:Http1Server.read_body"
cls = "mitmproxy.proxy.layers.http._http1:Http1Server"
expected = named[body]
written = fingerprint.WrittenAgainst("x", "y", ((body, expected),))
out = {"known": fingerprint.known(body, expected), "other digest": fingerprint.known(body, "0000000000000000")}
own = _http1.Http1Server.read_body
_http1.Http1Server.read_body = _http1.Http1Server.send  # another function of its file in its place
out["replaced"] = [fingerprint.known(body, expected), written.differing()]
_http1.Http1Server.read_body = own
entry = fingerprint.KNOWN[body]
fingerprint.KNOWN[body] = (entry[0], "0000000000000000", entry[2])  # not the file the table knows: read
read = []
source = fingerprint._source
fingerprint._source = lambda code: read.append(1) or source(code)
out["other file"] = [fingerprint.known(body, expected), written.differing(), len(read)]
_http1.Http1Server = _http1.Http1Client  # a class replaced by another class of its file
out["class replaced"] = fingerprint.known(cls, named[cls])
print(json.dumps(out))
""")
    assert found == {"known": True, "other digest": False,
                     "replaced": [False, ["mitmproxy.proxy.layers.http._http1:Http1Server.read_body"]],
                     "other file": [False, [], 1], "class replaced": False}
