"""The package's layout is its architecture (docs/architecture.md): the outer packages import the core, never each other;
the core imports no outer package and no wing (cache/: the cache doctor, on top of the core); no two folders import
each other; no import cycle, type-only imports included. Read from the source, not imported."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTER = ("api", "upstream", "ingress", "mitmweb", "observe", "cli")
# seams/ (every patch of mitmproxy's or asyncio's behaviour) is not an outer package: it is part of the core, which any
# outer package may call and which imports no outer package.
SEAMS = "qwen_gateway.seams"
# storage/ (connections, migrations, health, the local and shared state helpers) is part of the core too: every
# store uses it, the accounts' (auth/, upstream/pool/) as any outer package's.
STORAGE = "qwen_gateway.storage"
# tenancy/ (named client keys: the check, limits, spend, holds, their stores and moves) is core as well: the entrance
# check (ingress/) asks it of every request and the CLIs (qwen-keys, qwen-usage) read its stores, so it sits below
# the outer packages; the peer checks it shares with ingress/ (loopback, key comparison) are core too (peers.py).
TENANCY = "qwen_gateway.tenancy"
# stores/ (the stored Responses, chat completions, files and batches, with their SQL) is core as well: the dialects
# (api/) read and write them and the commands (qwen-keys, qwen-usage) read them, so it sits below the outer packages
# and beside storage/, which it reaches its databases through.
STORES = "qwen_gateway.stores"
# auth/ (the credentials and their accounts: OAuth logins, keys, web sessions, refresh, the accounts' state) is core as
# well: the account pool (upstream/pool/) is built from them and the commands (qwen-auth, qwen-gateway's unit) manage
# them, so they sit below the outer packages and know nothing of the pool that serves them.
AUTH = "qwen_gateway.auth"
# upstream/pool/ (the account pool: which account serves a call, affinity, key groups, quota windows, its status) is
# the upstream's: the engine reaches it only through the core protocol (accounts.Pool); the wiring builds it and
# `qwen-auth status` reads it.
POOL = "qwen_gateway.upstream.pool"
# cache/ (the cache doctor: a request's prefix fingerprinted, two turns compared, past turns kept, the diagnostics a
# client asked for) is a wing: a feature on top of the core, which the outer packages and the wiring may import and
# the core never does.
WING = "qwen_gateway.cache"
# Entry points that wire the outer packages together.
WIRING = {"qwen_gateway.addon", "qwen_gateway.wiring", "qwen_gateway.components", "qwen_gateway.provider_list"}


@functools.cache  # read by `folder` for each edge of the graph: walking the tree each time took 30 s of a run
def modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package)."""
    out = {}
    base = ROOT / "addons" / "gateway"
    for path in base.rglob("*.py"):
        parts = list(path.relative_to(base).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        name = ".".join(["qwen_gateway"] + (parts[:-1] if is_pkg else parts))
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


PROVIDER_LIST = ROOT / "addons" / "gateway" / "provider_list.py"  # the composition's list of providers


def provider_packages(source: str) -> ast.Assign:
    """provider_list.py's `PROVIDER_PACKAGES = (...)` statement, in its source."""
    return next(node for node in ast.parse(source).body if isinstance(node, ast.Assign)
                and [ast.unparse(t) for t in node.targets] == ["PROVIDER_PACKAGES"])


def listed_providers() -> list[str]:
    """The provider modules provider_list.py imports by their package's name (importlib), in its order: the
    `provider` module of each package its `PROVIDER_PACKAGES` names."""
    names = provider_packages(PROVIDER_LIST.read_text()).value
    return [f"qwen_gateway.upstream.{package}.provider" for package in ast.literal_eval(names)]


@functools.cache
def graph() -> dict[str, set[str]]:
    known = modules()
    found = {name: imports(name, path, is_pkg, known) for name, (path, is_pkg) in known.items()}
    # the list imports each provider by name, not by an import statement: its names are its imports
    found["qwen_gateway.provider_list"] |= set(listed_providers())
    return found


def outer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in OUTER else "core"


def test_the_package_is_read():
    g = graph()
    assert {"qwen_gateway.interfaces", "qwen_gateway.api.chat", "qwen_gateway.upstream.engine",
            f"{POOL}.pool", f"{AUTH}.registry", f"{STORAGE}.pg"} <= set(g)
    assert "qwen_gateway.exchange" in g["qwen_gateway.upstream.engine"]  # imports are seen


def test_outer_packages_import_the_core_never_each_other():
    crossings = []
    for module, deps in graph().items():
        if module in WIRING or outer(module) == "cli":
            continue
        for dep in deps:
            if outer(dep) in ("core", outer(module)):
                continue
            crossings.append(f"{module} -> {dep}")
    assert crossings == []


def test_nothing_but_the_wiring_imports_the_wiring():
    """The api package drives a turn through turn.TurnRunner, never the addon: no module imports the modules that
    wire the outer packages together but those modules themselves (and the entry points, cli/)."""
    imports_of_wiring = [f"{module} -> {dep}" for module, deps in graph().items()
                         if module not in WIRING and outer(module) != "cli" for dep in deps if dep in WIRING]
    assert imports_of_wiring == []
    # nor is it handed the addon untyped to reach into (ResponsesSockets(self), BackgroundRuns(self) were)
    handed = [f"{name}: {fn.name}({arg.arg})" for name, (path, _) in modules().items()
              if name not in WIRING and outer(name) not in ("core", "cli")
              for fn in ast.walk(ast.parse(path.read_text())) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for arg in fn.args.args + fn.args.kwonlyargs if arg.arg in ("gateway", "gw", "addon")]
    assert handed == []


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


def folder(module: str) -> str | None:
    """The top-level folder of the package a module is in (None: a module of the package's own top level)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and modules()[module][1]) else None


def test_no_two_folders_import_each_other():
    """Between two folders of the package the imports go one way only, type-only imports included: a record both
    need sits below both (as `price_tier.py` below models/ and pricing/), not in one of them."""
    leads: dict[tuple[str, str], list[str]] = {}
    for module, deps in graph().items():
        for dep in deps:
            pair = (folder(module), folder(dep))
            if None not in pair and pair[0] != pair[1]:
                leads.setdefault((str(pair[0]), str(pair[1])), []).append(f"{module} -> {dep}")
    both_ways = sorted(f"{a} <-> {b}: {leads[a, b] + leads[b, a]}" for a, b in leads if a < b and (b, a) in leads)
    assert both_ways == []


def in_wing(module: str) -> bool:
    return module == WING or module.startswith(f"{WING}.")


def test_the_core_reads_no_wing():
    """The cache doctor (cache/) is a wing on the core: the outer packages and the wiring may import it, the core
    does not (what the core needs of Qwen's cache is the core's: `cache_usage.py`, `cache_markers.py`,
    `cache_turn.py`, `turn/cache_lifetime.py`), and the base holds no module of it. The wing imports the core only."""
    g = graph()
    assert f"{WING}.diagnosis" in g
    core = [f"{m} -> {d}" for m, deps in g.items() if outer(m) == "core" and m not in WIRING and not in_wing(m)
            for d in deps if in_wing(d)]
    assert sorted(core) == []
    assert sorted(m for m in BASE if in_wing(m)) == []
    assert sorted(f"{m} -> {d}" for m, deps in g.items() if in_wing(m) for d in deps if outer(d) != "core") == []


def test_seams_are_core():
    assert outer(f"{SEAMS}.server_connect") == "core"
    assert all(outer(dep) == "core" for module, deps in graph().items() if module.startswith(SEAMS) for dep in deps)


def test_tenancy_is_core_below_the_entrance_check():
    """The named keys import no outer package (not the entrance check that asks them, not the CLIs that manage them), and
    what imports them is the entrance check, the wiring and the commands: nothing else reaches into tenancy."""
    g = graph()
    assert outer(f"{TENANCY}.team") == "core"
    upward = [f"{m} -> {d}" for m, deps in g.items() if m.startswith(TENANCY) for d in deps if outer(d) != "core"]
    assert upward == []
    users = {m.split(".")[1] for m, deps in g.items() if not m.startswith(TENANCY)
             and any(d.startswith(TENANCY) for d in deps)}
    assert users == {"ingress", "cli", "wiring"}


def test_stores_are_core_below_the_dialects():
    """The stores import no outer package (not the dialects that use them, not the commands, not the wiring), and
    what imports them is the dialects, the commands and the wiring: nothing else reaches into stores/."""
    g = graph()
    assert {f"{STORES}.{m}" for m in ("responses", "responses_pg", "responses_rows", "responses_schema", "stored_chat",
                                      "stored_chat_pg", "batches")} <= set(g)
    assert outer(f"{STORES}.responses") == "core"
    upward = [f"{m} -> {d}" for m, deps in g.items() if m.startswith(STORES) for d in deps
              if outer(d) != "core" or d in WIRING]
    assert upward == []
    users = {m.split(".")[1] for m, deps in g.items() if not m.startswith(STORES)
             and any(d.startswith(STORES) for d in deps)}
    assert users == {"api", "cli", "wiring", "components"}


def test_credentials_are_core_below_the_pool():
    """The credentials import no outer package (not the pool built from them, not the commands that manage them),
    and what imports them is the account pool, the commands and the wiring: no dialect, entrance or observer
    reaches into auth/ (the gateway knows accounts through accounts.Pool)."""
    g = graph()
    assert {f"{AUTH}.{m}" for m in ("account", "key_account", "oauth_account", "web_account", "registry", "state",
                                    "state_pg", "credfile", "oauth", "remote")} <= set(g)
    assert outer(f"{AUTH}.registry") == "core"
    upward = [f"{m} -> {d}" for m, deps in g.items() if m.startswith(AUTH) for d in deps
              if outer(d) != "core" or d in WIRING]
    assert upward == []
    users = {m for m, deps in g.items() if not m.startswith(AUTH) and any(d.startswith(AUTH) for d in deps)}
    # DashScope's provider keeps its accounts' model lists with the credentials' writer (credfile)
    assert {m for m in users if not m.startswith(POOL)} == {"qwen_gateway.components", "qwen_gateway.cli.auth",
                                                            "qwen_gateway.upstream.dashscope.provider",
                                                            "qwen_gateway.cli.auth_keys", "qwen_gateway.cli.auth_web",
                                                            "qwen_gateway.cli.auth_status",
                                                            "qwen_gateway.cli.auth_check",  # the key it checks with
                                                            "qwen_gateway.cli.service_unit",
                                                            "qwen_gateway.cli.admin_creds"}  # written as credentials are


def test_the_pool_is_the_upstreams():
    """The account pool lives in upstream/ and is reached, outside upstream/, only by the wiring that builds it and
    the command that prints its status; the rest of upstream/ (the engine, the retry policy) asks accounts.Pool."""
    g = graph()
    assert {f"{POOL}.{m}" for m in ("pool", "status", "affinity", "affinity_pg", "groups", "windows")} <= set(g)
    assert outer(f"{POOL}.pool") == "upstream"
    users = {m for m, deps in g.items() if not m.startswith(POOL) and any(d.startswith(POOL) for d in deps)}
    assert users == {"qwen_gateway.wiring", "qwen_gateway.cli.auth_status"}


def _keeps_sql(path: Path) -> list[str]:
    """Where a module reaches a database itself: imports sqlite3, or storage/'s connections (sqlite.py, pg.py)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: imports {a.name}" for a in node.names if a.name == "sqlite3"]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = [module] + [f"{module}.{a.name}" for a in node.names]
            found += [f"line {node.lineno}: imports {n}" for n in names
                      if n == "sqlite3" or n.endswith(("storage.sqlite", "storage.pg"))]
    return found


def test_the_dialects_keep_no_sql():
    """api/ keeps translation and checks: no module of it opens or queries a database (sqlite3, storage/sqlite.py,
    storage/pg.py); the stores it reads and writes are stores/'s."""
    inside = {name: _keeps_sql(path) for name, (path, _) in modules().items() if outer(name) == "api"}
    assert {name: found for name, found in inside.items() if found} == {}
    assert _keeps_sql(modules()[f"{STORES}.responses"][0])  # the check sees a store's


# The base every layer builds on: the exchange record and the interfaces it is typed by, and what they need to be
# typed (ids, JSON, accounts and what the core knows of providers, errors, the cache doctor's records on the exchange — a turn's prefix held as the core's
# `cache_turn.Prefix`, not the doctor's own Turn —, the routes' and learned facts' records and the client dialects'
# the routes name, storage's health and files those facts are read from). It imports nothing above it, and no
# module of the cache doctor's wing (cache/).
BASE = {"qwen_gateway", "qwen_gateway.exchange", "qwen_gateway.interfaces", "qwen_gateway.providers", "qwen_gateway.live_stream",
        "qwen_gateway.provider_registry",
        "qwen_gateway.ids", "qwen_gateway.jsonio", "qwen_gateway.retry_reasons", "qwen_gateway.accounts", "qwen_gateway.errors",
        "qwen_gateway.cache_turn",
        "qwen_gateway.models.routes", "qwen_gateway.models.learned", "qwen_gateway.models.catalogue",
        "qwen_gateway.dialects", f"{STORAGE}.health", f"{STORAGE}.sqlite"}


def test_the_exchange_record_imports_only_the_base():
    """No import runs back up from the record every layer shares: exchange.py and interfaces.py import only the
    base, type-only imports included (the turn's live stream is held as `live_stream.LiveStream`, not as the
    turn's own `StreamRewriter`)."""
    g = graph()
    assert BASE <= set(g)
    upward = sorted(f"{m} -> {d}" for m in BASE for d in g[m] if d not in BASE)
    assert upward == []


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
               if not name.startswith(STORAGE) and outer(name) != "cli"}
    assert {name: found for name, found in outside.items() if found} == {}
    assert {name for name, (path, _) in modules().items() if name.startswith(STORAGE) and _opens_a_database(path)} \
        == {f"{STORAGE}.{m}" for m in ("sqlite", "pg", "pg_faults", "pg_follow")}  # pg_follow: the one LISTEN


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
    assert inside == {f"{SEAMS}.{m}" for m in ("hook_dispatch", "server_connect", "http1_heads", "body_limit", "loop_reports",
                                               "shutdown_signals", "message_checks")}


def setup_packages(setup_py: Path = ROOT / "setup.py") -> list[str]:
    """The packages setup.py gives setuptools (a wheel holds them and no other), read by running it with
    setuptools' `setup` stood in for."""
    import runpy

    import setuptools

    given: dict = {}
    real, setuptools.setup = setuptools.setup, lambda **kwargs: given.update(kwargs)
    try:
        runpy.run_path(str(setup_py))
    finally:
        setuptools.setup = real
    return given["packages"]


def test_every_package_is_installed():
    """Every folder of the package is in a wheel (one left out, the editable install used here would not notice):
    setup.py finds them (that pyproject.toml lists none: tests/repo/test_adding_a_provider.py)."""
    packages = {name for name, (_path, is_pkg) in modules().items() if is_pkg}
    assert sorted(setup_packages()) == sorted(packages)


def test_short_modules_and_thin_hooks():
    """No module over 300 lines; the hooks (addon.py) within 250: a merge that grows one is split."""
    lengths = {name: len(path.read_text().splitlines()) for name, (path, _) in modules().items()}
    assert sorted(n for n, lines in lengths.items() if lines > 300) == []
    assert lengths["qwen_gateway.addon"] <= 250


# Modules no test imports, each with why: what runs them for real, or why there is nothing of their own to test.
UNTESTED = {
    "qwen_gateway.api.responses.events": "TypedDicts of the stream's events: types only",
    "qwen_gateway.api.responses.shapes": "TypedDicts of the Response object: types only",
    "qwen_gateway.api.websearch": "through tests/unit/api/test_websearch.py's endpoints",
    "qwen_gateway.auth.endpoints": "the accounts' API bases: constants",
    "qwen_gateway.cli.auth_web": "qwen-auth add-web: tests/unit/cli/test_auth_web.py runs it through the CLI",
    "qwen_gateway.cli.usage_report": "qwen-usage report: tests/e2e/test_e2e_usage_report.py",
    "qwen_gateway.mitmweb": "the package: its modules are tested",
    "qwen_gateway.upstream.deadline": "through tests/unit/upstream/test_deadline.py's client",
}


def _imported_by_tests() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qwen_gateway"):
                found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("qwen_gateway")}
    return found


def test_every_module_is_imported_by_a_test_or_said_why_not():
    """Tests mirror the package (tests/unit/<outer package>/test_<module>.py); a module no test imports is named in
    UNTESTED with what runs it for real."""
    tested = _imported_by_tests()
    modules_ = {name for name, (_, is_pkg) in modules().items() if not is_pkg or name == "qwen_gateway.mitmweb"}
    missing = sorted(m for m in modules_ - tested if m not in UNTESTED)
    assert missing == [], "imported by no test and not in UNTESTED: " + ", ".join(missing)
    assert sorted(m for m in UNTESTED if m in tested or m not in modules()) == []  # stale entries
