"""The mitmproxy code a seam was written against, and the check that it is the code installed.

A seam names the functions and classes whose behaviour it replaces, reproduces or relies on, each with a
digest of its source as mitmproxy WRITTEN_AGAINST ships it. Before the seam installs, the source of what is
installed now is read (`inspect.getsource`: the .py files mitmproxy's wheel carries) and hashed; any
difference — another release, a patched mitmproxy, a replacement by another addon — and the seam refuses with
one log line. The version number alone would not do: a release may change the code or keep it, and a patch or
another addon changes it under the same number.

After upgrading mitmproxy, tests/unit/seams/test_fingerprint.py names each piece of code that changed and its new
digest: read the change, adapt the seam, then take the digest.

Reading and tokenizing the sources is ~60 ms of every start. KNOWN spares it when nothing changed: for each
named code, the digest it vouches for, the digest of the file it was taken from, and where in that file the code
is (a function: its first line, from which inspect reads it; a class: its qualified name, by which inspect finds
it). When the file the code found comes from is that file byte for byte and the code is where it was, its source
is the one that was hashed. Anything else is read and hashed.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import linecache
import logging
import sys
from dataclasses import dataclass

from mitmproxy import version

log = logging.getLogger("qwen")

WRITTEN_AGAINST = "12.2.3"  # the seams' digests were taken from it (the same code: 12.2.0, 12.2.2, 12.3.0, 12.3.1)

_told: set[str] = set()  # seams whose refusal was logged: one line per seam and process
# Each seam's first decision in this process: the named code that differed then (empty: it fit). Asked again
# later, the code "as found" may be the seam's own wrapper: the first answer is the one that holds.
decided: dict[str, list[str]] = {}


def known(name: str, expected: str) -> bool:
    """Whether the code `name` finds is, without reading its source, the code whose digest is `expected`."""
    entry = KNOWN.get(name)
    if entry is None or entry[0] != expected:
        return False
    _, file_digest, where = entry
    try:
        found = inspect.unwrap(_found(name))  # type: ignore[arg-type]
        if isinstance(where, int):  # a function: inspect reads its file from its first line on
            code = found.__code__
            file, same_place = code.co_filename, code.co_firstlineno == where
        else:  # a class: inspect finds it in its module's file by its qualified name
            file, same_place = sys.modules[found.__module__].__file__, found.__qualname__ == where
        if not same_place:
            return False
        with open(file, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:16] == file_digest
    except (ImportError, AttributeError, KeyError, OSError, TypeError):
        return False


def _found(name: str) -> object:
    """What "module:qualified.name" names as installed now (ImportError, AttributeError: nothing)."""
    module, _, qualname = name.partition(":")
    found: object = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def digest(name: str) -> str | None:
    """The digest of the source of `name` ("module:qualified.name") as installed; None when there is no
    such code or its source cannot be read."""
    try:
        source = _source(_found(name))
    except (ImportError, AttributeError, OSError, TypeError, SyntaxError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()[:16]


# A source file's lines (as linecache holds them) and the line each class in it starts on (its first decorator's)
_class_starts: dict[str, tuple[list[str], dict[str, int]]] = {}


def _source(found: object) -> str:
    """`inspect.getsource`'s text. For a class, inspect parses the whole file to find it, again for each class;
    here a file is parsed once (three named classes share mitmproxy's 1,000-line HTTP/1 layer: ~15 ms of a
    gateway's start)."""
    found = inspect.unwrap(found)  # type: ignore[arg-type]
    if not inspect.isclass(found):
        return inspect.getsource(found)  # type: ignore[arg-type]
    file = inspect.getsourcefile(found)
    module = inspect.getmodule(found, file)
    if file is None or module is None:
        return inspect.getsource(found)
    linecache.checkcache(file)
    lines = linecache.getlines(file, module.__dict__)
    known = _class_starts.get(file)
    if known is None or known[0] is not lines:
        known = _class_starts[file] = (lines, _ClassStarts.of("".join(lines)))
    start = known[1].get(found.__qualname__)
    if start is None:
        raise OSError("could not find class definition")
    return "".join(inspect.getblock(lines[start:]))


class _ClassStarts(ast.NodeVisitor):
    """Every class of a module by qualified name, with the line inspect starts its source on (0-based): the
    first of its decorators, or its `class` line; the first class of a name wins, as in inspect's search."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.starts: dict[str, int] = {}

    @classmethod
    def of(cls, source: str) -> dict[str, int]:
        finder = cls()
        finder.visit(ast.parse(source))
        return finder.starts

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.stack += [node.name, "<locals>"]
        self.generic_visit(node)
        del self.stack[-2:]

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stack.append(node.name)
        first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        self.starts.setdefault(".".join(self.stack), first - 1)
        self.generic_visit(node)
        self.stack.pop()


@dataclass(frozen=True)
class WrittenAgainst:
    seam: str  # what the gateway does to mitmproxy, for the log line
    loses: str  # what the gateway does without it
    code: tuple[tuple[str, str], ...]  # ("module:qualified.name", digest of its source in WRITTEN_AGAINST)

    def differing(self) -> list[str]:
        """The named code whose installed source is not the one the seam was written against."""
        return [name for name, expected in self.code if not known(name, expected) and digest(name) != expected]

    def fits(self) -> bool:
        """Whether the seam may install; if not, one warning (once per process) says what is left out."""
        differing = self.differing()
        decided.setdefault(self.seam, [name.partition(":")[2] for name in differing])
        if differing and self.seam not in _told:
            _told.add(self.seam)
            names = ", ".join(name.partition(":")[2] for name in differing)
            log.warning(f"qwen: {self.seam}: left out, as this mitmproxy ({version.VERSION}) is not the code it was "
                        f"written against (mitmproxy {WRITTEN_AGAINST}; changed: {names}); {self.loses}")
        return not differing


KNOWN_FROM = "12.3.1"  # the mitmproxy KNOWN was taken from (its named code is WRITTEN_AGAINST's)
# Taken by tests/unit/seams/test_fingerprint.py (which prints it anew):
# name -> (the digest it vouches for, the digest of the file, where the code is in it)
KNOWN: dict[str, tuple[str, str, int | str]] = {
    'mitmproxy.addonmanager:AddonManager._iter_hooks': ('350b419ab7284091', '8134356f2d543357', 243),
    'mitmproxy.addonmanager:AddonManager.add': ('6c26295c4f0f4eb9', '8134356f2d543357', 198),
    'mitmproxy.addonmanager:AddonManager.invoke_addon': ('13180532440359de', '8134356f2d543357', 264),
    'mitmproxy.addonmanager:AddonManager.register': ('01ddcca314eebbd3', '8134356f2d543357', 158),
    'mitmproxy.addonmanager:AddonManager.remove': ('2e93aab2204a39f6', '8134356f2d543357', 206),
    'mitmproxy.addonmanager:AddonManager.trigger_event': ('b763c59bc4992e33', '8134356f2d543357', 285),
    'mitmproxy.addonmanager:safecall': ('f2052c18340e99b0', '8134356f2d543357', 44),
    'mitmproxy.addonmanager:traverse': ('bad3d9f88bdf9269', '8134356f2d543357', 110),
    'mitmproxy.addons.script:Script.loadscript': ('f2972abb206ff2fe', 'd210e99b2b2ad07d', 113),
    'mitmproxy.addons.script:ScriptLoader.configure': ('d76470344008804a', 'd210e99b2b2ad07d', 190),
    'mitmproxy.addons.termlog:TermLog': ('262bdcb2d4aa4b06', 'cf2c8848f3adff35', 'TermLog'),
    'mitmproxy.addons.termlog:TermLogHandler': ('21e393b7aff8d256', 'cf2c8848f3adff35', 'TermLogHandler'),
    'mitmproxy.hooks:Hook.args': ('5bab95f7aa358e18', 'd47e522c063e637b', 21),
    'mitmproxy.http:MessageData.__post_init__': ('f65088e210cd9cc1', 'f8ff6ff9e8f095ec', 191),
    'mitmproxy.master:Master._asyncio_exception_handler': ('822415006521e79e', 'fe872b7d4484ccbe', 112),
    'mitmproxy.master:Master.run': ('45c44c14f8f79349', 'fe872b7d4484ccbe', 54),
    'mitmproxy.proxy.layers.http._http1:Http1Connection': ('c0675638b0756013', 'a2ed8918f1c4a070', 'Http1Connection'),
    'mitmproxy.proxy.layers.http._http1:Http1Server': ('cc8428d0bb6f79a5', 'a2ed8918f1c4a070', 'Http1Server'),
    'mitmproxy.proxy.layers.http._http1:Http1Server.read_body': ('aece271029af36e4', 'a2ed8918f1c4a070', 88),
    'mitmproxy.proxy.layers.http._http1:Http1Server.read_headers': ('3fe0945216bcf7bc', 'a2ed8918f1c4a070', 281),
    'mitmproxy.proxy.layers.http._http1:Http1Server.send': ('cc218a1337c0f5cf', 'a2ed8918f1c4a070', 235),
    'mitmproxy.proxy.layers.http._http1:Http1Server.wait': ('c99d0494a840a2b6', 'a2ed8918f1c4a070', 125),
    'mitmproxy.proxy.layers.http._http1:make_error_response': ('03ce75ab62e8e78b', 'a2ed8918f1c4a070', 483),
    'mitmproxy.proxy.layers.http:HttpStream.check_body_size': ('236ca0a7b9fd4f69', '0e7b3474f7febddc', 568),
    'mitmproxy.proxy.layers.websocket:WebsocketConnection': ('9c6f5dd6ece0042e', '1c3e6090aa92f884', 'WebsocketConnection'),
    'mitmproxy.proxy.layers.websocket:WebsocketLayer': ('094cd5f8cf031433', '1c3e6090aa92f884', 'WebsocketLayer'),
    'mitmproxy.proxy.layers.websocket:WebsocketLayer._handle_event': ('8445ad1cfb2fcca5', '1c3e6090aa92f884', 98),
    'mitmproxy.proxy.layers.websocket:WebsocketLayer.relay_messages': ('2d451252c7287da0', '1c3e6090aa92f884', 136),
    'mitmproxy.proxy.server:ConnectionHandler.open_connection': ('5e0b3cbaf7a4030a', '8e7a49721801ffc2', 182),
    'mitmproxy.tools.main:run': ('bea9540bf91c354a', '014339be3f863460', 45),
    'mitmproxy.utils.asyncio_utils:install_exception_handler': ('3ad1e518c2433fdd', '601501e1bf424c19', 78),
    'mitmproxy.utils.typecheck:check_option_type': ('b60e47c7091fa795', 'a59e18785a78b5cf', 14),
}
