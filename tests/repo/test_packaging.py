"""Installed as one package: `qwen_gateway` imports, the folders' own names (`auth`, `addons`) do not."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # starts a Python process outside the checkout


@pytest.mark.parametrize("module,importable", [("qwen_gateway", True), ("qwen_gateway.auth.registry", True),
                                               ("qwen_gateway.upstream.pool.pool", True), ("qwen_gateway.cli.auth", True),
                                               ("auth", False), ("addons", False)])
def test_only_qwen_gateway_is_importable(tmp_path, module, importable):
    r = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode == 0) is importable, r.stderr


def test_an_installed_copy_holds_the_accounts(tmp_path):
    """`pip install .`, not editable, from what the container image is built from (pyproject.toml, setup.py,
    README.md, addons/): every package and data file, the credentials (auth/), the account pool (upstream/pool/) and
    `qwen-auth` are in the copy, and the copy is what imports (not the checkout the editable install of the tests
    points at)."""
    from helpers.procs import ROOT

    source, site = tmp_path / "src", tmp_path / "site"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "addons", source / "addons", ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                        "--disable-pip-version-check", "--target", str(site), str(source)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    # every package (setup.py finds them: no list to forget one in) and every data file pyproject.toml names
    gateway, installed = source / "addons" / "gateway", site / "qwen_gateway"
    wanted = [p.relative_to(gateway) for p in gateway.rglob("__init__.py")]
    for package, patterns in tomllib.loads((source / "pyproject.toml").read_text())["tool"]["setuptools"][
            "package-data"].items():
        folder = gateway.joinpath(*package.split(".")[1:])
        wanted += [p.relative_to(gateway) for pattern in patterns for p in folder.glob(pattern)]
    assert {Path("upstream/pool/__init__.py"), Path("api/request_schemas.json")} <= set(wanted)
    assert [str(p) for p in wanted if not (installed / p).is_file()] == []
    env = {**os.environ, "PYTHONPATH": str(site)}  # found before the editable install's finder (appended last)
    code = "import qwen_gateway.auth, qwen_gateway.upstream.pool.pool as p, qwen_gateway.cli.auth; print(p.__file__)"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == site / "qwen_gateway" / "upstream" / "pool" / "pool.py"
    r = subprocess.run([sys.executable, str(site / "bin" / "qwen-auth"), "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "usage: qwen-auth" in r.stdout, r.stderr


def test_every_docstring_compiles_on_python_3_13():
    """Python 3.13 strips a docstring's indentation at compile time, through UTF-8: a lone surrogate in one
    (a `\\ud800` escape in a docstring that is not raw) is `UnicodeEncodeError`, and the module cannot be
    imported (found by building the container image on Debian trixie's Python 3.13). Checked here on any
    Python: no docstring of the package, its scripts or its tests holds a lone surrogate."""
    import ast
    import re

    from helpers.procs import ROOT

    # a file of valid UTF-8 holds no surrogate as such: one comes only from a \u or \U escape of D800-DFFF, so only
    # files with such an escape are parsed (all of them took 7.6 s of CPU)
    escape = re.compile(r"\\(u[dD][89a-fA-F]|U0000[dD][89a-fA-F])")
    found = []
    for folder in ("addons", "scripts", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if not escape.search(text := path.read_text(encoding="utf-8")):
                continue
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node, clean=False)
                    if doc and re.search("[\ud800-\udfff]", doc):
                        found.append(f"{path.relative_to(ROOT)}: {getattr(node, 'name', 'the module')}")
    assert found == [], "docstrings with a lone surrogate (write the escape as \\\\ud800, or make it raw):\n" \
        + "\n".join(found)
