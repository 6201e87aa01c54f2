"""The admin API's requests (docs/admin-api.md): a method, a path, a query and a JSON body in, a status and a JSON
body out. The operations are qwen-keys' and qwen-usage's own (cli/keys_ops.py, cli/admin_views.py): the same
words, the same truth — a change answers 200 once every running gateway applied it, 202 naming those that did
not confirm it (qwen-keys' exit status 3), 409 when another command changed the key meanwhile.

Errors have one shape: {"error": {"type", "message", "field"}} — 400 invalid_request (naming the field), 401
unauthorized (cli/admin_server.py), 404 not_found, 405 method_not_allowed, 409 conflict. Pure of HTTP: the
listener (cli/admin_server.py) authenticates and hands over who asked."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..settings.auth import AuthSettings
from ..tenancy import budgets
from ..tenancy.store import KeyNameError, NoSuchKey
from . import admin_views, auth_check, keys_applied, keys_lock, keys_ops
from .auth_common import EXIT_NO_ACCOUNT, CliError
from .keys_list import rows

NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9@._-]{0,63}\Z")  # qwen-keys' names (cli/keys.py)
MAX_COUNT = 10**12


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


class Refused(Exception):
    """An error answer: its status, type, message and the field it names."""

    def __init__(self, status: int, kind: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.answer = Answer(status, {"error": {"type": kind, "message": message, "field": field}})


def error(status: int, kind: str, message: str, field: str | None = None) -> Answer:
    return Refused(status, kind, message, field).answer


def bad(field: str, message: str) -> Refused:
    return Refused(400, "invalid_request", f"{field}: {message}", field)


class AdminApi:
    """`settings`: this gateway's accounts and state as its options say now (they may change while it runs)."""

    def __init__(self, settings: Callable[[], AuthSettings], checks: auth_check.Checks = lambda provider: None) -> None:
        self.settings = settings
        self.checks = checks  # a provider's name -> its health check (components.drift_check)

    def place(self) -> keys_ops.Place:
        now = self.settings()
        return keys_ops.Place(now.state_dir, now.state_url or None)

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: bytes, who: str) -> Answer:
        try:
            return self._route(method, path.rstrip("/"), query, body, who)
        except Refused as e:
            return e.answer

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, who: str) -> Answer:
        parts = path.split("/")[1:]
        if parts[:2] != ["admin", "v1"] or len(parts) < 3:
            raise Refused(404, "not_found", f"no such admin route: {path or '/'} (docs/admin-api.md)")
        what, rest = parts[2], parts[3:]
        if what == "keys":
            return self._keys(method, rest, body, who)
        if what == "accounts" and len(rest) == 2 and rest[1] == "check":
            return self._check(method, rest[0], body)
        view = admin_views.VIEWS.get(what)
        if view is None or rest:
            raise Refused(404, "not_found", f"no such admin route: {path} (docs/admin-api.md)")
        if method not in view.methods:
            raise Refused(405, "method_not_allowed", f"{path} takes {', '.join(view.methods)}")
        try:
            return Answer(200, view.run(self.settings(), method, {k: v[-1] for k, v in query.items()}, who))
        except admin_views.BadQuery as e:
            raise bad(e.field, str(e)) from None
        except LookupError as e:
            raise Refused(404, "not_found", str(e).strip("'\"")) from None

    def _keys(self, method: str, rest: list[str], body: bytes, who: str) -> Answer:
        if not rest:
            if method == "GET":
                return Answer(200, {"keys": self._rows()})
            if method != "POST":
                raise Refused(405, "method_not_allowed", "/admin/v1/keys takes GET (list) and POST (add)")
            given = _json(body)
            return self._change("add", _name(given.get("name"), "name"), given, who)
        name = _name(rest[0], "name")
        action = rest[1] if len(rest) == 2 else None
        if len(rest) > 2 or action not in (None, "revoke", "rotate"):
            raise Refused(404, "not_found", "no such admin route (docs/admin-api.md)")
        if action:
            if method != "POST":
                raise Refused(405, "method_not_allowed", f"{action} takes POST")
            return self._change(action, name, _json(body, empty_ok=True), who)
        if method == "GET":
            found = [r for r in self._rows() if r["name"] == name]
            if not found:
                raise Refused(404, "not_found", f"no key named {name!r}")
            return Answer(200, found[0])
        if method == "PATCH":
            return self._change("set", name, _json(body), who)
        if method == "DELETE":
            return self._change("delete", name, _json(body, empty_ok=True), who)
        raise Refused(405, "method_not_allowed", f"/admin/v1/keys/{name} takes GET, PATCH (set) and DELETE")

    def _check(self, method: str, name: str, body: bytes) -> Answer:
        """qwen-auth check NAME [--deep] [--model M] [--no-cache-probe]: 200 with the report (`healthy`: no
        difference), 502 when the upstream did not answer (the report so far in `check`)."""
        if method != "POST":
            raise Refused(405, "method_not_allowed", "check takes POST (a deep check spends a little of the key)")
        given = _json(body, empty_ok=True)
        if unknown := sorted(set(given) - {"deep", "model", "cache-probe"}):
            raise bad(unknown[0], "not a field of check (deep, model, cache-probe)")
        for field in ("deep", "cache-probe"):
            if not isinstance(given.get(field, True), bool):
                raise bad(field, "expected true or false")
        if not isinstance(given.get("model", ""), str):
            raise bad("model", "expected a model's name")
        try:
            report = auth_check.run(self.checks, name, self.settings(), deep=given.get("deep", False),
                                    model=given.get("model") or None, cache_probe=given.get("cache-probe", True))
        except auth_check.Unreached as e:
            return Answer(502, {**error(502, "upstream_unreachable", str(e)).body, "check": e.report.as_json()})
        except CliError as e:
            raise Refused(404 if e.code == EXIT_NO_ACCOUNT else 400, "not_found" if e.code == EXIT_NO_ACCOUNT
                          else "invalid_request", str(e), None if e.code == EXIT_NO_ACCOUNT else "name") from None
        return Answer(200, {"healthy": not report.differences, **report.as_json(), "lines": report.lines()})

    def _rows(self) -> list[dict]:
        store = keys_ops.open_store(self.place())
        try:
            return rows(store)
        finally:
            store.close()

    def _change(self, command: str, name: str, given: dict, who: str) -> Answer:
        limits, others = _limits(given, command)
        if command == "set" and not limits and not others:
            raise bad("rpm", "set: give at least one of rpm, tpm, " + ", ".join(b.flag for b in budgets.BUDGETS)
                      + " (0 removes a limit)")
        wait = _wait(given.get("wait", keys_applied.WAIT_S))
        place = self.place()
        store = keys_ops.open_store(place)
        try:
            done = keys_ops.change(store, place, keys_ops.Change(command, name, limits, others, wait), f"admin {who}")
            row = next((r for r in rows(store) if r["name"] == name), None)
        except keys_lock.Conflict as e:
            raise Refused(409, "conflict", f"{e}: nothing changed here; see the key and ask again if it is still "
                          "wanted") from None
        except NoSuchKey as e:
            raise Refused(404, "not_found", str(e)) from None
        except KeyNameError as e:
            raise Refused(409, "conflict", str(e)) from None
        finally:
            store.close()
        return Answer(202 if done.status else 200, {
            "command": command, "name": name, "said": done.said, "applied": done.applied,
            "confirmed": not done.status, "unconfirmed": done.silent, "key": done.key or None, "record": row})


def _json(body: bytes, empty_ok: bool = False) -> dict:
    if not body.strip() and empty_ok:
        return {}
    try:
        given = json.loads(body)
    except ValueError:
        raise bad("body", "not JSON") from None
    if not isinstance(given, dict):
        raise bad("body", "expected a JSON object")
    return given


def _name(value: object, field: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise bad(field, "a key name is letters, digits, '@', '.', '_' or '-' (max 64)")
    return value


def _wait(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise bad("wait", "expected seconds between 0 and 3600")
    return float(value)


def _limits(given: dict, command: str) -> tuple[dict[str, float], dict[str, list[tuple[str, float]]]]:
    """The body's limits, named as qwen-keys' flags (rpm, tpm, daily-tokens, monthly-usd, model-monthly-usd:
    {"MODEL": amount}); every other field refused by its name."""
    known = {"name", "wait"} | ({"rpm", "tpm"} | set(budgets.BY_FLAG) if command in ("add", "set") else set())
    if unknown := sorted(set(given) - known):
        raise bad(unknown[0], f"not a field of {command} (docs/admin-api.md)")
    limits: dict[str, float] = {}
    for field in ("rpm", "tpm"):
        if field in given:
            v = given[field]
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_COUNT:
                raise bad(field, "not a whole number ≥ 0")
            limits[field] = v
    others: dict[str, list[tuple[str, float]]] = {}
    for b in budgets.BUDGETS:
        if b.flag not in given:
            continue
        v = given[b.flag]
        entries = [f"{m}={a}" for m, a in v.items()] if b.per_model and isinstance(v, dict) else [v]
        try:
            parsed = [budgets.parse(b, str(e)) for e in entries if not isinstance(e, (bool, list, dict))]
        except ValueError as e:
            raise bad(b.flag, str(e)) from None
        if len(parsed) != len(entries) or (b.per_model and not isinstance(v, dict)):
            raise bad(b.flag, "expected {\"MODEL\": amount}" if b.per_model else "expected a number ≥ 0")
        if b.column:
            limits[b.column] = int(parsed[0][1]) if b.counts == budgets.TOKENS else parsed[0][1]
        else:
            others[b.flag] = parsed
    return limits, others
