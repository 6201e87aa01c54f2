"""One storage's Health (storage/health.py) when the gateway is pointed elsewhere: a `qwen_state_url` switched at
run time to a database that is away and back leaves no outage behind it — /health and readiness list only the
database in use, and nothing probes the other for ever. Through a real gateway (mitmweb's options editor):
tests/e2e/test_e2e_state_faults.py."""

from __future__ import annotations

import threading
import time

from qwen_gateway.storage.health import health_of, unavailable


def _listed() -> list[str]:
    return [s["reason"] for s in unavailable()]


def test_the_database_a_gateway_was_pointed_at_before_is_no_longer_listed_nor_probed():
    probed = threading.Event()

    def away() -> bool:
        probed.set()
        return False

    old = health_of("pg:test-old", "the shared database old", "shared state database", away, replaces="pg:")
    old.lost("an old outage")
    assert probed.wait(5) and "an old outage" in _listed()
    folder = health_of("local:/test-folder", "the state folder /test-folder", "local storage", lambda: False)
    folder.lost("a folder's outage")
    health_of("pg:test-new", "the shared database new", "shared state database", lambda: True, replaces="pg:")
    assert "an old outage" not in _listed() and not old.down
    assert "a folder's outage" in _listed()  # another kind of storage: not replaced
    time.sleep(0.7)  # the probe's next look (PROBE_S) ends it
    probed.clear()
    assert not probed.wait(1.0)
    folder.forget()
    assert "a folder's outage" not in _listed()


def test_a_cause_that_changes_during_one_outage_is_said_again(caplog):
    """A fast shutdown first ends the sessions (AdminShutdown), then nothing listens: the operator reads the cause
    that holds now, once per change, not only the first one (the e2e test waited two minutes for it on a busy
    machine)."""
    from qwen_gateway.storage.health import Health
    h = Health("the shared database test", "shared state database", lambda: False)
    with caplog.at_level("INFO", logger="qwen"):
        h.lost("AdminShutdown")
        h.lost("AdminShutdown")
        h.lost("down or unreachable: connection refused")
        h.lost("down or unreachable: connection refused")
    lines = [r.getMessage() for r in caplog.records if "the shared database test" in r.getMessage()]
    assert len(lines) == 2 and "AdminShutdown" in lines[0], lines
    assert "still unavailable, now down or unreachable: connection refused" in lines[1], lines
    h.forget()


def test_the_probe_says_the_cause_that_holds_now_while_nothing_uses_the_storage(caplog):
    """Stores refuse at once while their storage is down, so none tries again to learn a new cause: the gateway
    said "AdminShutdown" for two minutes after the server had stopped listening (seen in CI). The probe's own
    failure now names the cause, in the storage's words."""
    from qwen_gateway.storage.health import Health

    def refused() -> bool:
        raise ConnectionRefusedError("connection refused")

    h = Health("the shared database probed", "shared state database", refused,
               cause=lambda e: "down or unreachable: connection refused")
    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "the shared database probed" in r.getMessage()]

    with caplog.at_level("INFO", logger="qwen"):
        h.lost("AdminShutdown")
        deadline = time.monotonic() + 10
        # the line is the observable: the probe sets the reason, then says it (a busy machine runs the test between)
        while len(lines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert h.down and h.reason == "down or unreachable: connection refused"
    assert "(down or unreachable: connection refused)" in h.error().message
    said = lines()
    assert len(said) == 2 and "still unavailable, now down or unreachable" in said[1], said
    h.forget()
