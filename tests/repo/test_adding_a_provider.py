"""Issue 80: a new OpenAI-compatible host is one package and one line. Adding a provider is its package under
upstream/ and its line in provider_list.py's `PROVIDER_PACKAGES`: no other line of the list names it, nothing else in
the product does (its import and its name as a string: tests/repo/test_providers.py), the wheel's packages are found
rather than listed (setup.py; pyproject.toml lists none), and a provider with no column in request_surface.py has the
default one. The last test adds a provider to a copy of the package, those two things alone, and sees the copy take
it."""

from __future__ import annotations

import ast
import difflib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from qwen_gateway import request_surface as rs
from qwen_gateway.provider_list import PROVIDERS
from repo.test_layers import PROVIDER_LIST, ROOT, provider_packages, setup_packages
from repo.test_providers import providers


def _words_by_line(path: Path) -> dict[int, set[str]]:
    """Line -> the words its code says: names, attributes, imported names and each dotted part of an imported
    module or of a string (docstrings and comments aside)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found: dict[int, set[str]] = {}
    for node in ast.walk(tree):
        words: list[str] = []
        if isinstance(node, ast.Name):
            words = [node.id]
        elif isinstance(node, ast.Attribute):
            words = [node.attr]
        elif isinstance(node, ast.alias):
            words = [*node.name.split("."), node.asname or ""]
        elif isinstance(node, ast.ImportFrom):
            words = (node.module or "").split(".")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words = node.value.split(".")
        if words:
            found.setdefault(node.lineno, set()).update(words)
    return found


def _packages() -> list[str]:
    """Each provider's package name (its folder under upstream/)."""
    return [p.rsplit(".", 1)[1] for p in providers()]


def test_the_list_names_each_provider_on_a_line_of_its_own():
    """One line per provider: a line that names two, or a provider named on two lines (an import, then a tuple's
    entry, as the list had before), is a second line to write for the next one."""
    packages = set(_packages())
    lines = _words_by_line(PROVIDER_LIST)
    naming = {p: sorted(line for line, words in lines.items() if p in words) for p in sorted(packages)}
    assert {p: len(found) for p, found in naming.items()} == dict.fromkeys(sorted(packages), 1), naming
    assert sorted(line for line, words in lines.items() if len(words & packages) > 1) == []


def test_pyproject_lists_no_package():
    """setup.py finds the packages (tests/repo/test_layers.py: every folder of the package is found)."""
    assert "packages" not in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_a_provider_with_no_column_has_the_default_one():
    """Its fates name no function (its package has none the table could name) and hold no provider's name."""
    column = rs.fates("newhost")
    assert column == rs.DEFAULT_COLUMN and list(column) == [f.chat for f in rs.FIELDS]
    assert {f.kind for f in column.values()} <= {"send", "own", "drop"}
    assert not [f.what for f in column.values() if any(p in f.what for p in _packages())]


# A new provider's package as a copy of the product gets it: its `PROVIDER` (its upstream, as far as the composition
# reaches it; an account kind of its own, so that the core's answer shows the record declared)
NEW_PROVIDER = '''"""A host that speaks OpenAI's chat completions."""

from ...providers import Provider

NAME = "newhost"


class NewHost:
    name = NAME


PROVIDER = Provider(NAME, lambda config: NewHost(), kinds=frozenset({"newhost-key"}))
'''

# Run in the copy: what the list, the core and the table make of it
ASK = '''import json
from qwen_gateway import provider_list, provider_registry, request_surface
print(json.dumps({"list": provider_list.__file__, "providers": [p.name for p in provider_list.PROVIDERS],
                  "upstream": provider_list.PROVIDERS[-1].upstream(None).name,
                  "kind": provider_registry.of_kind("newhost-key"),
                  "fates": {name: [f.kind, f.what] for name, f in request_surface.fates("newhost").items()}}))
'''


def test_a_copy_with_one_package_and_one_line_more_has_the_provider(tmp_path):
    source = tmp_path / "addons" / "gateway"
    shutil.copytree(ROOT / "addons" / "gateway", source, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.py", tmp_path / "setup.py")
    (tmp_path / "qwen_gateway").symlink_to(source)  # the copy, found before the editable install's finder
    package = source / "upstream" / "newhost"
    package.mkdir()
    (package / "__init__.py").write_text('"""A new OpenAI-compatible host."""\n')
    (package / "provider.py").write_text(NEW_PROVIDER)
    listed = source / "provider_list.py"
    before = listed.read_text().splitlines(keepends=True)
    tuple_end = provider_packages("".join(before)).end_lineno
    assert tuple_end is not None
    after = [*before[:tuple_end - 1], '    "newhost",\n', *before[tuple_end - 1:]]  # the last: not the default
    listed.write_text("".join(after))
    assert [d for d in difflib.ndiff(before, after) if d[0] in "+-"] == ['+     "newhost",\n']

    r = subprocess.run([sys.executable, "-c", ASK], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert Path(seen["list"]) == tmp_path / "qwen_gateway" / "provider_list.py"  # the copy imported, not the checkout
    assert seen["providers"] == [*(p.name for p in PROVIDERS), "newhost"]
    assert (seen["upstream"], seen["kind"]) == ("newhost", "newhost")
    assert seen["fates"] == {name: [f.kind, f.what] for name, f in rs.DEFAULT_COLUMN.items()}
    assert "qwen_gateway.upstream.newhost" in setup_packages(tmp_path / "setup.py")  # the copy's setup.py
