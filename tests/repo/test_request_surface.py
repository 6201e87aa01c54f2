"""The request surface (request_surface.py) against the request schemas the gateway checks: every property of
chat's, legacy completions', Responses' (api/request_schemas.json) and Messages' (api/messages/shape.FIELDS) has a
row, a row names no property its dialect's schema lacks, every function a row names exists, and every gate is a
column of the catalogue. (Embeddings have no chat form: their body goes to Qwen as it is.)"""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from qwen_gateway import request_surface as rs
from qwen_gateway.api.messages import shape
from qwen_gateway.models.catalogue import Model

SCHEMAS = json.loads((Path(rs.__file__).parent / "api" / "request_schemas.json").read_text())["components"]["schemas"]
BODIES = {"chat": "CreateChatCompletionRequest", "completions": "CreateCompletionRequest",
          "responses": "CreateResponseBody"}
PROVIDERS = ("dashscope", "selfhosted", "qwenweb")
ROOT = Path(__file__).resolve().parents[2]


def _properties(node: dict, seen: frozenset = frozenset()) -> set[str]:
    """The top-level properties an object schema allows: its own, its allOf parts' and object options', $refs
    followed."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return set() if name in seen else _properties(SCHEMAS[name], seen | {name})
    out = set(node.get("properties") or ())
    for part in [*(node.get("allOf") or ()), *(node.get("anyOf") or ()), *(node.get("oneOf") or ())]:
        if isinstance(part, dict):
            out |= _properties(part, seen)
    return out


def schema_properties(dialect: str) -> set[str]:
    return set(shape.FIELDS) if dialect == "messages" else _properties(SCHEMAS[BODIES[dialect]])


def named(dialect: str) -> set[str]:
    """The dialect's properties the table names: its rows' columns and its Kept rows."""
    out = {k.name for k in rs.KEPT if k.dialect == dialect}
    for f in rs.FIELDS:
        if dialect == "chat":
            out |= set() if f.extra else {f.chat}
            continue
        spelled = getattr(f, dialect)
        out |= set(spelled.names) if isinstance(spelled, rs.Hand) else {spelled.split(".")[0]} if spelled else set()
    return out


@pytest.mark.parametrize("dialect", rs.DIALECTS)
def test_every_property_of_the_dialects_schema_has_a_row(dialect):
    missing = schema_properties(dialect) - named(dialect)
    assert not missing, f"{dialect}: no row in request_surface.py for {sorted(missing)}"


@pytest.mark.parametrize("dialect", rs.DIALECTS)
def test_no_row_names_a_property_its_schema_lacks(dialect):
    unknown = named(dialect) - schema_properties(dialect)
    assert not unknown, f"{dialect}: request_surface.py names {sorted(unknown)}, which its schema does not have"


def test_qwens_own_fields_are_marked_extra_and_only_they():
    chat = schema_properties("chat")
    assert not [f.chat for f in rs.FIELDS if f.extra and f.chat in chat]
    assert len({f.chat for f in rs.FIELDS}) == len(rs.FIELDS)  # one row per chat-form field
    assert len({(k.dialect, k.name) for k in rs.KEPT}) == len(rs.KEPT)


def _resolves(roots: tuple[str, ...], dotted: str) -> bool:
    module, _, attr = dotted.partition(".")
    for root in roots:
        try:
            found: object = importlib.import_module(f"{root}.{module}")
        except ModuleNotFoundError:
            continue
        for part in attr.split("."):
            found = getattr(found, part, None)
        if callable(found):
            return True
    return False


def _dialect_roots(dialect: str) -> tuple[str, ...]:
    return (f"qwen_gateway.api.{dialect}", "qwen_gateway.api")


def test_every_function_a_row_names_exists():
    absent = []
    for f in rs.FIELDS:
        for provider in PROVIDERS:
            fate = getattr(f, provider)
            if fate.kind in ("rule", "read") and not _resolves((f"qwen_gateway.upstream.{provider}",), fate.what):
                absent.append(f"{f.chat}: {provider} {fate.what}")
        for dialect in rs.DIALECTS[1:]:
            spelled = getattr(f, dialect)
            if isinstance(spelled, rs.Hand) and not _resolves(_dialect_roots(dialect), spelled.fn):
                absent.append(f"{f.chat}: {dialect} {spelled.fn}")
    for k in rs.KEPT:
        if k.fate != rs.IGNORED and not _resolves(_dialect_roots(k.dialect), k.what):
            absent.append(f"{k.dialect} {k.name}: {k.what}")
    assert not absent


def test_a_provider_column_holds_only_its_fates():
    kinds = {"send", "rename", "rule", "read", "own", "drop"}
    assert {getattr(f, p).kind for f in rs.FIELDS for p in PROVIDERS} <= kinds
    assert all(getattr(f, p).what for f in rs.FIELDS for p in PROVIDERS if getattr(f, p).kind == "drop")
    assert {k.fate for k in rs.KEPT} <= {rs.HONOURED, rs.REFUSED, rs.IGNORED, rs.HANDLED}


def test_a_provider_with_no_column_has_each_field_as_an_openai_compatible_server_takes_it():
    """request_surface.DEFAULT_COLUMN, a new host's (its package and one line in provider_list.py): every field of
    OpenAI's chat schema sent as it is, but the gateway's own (kept from every provider: store, metadata,
    service_tier); Qwen's own fields dropped, noted. The three providers' columns stay their own."""
    column = rs.fates("a-host-with-no-column")
    assert column == rs.DEFAULT_COLUMN and list(column) == [f.chat for f in rs.FIELDS]
    kept = {name for name, fate in column.items() if fate == rs.OWN}
    assert kept == {"store", "metadata", "service_tier"}
    assert {f.chat for f in rs.FIELDS if all(getattr(f, p) == rs.OWN for p in PROVIDERS)} == kept
    assert {name for name, fate in column.items() if fate == rs.SEND} == \
        {f.chat for f in rs.FIELDS if not f.extra} - kept
    assert {name for name, fate in column.items() if fate == rs.NOT_OPENAI} == {f.chat for f in rs.FIELDS if f.extra}
    assert rs.COLUMNS == set(PROVIDERS)
    assert all(rs.fates(p) == {f.chat: getattr(f, p) for f in rs.FIELDS} for p in PROVIDERS)
    assert rs.fates("dashscope")["enable_search"] == rs.SEND and rs.fates("selfhosted")["store"] == rs.OWN


def test_a_gate_is_a_column_of_the_catalogue():
    columns = {f.name for f in dataclasses.fields(Model)}
    assert {f.gate for f in rs.FIELDS if f.gate} <= columns


def test_the_docs_request_surface_tables_are_generated_from_the_table():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "request_surface_doc.py")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def _fates_calls() -> list[tuple[str, object]]:
    """(the provider package a product module is in, or "", the argument of each `fates(...)` call it makes)."""
    import ast

    calls = []
    for path in sorted((ROOT / "addons" / "gateway").rglob("*.py")):
        parts = path.relative_to(ROOT / "addons" / "gateway").parts
        package = parts[1] if parts[0] == "upstream" and len(parts) > 2 else ""
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "fates" \
                    and node.args:
                arg = node.args[0]
                calls.append((package, arg.value if isinstance(arg, ast.Constant) else ast.dump(arg)))
    return calls


def test_a_provider_reads_its_own_column_by_its_own_name():
    """`fates` gives any name it has no column for the default one: a provider that misspelled its own name would
    get the default silently. So each call in the product names the package it is made in."""
    calls = _fates_calls()
    assert {package for package, _ in calls} >= set(PROVIDERS)
    assert [(package, name) for package, name in calls if package != name] == []
