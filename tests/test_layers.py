"""The package's layout is its architecture (docs/architecture.md): wings import the core, never each other;
the core imports no wing; no import cycle, type-only imports included. Read from the source, not imported."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WINGS = ("api", "upstream", "door", "mitmweb", "observe", "cli", "auth")
# seams/ (every patch of mitmproxy's or asyncio's behaviour) is not a wing: it is part of the core, which any
# wing may call and which imports no wing.
SEAMS = "qwen_gateway.seams"
# storage/ (connections, migrations, health, the local and shared state helpers) is part of the core too: every
# store uses it, the accounts' (auth/) as any wing's.
STORAGE = "qwen_gateway.storage"
# Entry points that wire the wings together.
WIRING = {"qwen_gateway.addon", "qwen_gateway.wiring", "qwen_gateway.wings"}


def modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package)."""
    out = {}
    for base, prefix in ((ROOT / "addons" / "gateway", ["qwen_gateway"]), (ROOT / "auth", ["qwen_gateway", "auth"])):
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            name = ".".join(prefix + (parts[:-1] if is_pkg else parts))
            out[name] = (path, is_pkg)
    return out


def imports(name: str, path: Path, is_pkg: bool, known: dict) -> set[str]:
    """The package's modules `name` imports, wherever the import statement stands (TYPE_CHECKING included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found |= {m for m in [target, *(f"{target}.{a.name}" for a in node.names)] if m in known}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, is_pkg, known) for name, (path, is_pkg) in known.items()}


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in WINGS else "core"


def test_the_package_is_read():
    g = graph()
    assert {"qwen_gateway.pivot", "qwen_gateway.api.chat", "qwen_gateway.upstream.engine",
            "qwen_gateway.auth.pool", f"{STORAGE}.pg"} <= set(g)
    assert "qwen_gateway.exchange" in g["qwen_gateway.upstream.engine"]  # imports are seen


def test_wings_import_the_core_never_each_other():
    crossings = []
    for module, deps in graph().items():
        if module in WIRING or wing(module) == "cli":
            continue
        for dep in deps:
            if wing(dep) in ("core", wing(module)):
                continue
            crossings.append(f"{module} -> {dep}")
    assert crossings == []


def test_no_import_cycle():
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in g:
        if v not in index:
            visit(v)
    assert cycles == []


def test_seams_are_core():
    assert wing(f"{SEAMS}.server_connect") == "core"
    assert all(wing(dep) == "core" for module, deps in graph().items() if module.startswith(SEAMS) for dep in deps)


def _opens_a_database(path: Path) -> list[str]:
    """Where a module opens a database itself: imports psycopg (or its pool) or calls sqlite3.connect."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        found += [f"line {node.lineno}: imports {n}" for n in names if n.split(".")[0] in ("psycopg", "psycopg_pool")]
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "sqlite3.connect":
            found.append(f"line {node.lineno}: calls sqlite3.connect")
    return found


def test_only_storage_opens_a_database():
    """Every store, the accounts' included, reaches its database through storage/ (sqlite.py, pg.py): auth/ holds
    accounts and credentials, not connections. The commands are entry points (`qwen-keys` reads a file as it is)."""
    outside = {name: _opens_a_database(path) for name, (path, _) in modules().items()
               if not name.startswith(STORAGE) and wing(name) != "cli"}
    assert {name: found for name, found in outside.items() if found} == {}
    assert {name for name, (path, _) in modules().items() if name.startswith(STORAGE) and _opens_a_database(path)} \
        == {f"{STORAGE}.{m}" for m in ("sqlite", "pg", "pg_faults")}


def _patches(path: Path) -> list[str]:
    """What a module does that patches mitmproxy or asyncio: imports a private mitmproxy module, assigns an
    attribute of an imported mitmproxy or asyncio name (directly or with setattr), binds a function as an
    object's method, or sets an event loop's exception handler or a signal's handler (mitmproxy's own)."""
    tree = ast.parse(path.read_text())
    foreign = {"asyncio"}  # names bound to asyncio or mitmproxy modules and their contents
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mitmproxy":
            foreign |= {a.asname or a.name for a in node.names}
            private = [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            if any(part.startswith("_") for part in (node.module or "").split(".")) or private:
                found.append(f"line {node.lineno}: imports mitmproxy's private {', '.join(private) or node.module}")
        elif isinstance(node, ast.Import):
            foreign |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] == "mitmproxy"}
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr" and node.args:
            targets = [ast.Attribute(value=node.args[0], attr="?")]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("set_exception_handler", "add_signal_handler"):
            found.append(f"line {node.lineno}: sets the event loop's {node.func.attr.split('_', 1)[1].replace('_', ' ')}")
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and ast.unparse(node.value.func).endswith("MethodType"):
            found.append(f"line {node.lineno}: binds a method to {ast.unparse(node.targets[0])}")
        for target in targets:
            root = target
            while isinstance(root, ast.Attribute):
                root = root.value
            if target is not root and isinstance(root, ast.Name) and root.id in foreign:
                found.append(f"line {node.lineno}: assigns to {ast.unparse(target)}")
    return found


def test_mitmproxy_and_asyncio_are_patched_only_in_seams():
    """docs/architecture.md#seams: every patch in one folder, each guarded by the mitmproxy it was written for."""
    outside = {name: _patches(path) for name, (path, _) in modules().items() if not name.startswith(SEAMS)}
    assert {name: found for name, found in outside.items() if found} == {}
    inside = {name for name, (path, _) in modules().items() if name.startswith(SEAMS) and _patches(path)}
    assert inside == {f"{SEAMS}.{m}" for m in ("hook_dispatch", "server_connect", "http1_heads", "loop_reports",
                                               "shutdown_signals")}


def test_every_package_is_installed():
    """A folder of the package missing from pyproject.toml's list is left out of a wheel (the editable install
    used here would not notice)."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {name for name, (_path, is_pkg) in modules().items() if is_pkg}
    assert packages == listed
