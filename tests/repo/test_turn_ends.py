"""Every exchange ends in one place (docs/architecture.md#how-a-turn-ends): the record on the flow and the
observers told by `turn/settlement.py`'s `Settlement.finish` alone, reached from mitmproxy's hooks (HTTP) or from
the turn (WebSocket, background); a batch's bill, which has no flow, told through `Observers.bill`, handed to
the batch bills by the wiring alone. Read from the source with `ast`, not imported."""

from __future__ import annotations

import ast

from tests.repo.test_layers import modules

# what ends an exchange -> the modules allowed to do it
ENDS = {
    "the record written on the flow (flow.metadata['qwen'] = …)": {
        "qwen_gateway.turn.settlement",
        "qwen_gateway.dispatch",  # the same record again once a late prompt estimate came (Observers._finish_later)
    },
    "the observers told (….observers.finished(…))": {"qwen_gateway.turn.settlement"},
    "a batch's bill told (the observers' `bill`, handed to the batch bills)": {"qwen_gateway.wiring"},
    "Settlement.finish called": {"qwen_gateway.turn.settlement", "qwen_gateway.turn.runner"},
    "Settlement.answered / Settlement.broken called (mitmproxy's response and error hooks)": {"qwen_gateway.addon"},
}


def _name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


def found(tree: ast.AST) -> set[str]:
    kinds = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Attribute) and \
                        t.value.attr == "metadata" and isinstance(t.slice, ast.Constant) and t.slice.value == "qwen":
                    kinds.add("the record written on the flow (flow.metadata['qwen'] = …)")
        if isinstance(node, ast.Attribute) and node.attr == "bill" and _name(node.value) == "observers":
            kinds.add("a batch's bill told (the observers' `bill`, handed to the batch bills)")
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner, method = _name(node.func.value), node.func.attr
        if method == "finished" and owner == "observers":
            kinds.add("the observers told (….observers.finished(…))")
        elif method == "finish" and owner in ("settlement", "self") and len(node.args) == 2:
            kinds.add("Settlement.finish called")
        elif method in ("answered", "broken") and owner in ("settlement", "settle"):
            kinds.add("Settlement.answered / Settlement.broken called (mitmproxy's response and error hooks)")
    return kinds


def test_each_exchange_ends_in_one_place():
    where: dict[str, set[str]] = {kind: set() for kind in ENDS}
    for name, (path, _) in modules().items():
        for kind in found(ast.parse(path.read_text())):
            where[kind].add(name)
    strays = {kind: sorted(where[kind] - allowed) for kind, allowed in ENDS.items() if where[kind] - allowed}
    assert strays == {}, strays
    assert all(where[kind] for kind in ENDS), where  # each is found somewhere: the check reads what it claims


def test_the_check_sees_each_way_of_ending():
    sample = ast.parse("flow.metadata['qwen'] = ex.to_meta()\nself.observers.finished(ex, flow)\n"
                       "bills(self.observers.bill)\nself.settlement.finish(flow, ex)\nself.settle.broken(flow, ex)\n")
    assert found(sample) == set(ENDS)
    assert found(ast.parse("flow.metadata['other'] = 1\nself.observers.notify('x', ex, flow)\nrw.finish()\n")) == set()
