"""The mitmproxy code a seam was written against, and the check that it is the code installed.

A seam names the functions and classes whose behaviour it replaces, reproduces or relies on, each with a
digest of its source as mitmproxy WRITTEN_AGAINST ships it. Before the seam installs, the source of what is
installed now is read (`inspect.getsource`: the .py files mitmproxy's wheel carries) and hashed; any
difference — another release, a patched mitmproxy, a replacement by another addon — and the seam refuses with
one log line. The version number alone would not do: a release may change the code or keep it, and a patch or
another addon changes it under the same number.

After upgrading mitmproxy, tests/unit/seams/test_fingerprint.py names each piece of code that changed and its new
digest: read the change, adapt the seam, then take the digest.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import linecache
import logging
from dataclasses import dataclass

from mitmproxy import version

log = logging.getLogger("qwen")

WRITTEN_AGAINST = "12.2.3"  # the seams' digests were taken from it (the same code: 12.2.0, 12.2.2, 12.3.0, 12.3.1)

_told: set[str] = set()  # seams whose refusal was logged: one line per seam and process
# Each seam's first decision in this process: the named code that differed then (empty: it fit). Asked again
# later, the code "as found" may be the seam's own wrapper: the first answer is the one that holds.
decided: dict[str, list[str]] = {}


def digest(name: str) -> str | None:
    """The digest of the source of `name` ("module:qualified.name") as installed; None when there is no
    such code or its source cannot be read."""
    module, _, qualname = name.partition(":")
    try:
        found: object = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        source = _source(found)
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
        return [name for name, expected in self.code if digest(name) != expected]

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
