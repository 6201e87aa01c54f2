"""Fixtures: a real Qwen emulator process and real mitmdump/mitmweb gateway processes (tests/helpers/procs.py)."""

from __future__ import annotations

import gc
import json
import os
import sys

from pathlib import Path

import pytest

from helpers import forkclient, tls_contexts
from helpers.home import CODING_PLAN, Home
from helpers.procs import STARTS, Emulator, Gateway, start_emulator, write_creds

# A machine may set PYTHONDONTWRITEBYTECODE (this one does): then every run compiles the package again and
# pytest rewrites the asserts of every test module again (~1.3 s of a unit run). The caches are
# __pycache__ folders, ignored by git; the tests write them whatever the environment says.
sys.dont_write_bytecode = False
tls_contexts.install()  # httpx's TLS context made once per kind, not once per client (46 ms of CPU each)
# The gateways, the emulator and the fork server write their logs to files the tests read while they run: a
# file is block-buffered (8 KiB) unless PYTHONUNBUFFERED says otherwise, and a machine that does not set it
# (this one does) would show a test an empty log. Set here, before any of them starts, so all agree.
os.environ["PYTHONUNBUFFERED"] = "1"

# Collecting imports mitmproxy, hypothesis, openai... and builds every test item: some million objects
# that live until the end. Left in the collector's care, every full collection walks them all again (and
# hypothesis's tests trigger many). So no collections while collecting, then those objects are moved out
# of the collector's reach (gc.freeze). Objects the tests create are collected as usual.
gc.disable()


def pytest_collection_finish(session) -> None:
    gc.freeze()
    gc.enable()
    if any(item.get_closest_marker("e2e") for item in session.items):
        forkclient.server()  # its imports (~1 s) run while the first fixtures start the emulator


def pytest_sessionstart(session) -> None:
    if session.config.pluginmanager.has_plugin("dsession"):  # xdist's controller: the workers collect, not it
        gc.enable()


E2E_WORKERS = 4  # QWEN_TEST_WORKERS: an e2e test mostly waits (on its gateway, client, emulator): one process
# kept the 2-core machine's load near 0.5; four keep both cores busy


def pytest_xdist_auto_num_workers(config) -> int | None:
    """`-n auto` (addopts): a worker per core for the unit tests (`-m "not e2e"`), E2E_WORKERS when e2e tests may
    run; none with `-s` (workers' output is not shown). Which tests share a worker: tests/helpers/parallel.py."""
    from _pytest.mark.expression import Expression

    if config.option.capture == "no":
        return 0
    markexpr = config.option.markexpr
    expr = Expression.compile(markexpr) if markexpr else None  # an e2e test's other marks: all absent, or all present
    if expr is None or any(expr.evaluate(lambda name, others=others, **kw: name == "e2e" or others)
                           for others in (False, True)):
        return int(os.environ.get("QWEN_TEST_WORKERS", E2E_WORKERS))
    return None  # xdist's own answer: the cores


def _scopes_file(config) -> str:
    """xdist's controller: where the workers write their tests' scopes (tests/helpers/parallel.py)."""
    if not hasattr(config, "_qwen_scopes"):
        import tempfile

        config._qwen_scopes = Path(tempfile.mkdtemp(prefix="qwen-test-scopes-")) / "scopes.json"
    return str(config._qwen_scopes)


def pytest_unconfigure(config) -> None:
    if scopes := getattr(config, "_qwen_scopes", None):
        import shutil

        shutil.rmtree(scopes.parent, ignore_errors=True)


def pytest_configure_node(node) -> None:  # xdist's controller, a worker about to start
    node.workerinput["qwen_scopes"] = _scopes_file(node.config)


def pytest_xdist_make_scheduler(config, log):
    if config.option.dist != "load":  # a --dist asked for on the command line is xdist's
        return None
    from helpers.parallel import SharedFixtureScheduling

    return SharedFixtureScheduling(config, log, scopes_file=_scopes_file(config))


def pytest_collection_modifyitems(config, items) -> None:
    if path := getattr(config, "workerinput", {}).get("qwen_scopes"):
        from helpers import parallel

        parallel.write(path, parallel.order(items))


def _log_programs(path: str) -> None:
    """QWEN_TEST_PROCS=<file>: every program the test process starts, with the test and how long it lived (until
    waited for), written as JSON at the end: where an e2e run's time goes beside the gateways."""
    import subprocess
    import time

    programs: list[dict] = []
    init, handle = subprocess.Popen.__init__, subprocess.Popen._handle_exitstatus  # type: ignore[attr-defined]

    def started(self, args, *a, **kw):
        self._began = time.monotonic()
        words = [args] if isinstance(args, (str, os.PathLike)) else list(args)
        named = [Path(str(w)).name for w in words[:3]]  # an interpreter with its script
        self._record = {"program": " ".join(named[:2] if named[0].startswith("python") else named[:1]), "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]}
        programs.append(self._record)
        init(self, args, *a, **kw)

    def ended(self, *a, **kw):
        handle(self, *a, **kw)
        if hasattr(self, "_record"):
            self._record.setdefault("seconds", round(time.monotonic() - self._began, 3))

    subprocess.Popen.__init__, subprocess.Popen._handle_exitstatus = started, ended  # type: ignore[method-assign,attr-defined]
    import atexit

    atexit.register(lambda: Path(path).write_text(json.dumps(programs, indent=0)))


if os.environ.get("QWEN_TEST_PROCS"):
    _log_programs(os.environ["QWEN_TEST_PROCS"])


# QWEN_TEST_TIMELINE=<file>: each test's phases (setup, call, teardown) with the worker that ran them, when they
# began and ended, written as JSON at the end by xdist's controller: where a parallel run's tail goes, and the
# durations tests/helpers/parallel.py hands the longest units out first by (`python tests/helpers/parallel.py`).
TIMELINE: list[dict] = []


# QWEN_TEST_CPU=<file>: each test's CPU, its whole process tree's, from a cgroup per worker (tests/helpers/cpucount.py)
CPU = None  # this process's cpucount.CpuCount, when it runs tests and could join its cgroup


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    """A worker (or -n 0's one process) joins its cgroup before it starts anything: the fork server, the session's
    emulator and each gateway they fork are then its own, counted with the test that uses them."""
    global CPU
    runs_tests = hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None)
    if os.environ.get("QWEN_TEST_CPU") and runs_tests:
        from helpers import cpucount
        CPU = cpucount.start(os.environ["QWEN_TEST_CPU"], getattr(config, "workerinput", {}).get("workerid", "main"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if CPU is None:
        yield
        return
    CPU.begin()
    yield
    CPU.end(item.nodeid)


def pytest_runtest_logreport(report) -> None:
    if os.environ.get("QWEN_TEST_TIMELINE") and hasattr(report, "node"):  # the controller, a worker's report
        TIMELINE.append({"test": report.nodeid, "when": report.when, "worker": report.node.gateway.id,
                         "start": report.start, "stop": report.stop})


def pytest_sessionfinish(session) -> None:
    forkclient.stop()  # after the session's fixtures: gateways of session scope are stopped by then
    if hasattr(session.config, "workeroutput"):  # an xdist worker: its gateway starts to the controller's summary
        session.config.workeroutput["qwen_starts"] = json.dumps(STARTS)
    elif TIMELINE:
        Path(os.environ["QWEN_TEST_TIMELINE"]).write_text(json.dumps(TIMELINE))


def pytest_testnodedown(node, error) -> None:  # xdist's controller
    STARTS.extend(json.loads(getattr(node, "workeroutput", {}).get("qwen_starts", "[]")))


def pytest_terminal_summary(terminalreporter) -> None:
    """How many gateways the session started and how long it waited for them (the e2e suite's main cost)."""
    if STARTS:
        seconds = sum(s["seconds"] for s in STARTS)
        forked = sum(s["forked"] for s in STARTS)
        stops = sum(s.get("stop_seconds", 0) for s in STARTS)
        terminalreporter.write_line(f"gateway starts: {len(STARTS)} ({forked} forked by the fork server), "
                                    f"{seconds:.1f} s until they listened, {stops:.1f} s stopping them")
        killed = sorted({s["test"] for s in STARTS if s.get("killed")})
        if killed:  # each cost 10 s: a gateway that does not end on SIGTERM is a bug (of the test or the gateway)
            terminalreporter.write_line("gateways killed after 10 s of SIGTERM: " + ", ".join(killed))
    if out := os.environ.get("QWEN_TEST_STARTS"):
        Path(out).write_text(json.dumps(STARTS, indent=1))


@pytest.fixture(autouse=True)
def _storage_healths(monkeypatch):
    """Each test starts with no storage known to be down: the registry of storages' health (storage/health.py)
    is the process's, and a test that took a database or folder down must not leave it down for the next
    (a readiness probe answered 503 `storage_unavailable` after the ledger's fault tests). And at its end, what
    it left down is forgotten: its probe ends, instead of trying a database the test took away every half second
    for the rest of the worker's tests (a cycle of garbage each try, that a later test's count of garbage saw)."""
    from qwen_gateway.storage import health

    mine: dict = {}
    monkeypatch.setattr(health, "_healths", mine)
    yield
    with health._healths_lock:
        left = list(mine.values())
    for h in left:
        h.forget()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory) -> Emulator:
    emu = start_emulator(tmp_path_factory.mktemp("emulator"))
    yield emu
    emu.stop()


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    emulator.reset()
    yield emulator
    if emulator.proc.poll() is None:  # what this test switched on answers no later test (one that uses oauth_home alone)
        emulator.reset()




@pytest.fixture
def make_gateway(tmp_path):
    started: list[Gateway] = []

    def factory(name: str = "gw", **kw) -> Gateway:
        gw = Gateway(tmp_path / name, **kw).start()
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        gw.stop(drain=False)


@pytest.fixture
def home(tmp_path, emu) -> tuple[Path, dict[str, str]]:
    """An empty Qwen Code folder and gateway state folder pointing at the emulator's OAuth server."""
    env = {"QWEN_DIR": str(tmp_path / ".qwen"), "QWEN_GATEWAY_HOME": str(tmp_path / "state"),
           "QWEN_OAUTH_BASE_URL": emu.url, "HOME": str(tmp_path)}
    return tmp_path, env


@pytest.fixture(scope="session")
def oauth_home(emulator: Emulator, tmp_path_factory) -> dict:
    """A Qwen Code login (oauth_creds.json) whose token the emulator accepts, and env pointing at it."""
    home = tmp_path_factory.mktemp("home")
    token = emulator.seed_token(expires_in=24 * 3600)
    write_creds(home / ".qwen", access_token=token, resource_url=emulator.url, expires_in=24 * 3600)
    return {
        "token": token,
        "env": {"QWEN_DIR": str(home / ".qwen"), "QWEN_GATEWAY_HOME": str(home / ".qwen-gateway"),
                "QWEN_OAUTH_BASE_URL": emulator.url, "HOME": str(home)},
    }


@pytest.fixture(scope="session")
def gateway(emulator: Emulator, oauth_home: dict, tmp_path_factory) -> Gateway:
    """One reverse-mode gateway for the session, exactly as the README starts it (bar the port)."""
    gw = Gateway(tmp_path_factory.mktemp("gateway"), env=oauth_home["env"]).start()
    yield gw
    gw.stop(drain=False)


@pytest.fixture
def gw(gateway: Gateway, emu: Emulator) -> Gateway:
    assert gateway.alive(), gateway.log()
    return gateway


@pytest.fixture
def key_home(tmp_path, emu):
    """A DashScope-style key account pointing at the emulator, as `qwen-auth add-key` writes it."""
    home = Home(tmp_path, emu)
    home.key("emu", path=CODING_PLAN, default_model="qwen3-coder-plus")
    return home.env()
