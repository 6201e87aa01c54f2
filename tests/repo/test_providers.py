"""A provider is one package (providers.py, docs/architecture.md): everything of a model server's own — its wire, its
rules and refusals, its cache markers, its batches, its accounts' model lists — lives in its package under upstream/,
and the provider-neutral core (the engine, the retry policy, the pool, the turn, the wiring) names none of them. The
composition names each provider once, by its package's name. Read from the source, not imported."""

from __future__ import annotations

import ast

from repo.test_layers import PROVIDER_LIST, ROOT, graph, imports, listed_providers, modules

UPSTREAM = ROOT / "addons" / "gateway" / "upstream"
COMPONENTS = ROOT / "addons" / "gateway" / "components.py"


def providers() -> list[str]:
    """Every provider package: a package under upstream/ that exports its `PROVIDER` from provider.py."""
    return sorted(f"qwen_gateway.upstream.{p.parent.name}" for p in UPSTREAM.glob("*/provider.py"))


def test_each_provider_is_a_package_with_its_provider():
    assert {"qwen_gateway.upstream.dashscope", "qwen_gateway.upstream.qwenweb"} <= set(providers())


def test_the_core_names_no_provider():
    """Only the composition's list of providers imports a provider package; the engine, the retry policy, the pool, the turn, the wiring,
    every dialect and the core ask the `Upstream` protocol (providers.py)."""
    packages = providers()
    naming = sorted(f"{m} -> {d}" for m, deps in graph().items()
                    if not any(m == p or m.startswith(p + ".") for p in packages)
                    for d in deps if any(d == p or d.startswith(p + ".") for p in packages))
    allowed = {f"qwen_gateway.provider_list -> {p}" for p in packages} | \
        {f"qwen_gateway.provider_list -> {p}.provider" for p in packages}
    assert [n for n in naming if n not in allowed] == []


def test_providers_do_not_import_each_other():
    packages = providers()
    crossings = sorted(f"{m} -> {d}" for m, deps in graph().items() for p in packages if m.startswith(p + ".")
                       for d in deps for q in packages if q != p and (d == q or d.startswith(q + ".")))
    assert crossings == []


def test_the_composition_names_each_provider_by_its_package():
    """Adding a provider is its package, the catalogue's rows and one line in the composition's list: its package's
    name in `PROVIDER_PACKAGES`, whose `provider` module alone the list imports (nothing deeper), each provider once
    (one line each: tests/repo/test_adding_a_provider.py). Neither the list nor components.py imports a provider
    package by an import statement."""
    listed = listed_providers()
    assert sorted(listed) == sorted(f"{p}.provider" for p in providers()) and len(set(listed)) == len(listed)
    stated = {name: imports(name, path, False, modules()) for name, path in (
        ("qwen_gateway.provider_list", PROVIDER_LIST), ("qwen_gateway.components", COMPONENTS))}
    assert {name: sorted(d for d in deps for p in providers() if d == p or d.startswith(p + "."))
            for name, deps in stated.items()} == {"qwen_gateway.provider_list": [], "qwen_gateway.components": []}


def test_the_engine_retry_and_pool_are_provider_neutral():
    names = {n.id for p in (UPSTREAM / "engine.py", UPSTREAM / "retry.py")
             for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Name)}
    assert not names & {"markers", "ranges", "DASHSCOPE", "batch_wire"}


def test_batches_and_live_requests_share_one_body_builder_and_one_retry_loop():
    """The one loop that sends again after a refusal is `RetryPolicy.attempts` (retry.py): the engine's live
    requests and DashScope's batch calls both run through it; a batch line's body is the engine's own `build`."""
    loops = []
    for name, (path, _) in modules().items():
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for loop in (n for n in ast.walk(fn) if isinstance(n, (ast.While, ast.For, ast.AsyncFor))):
                    if any(isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr == "recover"
                           for c in ast.walk(loop)):
                        loops.append(f"{name}.{fn.name}")
    assert loops == ["qwen_gateway.upstream.retry.attempts"]
    calls = "\n".join((UPSTREAM / p).read_text() for p in ("engine.py", "dashscope/batch_calls.py"))
    assert calls.count(".attempts(") == 2
    batch_lines = ROOT / "addons" / "gateway" / "api" / "batches" / "translation.py"
    assert "build(line, cred)" in batch_lines.read_text() and "chat_body(" not in COMPONENTS.read_text()


def test_the_composition_translates_no_batch_line():
    """Issue 80 item 3: a batch's lines are translated by the batches dialect (api/batches/translation.py), its
    answers read by the provider's upstream; the composition only joins them."""
    text = COMPONENTS.read_text()
    assert [call for call in (".to_chat(", ".from_chat(", "upstream.answer(", "().answer(") if call in text] == []


def _provider_names() -> dict[str, str]:
    """Each provider's name (its `PROVIDER`'s, read by import: a name may be a constant of its package) -> the folder
    of its package."""
    import importlib
    return {importlib.import_module(f"{p}.provider").PROVIDER.name: str(UPSTREAM / p.rsplit(".", 1)[1])
            for p in providers()}


def _strings(path) -> list[tuple[int, str]]:
    """(line, value) of every string constant in a module but its docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_a_providers_name_is_said_in_its_package_only():
    """A provider is one package in meaning too: its name is written in its package (accounts.json's `provider`
    values are these strings) and the core learns it from the `Provider` record, through the composition — the
    accounts, the pool, the model map and the commands know a provider by what its record says (its account kinds,
    whether the catalogue describes its models, its plans), never by its name."""
    names = _provider_names()
    assert {"dashscope", "qwenweb", "selfhosted"} <= set(names)
    said = sorted(f"{path.relative_to(ROOT)}:{line}: {value!r}" for _, (path, _) in modules().items()
                  if path not in (COMPONENTS, PROVIDER_LIST) for line, value in _strings(path)
                  if value in names and not str(path).startswith(names[value] + "/"))
    assert said == []


def test_the_names_check_sees_a_name_but_not_a_docstring(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('"""dashscope"""\n\ndef f():\n    """qwenweb"""\n    return "selfhosted"  # dashscope\n')
    assert _strings(module) == [(5, "selfhosted")]
