"""A gateway's accounts.json in the tests is written by one builder (tests/helpers/home.py), so that a change of the
registry's shape is one change: no other test file writes it by hand. Reading it back is fine. Read from the source."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
BUILDER = TESTS / "helpers" / "home.py"
# The unit tests of the registry write its file by hand on purpose (broken, odd or old ones); the deploy manifest's
# test writes the ConfigMap's own text, which is what it checks.
NOT_HOMES = (TESTS / "unit", TESTS / "emulation", TESTS / "repo" / "test_deploy_manifest.py")
WRITES = {"write_text", "write_bytes"}
COPIES = {"copy", "copy2", "copyfile"}


def _names_accounts(node: ast.AST, paths: set[str]) -> bool:
    """Whether an expression is a path to accounts.json: the name spelled in it, or a variable that holds one."""
    return any((isinstance(n, ast.Constant) and n.value == "accounts.json") or (isinstance(n, ast.Name) and n.id in paths)
               for n in ast.walk(node))


def hand_writes(source: str) -> list[int]:
    """Lines that write accounts.json: `.write_text`/`.write_bytes` on a path to it, `open(it, "w"...)`, or a
    `shutil.copy` onto it."""
    tree = ast.parse(source)
    paths = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) and _names_accounts(n.value, set())
             for t in n.targets if isinstance(t, ast.Name)}
    lines = []
    for n in ast.walk(tree):
        if not isinstance(n, ast.Call):
            continue
        f = n.func
        if isinstance(f, ast.Attribute) and f.attr in WRITES and _names_accounts(f.value, paths):
            lines.append(n.lineno)
        elif isinstance(f, ast.Attribute) and f.attr in COPIES and len(n.args) >= 2 and _names_accounts(n.args[1], paths):
            lines.append(n.lineno)
        elif isinstance(f, ast.Name) and f.id == "open" and n.args and _names_accounts(n.args[0], paths):
            mode = n.args[1] if len(n.args) > 1 else next((k.value for k in n.keywords if k.arg == "mode"), None)
            if isinstance(mode, ast.Constant) and any(c in str(mode.value) for c in "wax+"):
                lines.append(n.lineno)
    return sorted(lines)


def test_the_detector_sees_each_way_of_writing_by_hand():
    assert hand_writes('(state / "accounts.json").write_text("{}")') == [1]
    assert hand_writes('p = state / "accounts.json"\nx = 1\np.write_text("{}")') == [3]
    assert hand_writes('shutil.copy(a / "accounts.json", b / "accounts.json")') == [1]
    assert hand_writes('with open(s / "accounts.json", "w") as f: pass') == [1]
    assert hand_writes('json.loads((s / "accounts.json").read_text())\nopen(s / "accounts.json")') == []


def test_no_test_writes_a_gateways_accounts_json_by_hand():
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if path == BUILDER or any(path == x or x in path.parents for x in NOT_HOMES):
            continue
        lines = hand_writes(path.read_text(encoding="utf-8"))
        if lines:
            found.append(f"{path.relative_to(ROOT)}:{','.join(map(str, lines))}")
    assert not found, ("accounts.json written by hand (use tests/helpers/home.py: Home, change_accounts):\n"
                       + "\n".join(found))
