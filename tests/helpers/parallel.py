"""Running the suite on several workers (pytest-xdist), e2e tests included: which tests must share a worker.

A test runs alone on any worker unless a fixture it uses says otherwise:
- a fixture of module, class or package scope (a namespace, a gateway set up once for a file): the file's tests
  go to one worker, one after another, so the fixture is set up once, as in one process;
- the Docker daemon (tests/helpers/docker.py): every test that uses it goes to one worker. The daemon and the
  images are the session's, started and built once and stopped at its end; two workers would each start one
  (and build into the same checkout's `build-ca.pem`).

The scopes are computed by each worker from the collected tests' fixtures (what is exact) and written to a file
the controller's scheduler reads: the controller collects nothing. Work units are handed out longest first, so
no long unit starts last: Docker's, then by the seconds their tests took in an earlier run (durations.json: the
tests of a second or more), then the files of shared fixtures by their count of tests, then single tests in
collection order. `QWEN_TEST_TIMELINE=t.json bash scripts/test.sh` then `python tests/helpers/parallel.py t.json`
writes durations.json anew (a test it does not list counts as quick: only the order changes)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from xdist.scheduler.loadscope import LoadScopeScheduling

DOCKER = "docker"
SHARED_SCOPES = ("module", "class", "package")
DURATIONS = Path(__file__).with_name("durations.json")
LISTED_S = 1.0  # the tests durations.json lists: those that took this long or longer (setup, call, teardown)


def scope_of(item) -> str:
    """The unit of work a test belongs to: a name it shares with the tests that must run beside it."""
    if "docker_daemon" in item.fixturenames:
        return DOCKER
    for defs in item._fixtureinfo.name2fixturedefs.values():
        if defs and defs[-1].scope in SHARED_SCOPES:
            return item.nodeid.split("::", 1)[0]
    return item.nodeid


def order(items: list) -> dict[str, str]:
    """Sorts the items as units are handed out (a worker's collection decides the order xdist keeps) and
    returns each one's scope."""
    scopes = {item.nodeid: scope_of(item) for item in items}
    took = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    sizes: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for nodeid, scope in scopes.items():
        sizes[scope] = sizes.get(scope, 0) + 1
        seconds[scope] = seconds.get(scope, 0.0) + took.get(nodeid, 0.0)
    rank = {scope: (scope != DOCKER, -seconds[scope], -size if size > 1 else 0) for scope, size in sizes.items()}
    items.sort(key=lambda item: rank[scopes[item.nodeid]])  # stable: within a unit, the collection's order
    return scopes


def write(path: str, scopes: dict[str, str]) -> None:
    """Every worker writes the same map; each replaces the file whole."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".scopes-")
    with os.fdopen(fd, "w") as f:
        json.dump(scopes, f)
    os.replace(tmp, path)


class SharedFixtureScheduling(LoadScopeScheduling):
    """xdist's loadscope, its scopes those the workers wrote, its queue in the workers' collection order."""

    def __init__(self, config, log=None, scopes_file: str = "") -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False  # the workers' order (`order`) is the queue's
        self._scopes_file = scopes_file
        self._scopes: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._scopes is None:
            self._scopes = json.loads(Path(self._scopes_file).read_text())
        return self._scopes.get(nodeid, nodeid)


def durations(timeline: list[dict]) -> dict[str, float]:
    """A run's timeline (tests/conftest.py, QWEN_TEST_TIMELINE) -> the seconds of each test that took LISTED_S or
    more, its phases added up."""
    took: dict[str, float] = {}
    for phase in timeline:
        took[phase["test"]] = took.get(phase["test"], 0.0) + phase["stop"] - phase["start"]
    return {test: round(s, 1) for test, s in sorted(took.items()) if s >= LISTED_S}


if __name__ == "__main__":
    import sys

    DURATIONS.write_text(json.dumps(durations(json.loads(Path(sys.argv[1]).read_text())), indent=0) + "\n")
