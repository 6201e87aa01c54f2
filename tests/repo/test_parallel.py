"""tests/helpers/parallel.py: which tests share a worker, and the order work units are handed out in — longest
first, by what an earlier run's timeline says they took (durations.json), so that no long test starts last."""

from __future__ import annotations

import json
from types import SimpleNamespace

from helpers import parallel


def item(nodeid: str, scope: str = "function", docker: bool = False) -> SimpleNamespace:
    fixtures = {"fx": [SimpleNamespace(scope=scope)]}
    return SimpleNamespace(nodeid=nodeid, fixturenames=["docker_daemon"] if docker else ["fx"],
                           _fixtureinfo=SimpleNamespace(name2fixturedefs=fixtures))


def test_units_are_handed_out_docker_first_then_by_the_seconds_they_took(tmp_path, monkeypatch):
    durations = tmp_path / "durations.json"
    durations.write_text(json.dumps({"e/test_slow.py::test_long": 40.0, "e/test_mod.py::test_b": 12.0,
                                     "e/test_big.py::test_1": 1.5}))
    monkeypatch.setattr(parallel, "DURATIONS", durations)
    items = [item("e/test_a.py::test_quick"), item("e/test_big.py::test_1", "module"),
             item("e/test_big.py::test_2", "module"), item("e/test_big.py::test_3", "module"),
             item("e/test_mod.py::test_a", "module"), item("e/test_mod.py::test_b", "module"),
             item("e/test_slow.py::test_long"), item("e/test_docker.py::test_image", docker=True)]
    scopes = parallel.order(items)
    assert [i.nodeid for i in items] == [
        "e/test_docker.py::test_image", "e/test_slow.py::test_long", "e/test_mod.py::test_a", "e/test_mod.py::test_b",
        "e/test_big.py::test_1", "e/test_big.py::test_2", "e/test_big.py::test_3", "e/test_a.py::test_quick"]
    assert scopes["e/test_mod.py::test_b"] == "e/test_mod.py" and scopes["e/test_slow.py::test_long"] == \
        "e/test_slow.py::test_long" and scopes["e/test_docker.py::test_image"] == parallel.DOCKER


def test_without_durations_the_files_of_shared_fixtures_go_first_by_their_count(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "DURATIONS", tmp_path / "none.json")
    items = [item("e/test_a.py::test_1"), item("e/test_m.py::test_1", "module"), item("e/test_m.py::test_2", "module")]
    parallel.order(items)
    assert [i.nodeid for i in items] == ["e/test_m.py::test_1", "e/test_m.py::test_2", "e/test_a.py::test_1"]


def test_a_timeline_gives_the_durations_of_the_tests_of_a_second_or_more():
    timeline = [{"test": "t::a", "when": w, "worker": "gw0", "start": s, "stop": s + d}
                for w, s, d in (("setup", 0.0, 0.6), ("call", 1.0, 0.5), ("teardown", 2.0, 0.01))]
    timeline.append({"test": "t::b", "when": "call", "worker": "gw1", "start": 0.0, "stop": 0.4})
    assert parallel.durations(timeline) == {"t::a": 1.1}
