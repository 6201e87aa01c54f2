"""Each part of an exchange (exchange.py) is written only by its owner (docs/architecture.md#who-writes-what):
other modules ask the owner, a function of the owner's package, rather than write the part's fields. Read from
the source with `ast`, not imported; the parts' fields are read from exchange.py's dataclasses."""

from __future__ import annotations

import ast
import re

from tests.repo.test_layers import ROOT, modules

PKG = "qwen_gateway"
# part (the Exchange's field) -> its dataclass, the modules that may write it (a name owns what is under it),
# and what the others call instead. exchange.py may write every part: the parts' own methods, for what a
# module may not ask the owner (the core never imports an outer package: turn/ cannot call upstream/).
OWNERS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "attempt": ("Attempt", ("upstream",), ("Engine.resume", "Attempt.answered", "Exchange.join")),
    "result": ("Result", ("turn",), ("turn.outcome", "Exchange.fail")),
    "turn": ("TurnState", ("turn",), ("turn.outcome", "Relay.expect", "Relay.forget_turn")),
    "key": ("KeyUse", ("tenancy",), ("Team.bind", "ring.pending", "ring.take_pending")),
    "count": ("PromptCount", ("observe.estimator", "turn.context_guard", "turn.context_overflow"), ()),
}
# Whatever a part's list or dict field is asked to do that changes it.
MUTATORS = {"append", "extend", "insert", "pop", "remove", "clear", "update", "setdefault", "add", "discard",
            "popitem", "sort", "reverse"}
# What the turn alone reads: the live stream's translation (what observers want of it is on `Result`).
PRIVATE_READS = {("turn", "rewriter")}


def fields() -> dict[str, set[str]]:
    """Each part's fields, from its dataclass in exchange.py (annotated names of the class body)."""
    tree = ast.parse((ROOT / "addons" / "gateway" / "exchange.py").read_text())
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    return {part: {s.target.id for s in classes[cls].body if isinstance(s, ast.AnnAssign)
                   and isinstance(s.target, ast.Name)} for part, (cls, _, _) in OWNERS.items()}


def _annotated_part(annotation: ast.expr | None) -> str | None:
    """The part an annotation names (`Attempt`, `"Result | None"`), if any."""
    if annotation is None:
        return None
    text = annotation.value if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str) \
        else ast.unparse(annotation)
    for part, (cls, _, _) in OWNERS.items():
        if re.search(rf"\b{cls}\b", text):
            return part
    return None


def _named_part(name: str) -> str | None:
    """The part an untyped name is taken for: the part's own name, but for the two that name other things as
    often (`key`: a dict's or a key's text; `count`: a number) — those are followed when annotated or assigned."""
    return name if name in OWNERS and name not in ("key", "count") else None


def _value_part(value: ast.expr) -> str | None:
    """The part an assigned value is: `X.part` (`ex.result`), or a new one (`Result(…)`)."""
    if isinstance(value, ast.Attribute) and value.attr in OWNERS:
        return value.attr
    if isinstance(value, ast.Call):
        called = ast.unparse(value.func).rsplit(".", 1)[-1]
        return next((part for part, (cls, _, _) in OWNERS.items() if cls == called), None)
    return None


class _Writes(ast.NodeVisitor):
    """Writes to a part's fields in one module: `X.part.F = …` (augmented, annotated, a subscript of it, a
    tuple's element), `setattr(X.part, "F", …)`, `X.part.F.append(…)` and the other mutators, and the same
    through an alias in the function (`result = ex.result`, a parameter or variable annotated with the part's
    class, untyped, a loop variable named as the part, an attribute of `self` that holds one); and reads of what
    the turn keeps to itself (`X.turn.rewriter`)."""

    def __init__(self, known: dict[str, set[str]]):
        self.known = known
        self.aliases: list[dict[str, str]] = [{}]  # per function: name -> part
        self.held: list[dict[str, str]] = [{}]  # per class: `self.NAME` holding a part (set in any of its methods)
        self.found: list[tuple[str, str, int, str]] = []  # (part, field, line, how)

    def part_of(self, node: ast.expr) -> str | None:
        """The part `node` is: `X.part`, an alias of one, or an attribute of `self` that holds one."""
        if isinstance(node, ast.Attribute) and node.attr in OWNERS:
            return node.attr
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            return self.held[-1].get(node.attr)
        if isinstance(node, ast.Name):
            return self.aliases[-1].get(node.id)
        return None

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        """Attributes of `self` that hold a part, wherever the class sets them (`self._result = ex.result`, an
        annotation `_result: Result`), read before its methods are: a write in an earlier method counts too."""
        held: dict[str, str] = {}
        for statement in node.body:
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                if part := _annotated_part(statement.annotation):
                    held[statement.target.id] = part
        for inner in ast.walk(node):
            pairs = [(t, inner.value) for t in inner.targets] if isinstance(inner, ast.Assign) else \
                [(inner.target, inner.value)] if isinstance(inner, ast.AnnAssign) else []
            for target, value in pairs:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                        and target.value.id == "self" and value is not None:
                    if part := _value_part(value) or (_annotated_part(inner.annotation)
                                                      if isinstance(inner, ast.AnnAssign) else None):
                        held[target.attr] = part
        self.held.append(held)
        self.generic_visit(node)
        self.held.pop()

    def field_of(self, node: ast.expr) -> tuple[str, str] | None:
        """(part, field) when `node` is a part's field (or a subscript of one, or a field of a field's value)."""
        while isinstance(node, ast.Subscript):
            node = node.value
        if isinstance(node, ast.Attribute):
            part = self.part_of(node.value)
            if part and node.attr in self.known[part]:
                return part, node.attr
            return self.field_of(node.value) if isinstance(node.value, (ast.Attribute, ast.Subscript)) else None
        return None

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        scope = dict(self.aliases[-1])
        for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
            part = _annotated_part(arg.annotation) or (_named_part(arg.arg) if arg.annotation is None else None)
            if part:
                scope[arg.arg] = part
            else:
                scope.pop(arg.arg, None)
        self.aliases.append(scope)
        self.generic_visit(node)
        self.aliases.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def replaced(self, target: ast.expr, value: ast.expr, line: int) -> None:
        """`X.part = Part(…)` or `= dataclasses.replace(…)`: the whole part written anew."""
        if isinstance(target, ast.Attribute) and target.attr in OWNERS and isinstance(value, ast.Call):
            called = ast.unparse(value.func).rsplit(".", 1)[-1]
            if called in (OWNERS[target.attr][0], "replace"):
                self.found.append((target.attr, "*", line, "replaces"))

    def wrote(self, target: ast.expr, line: int, how: str) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.wrote(element, line, how)
            return
        if isinstance(target, ast.Starred):
            return self.wrote(target.value, line, how)
        hit = self.field_of(target)
        if hit:
            self.found.append((*hit, line, how))

    def alias(self, target: ast.expr, value: ast.expr | None, annotation: ast.expr | None = None) -> None:
        if not isinstance(target, ast.Name):
            return
        part = (self.part_of(value) if value is not None else None) or _annotated_part(annotation)
        if part:
            self.aliases[-1][target.id] = part
        else:
            self.aliases[-1].pop(target.id, None)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        for target in node.targets:
            self.wrote(target, node.lineno, "assigns")
            self.replaced(target, node.value, node.lineno)
            self.alias(target, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.generic_visit(node)
        self.wrote(node.target, node.lineno, "assigns")
        self.alias(node.target, node.value, node.annotation)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.generic_visit(node)
        self.wrote(node.target, node.lineno, "adds to")

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        """A loop variable named as a part (`for result in results`) is taken as one; any other name bound by
        the loop is no alias any more."""
        for name in [n for n in ast.walk(node.target) if isinstance(n, ast.Name)]:
            if part := _named_part(name.id):
                self.aliases[-1][name.id] = part
            else:
                self.aliases[-1].pop(name.id, None)
        self.generic_visit(node)

    visit_AsyncFor = visit_For  # type: ignore[assignment]

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.generic_visit(node)
        self.alias(node.target, node.value)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self.wrote(target, node.lineno, "deletes")

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("setattr", "delattr") and len(node.args) >= 2:
            part = self.part_of(node.args[0])
            name = node.args[1].value if isinstance(node.args[1], ast.Constant) else "?"
            if part:
                self.found.append((part, str(name), node.lineno, func.id))
        elif isinstance(func, ast.Attribute) and func.attr in MUTATORS:
            hit = self.field_of(func.value)
            if hit:
                self.found.append((*hit, node.lineno, func.attr))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.generic_visit(node)
        part = self.part_of(node.value)
        if part and (part, node.attr) in PRIVATE_READS and isinstance(node.ctx, ast.Load):
            self.found.append((part, node.attr, node.lineno, "reads"))


def owns(module: str, part: str) -> bool:
    if module == f"{PKG}.exchange":
        return True
    return any(module == f"{PKG}.{owner}" or module.startswith(f"{PKG}.{owner}.") for owner in OWNERS[part][1])


def writes() -> dict[str, list[str]]:
    """Module -> its writes to exchange parts it does not own (and reads of what the turn keeps to itself)."""
    known = fields()
    out: dict[str, list[str]] = {}
    for name, (path, _) in sorted(modules().items()):
        visitor = _Writes(known)
        visitor.visit(ast.parse(path.read_text()))
        outside = [f"line {line}: {how} {part}.{field}" for part, field, line, how in visitor.found
                   if not owns(name, part)]
        if outside:
            out[name] = outside
    return out


def _found_in(source: str) -> list[tuple[str, str, str]]:
    visitor = _Writes(fields())
    visitor.visit(ast.parse(source))
    return [(part, field, how) for part, field, _, how in visitor.found]


def test_the_check_sees_each_form_of_write():
    source = '''
def f(ex, other, attempt: Attempt, kept: "Result | None"):
    ex.result.status = 502
    ex.result.cost += 1
    ex.attempt.tried.append("a")
    ex.attempt.retries.clear()
    ex.attempt.headers["x"] = "y"
    setattr(ex.key, "name", "k")
    ex.result.status, ex.count.tokens = 1, 2
    result = ex.result
    result.usage = {}
    attempt.model = "m"
    kept.error = None
    other.status = 1  # not a part
    other.result.nonfield = 1  # not a field of the part
    ex.result.cost_unit == "USD"  # a read
    if (turn := ex.turn) is not None:
        turn.kept = True
    print(ex.turn.rewriter)
    ex.attempt = dataclasses.replace(other.attempt)
    ex.count = PromptCount()
    now.turn = kept.count  # not a part: a number

def g(result, key):
    result.status = 1  # untyped, named as the part
    key.name = "k"  # `key`: too often something else to be taken untyped
    for attempt in attempts:
        attempt.model = "m"

class Holder:
    counted: PromptCount
    def __init__(self, ex):
        self._result = ex.result
    def later(self):
        self._result.error = None
        self.counted.tokens = 1
        self.other.status = 1  # not a part
'''
    assert _found_in(source) == [
        ("result", "status", "assigns"), ("result", "cost", "adds to"), ("attempt", "tried", "append"),
        ("attempt", "retries", "clear"), ("attempt", "headers", "assigns"), ("key", "name", "setattr"),
        ("result", "status", "assigns"), ("count", "tokens", "assigns"), ("result", "usage", "assigns"),
        ("attempt", "model", "assigns"), ("result", "error", "assigns"), ("turn", "kept", "assigns"),
        ("turn", "rewriter", "reads"), ("attempt", "*", "replaces"), ("count", "*", "replaces"),
        ("result", "status", "assigns"), ("attempt", "model", "assigns"), ("result", "error", "assigns"),
        ("count", "tokens", "assigns")]


def test_every_part_has_an_owner_and_the_owners_exist():
    known = modules()
    assert set(OWNERS) == set(fields()) and all(fields().values())
    for part, (_, owners, _) in OWNERS.items():
        for owner in owners:
            assert f"{PKG}.{owner}" in known, f"{part}: no module {owner}"


def test_each_part_is_written_only_by_its_owner():
    assert writes() == {}


def test_the_docs_table_is_the_owners_table():
    """docs/architecture.md's "Who writes what": one row per part, its owners and what the others call."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("### Who writes what", 1)[1].split("\n#", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| `")]
    table = {re.findall(r"`ex\.(\w+)`", part)[0]: (re.findall(r"`(\w+)`", part)[0],
                                                   tuple(re.findall(r"`([\w./]+)`", owners)),
                                                   tuple(re.findall(r"`([\w.]+)`", entries)))
             for part, owners, entries in rows}
    assert table == {part: (cls, tuple(_as_path(owner) for owner in owners), entries)
                     for part, (cls, owners, entries) in OWNERS.items()}


def _as_path(owner: str) -> str:
    path = owner.replace(".", "/")
    return f"{path}/" if (ROOT / "addons" / "gateway" / path).is_dir() else f"{path}.py"


# The transports: they move bytes and report facts (turn/__init__.py's `Transport`); the turn writes the outcome.
TRANSPORTS = {f"{PKG}.turn.{m}" for m in ("relay", "flow_answer", "socket", "socket_turns", "socket_lanes",
                                          "socket_flow", "socket_budget", "background")}
# Who may tell the turn an outcome through its setters besides the turn itself: the cache doctor its verdict (an
# observer's judgement, written before the record is: observe/cache_doctor.py).
TOLD_BY = {"cache_judged": {f"{PKG}.observe.cache_doctor"}}


def result_setters() -> set[str]:
    """The functions of turn/outcome.py that write the outcome (`X.result.F = …`)."""
    tree = ast.parse((ROOT / "addons" / "gateway" / "turn" / "outcome.py").read_text())
    return {fn.name for fn in tree.body if isinstance(fn, ast.FunctionDef)
            for node in ast.walk(fn) if isinstance(node, (ast.Assign, ast.AugAssign))
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute)
            and target.value.attr == "result"}


def test_no_transport_or_endpoint_writes_an_outcome():
    """An endpoint returns what it read (`Endpoint.from_own`, `fetch`: the answer and its usage); a transport
    reports what happened (`Transport.cancelled`: the client left or the run was cancelled; `refuse`: the error went
    out as the dialect's events); the turn alone turns them into 499, 200 or a broken stream."""
    setters = result_setters()
    assert {"stream_broken", "client_left", "ended", "cache_judged"} <= setters
    calls = []
    for name, (path, _) in modules().items():
        if name == f"{PKG}.turn.outcome":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in setters \
                    and ast.unparse(node.func.value).endswith("outcome"):
                calls.append((name, node.func.attr))
    turn_itself = {n for n, _ in calls if n.startswith(f"{PKG}.turn.") and n not in TRANSPORTS}
    wrong = sorted(f"{n} -> {fn}" for n, fn in calls if n not in turn_itself and n not in TOLD_BY.get(fn, ()))
    assert wrong == []
    assert turn_itself  # the check sees the turn's own calls


def test_whether_a_request_streams_is_the_turns_alone():
    """`ex.stream` is written once, by the turn when the request arrives (`Turns.received`), from the endpoint's
    `streams` (an embeddings or compaction answer never streams) or the body's `stream: true`."""
    writes = sorted(f"{name}:{node.lineno}" for name, (path, _) in modules().items()
                    for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign))
                    for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    if isinstance(target, ast.Attribute) and target.attr == "stream"
                    and ast.unparse(target.value) in ("ex", "line", "exchange", "self.ex", "turn"))
    assert [w.split(":")[0] for w in writes] == [f"{PKG}.turn.runner"], writes


def test_continuation_installs_nothing_into_another_object():
    """The break, the decision, the request going on and the splice are turn/continuation.py's: it writes no
    attribute of the rewriter or of anything it is handed (no callback installed, no source swapped from outside);
    the rewriter holds a break because it was made to (`holds_breaks`) and reads through what it is given."""
    tree = ast.parse((ROOT / "addons" / "gateway" / "turn" / "continuation.py").read_text())
    writes = sorted(f"{ast.unparse(t)}:{node.lineno}" for node in ast.walk(tree)
                    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign))
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    for t in (t.elts if isinstance(t, ast.Tuple) else [t])
                    if isinstance(t, ast.Attribute) and ast.unparse(t.value) != "self")
    assert writes == []
