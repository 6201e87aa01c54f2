"""What a gateway's start does, counted (not timed: docs/performance.md#the-test-suite has the times): from its
script's load to `running`, the collector makes one full pass (seams/collector.py: it was three in a fresh
mitmdump, two in a forked one, each ~50 ms walking the start-up heap), and the modules the gateway loads at first
need only are not loaded. Both ways the tests start a gateway: forked by the fork server and by Popen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.procs import Gateway, until
from unit.test_addon_imports import LAZY

pytestmark = pytest.mark.e2e

STARTWORK = Path(__file__).resolve().parents[1] / "helpers" / "startwork.py"


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "popen"])
def test_a_start_makes_one_full_collection_and_loads_nothing_lazy(tmp_path, oauth_home, emu, fork):
    record = tmp_path / "startwork.json"
    gw = Gateway(tmp_path / "gw", env={**oauth_home["env"], "QWEN_TEST_STARTWORK": str(record)}, fork=fork,
                 args=("-s", str(STARTWORK))).start()
    try:
        work = json.loads(until(lambda: record.exists() and record.read_text(), "the start recorded"))
    finally:
        gw.stop()
    assert gw.started["forked"] is fork
    loaded, running = work["loaded"], work["running"]
    assert not loaded["collector_on"]  # paused from the gateway's script's load...
    assert running["full_passes"] - loaded["full_passes"] == 1  # ...to its one pass at `running`
    assert running["collector_on"] and running["frozen"] > 50_000  # on again, the start-up heap frozen
    assert not set(LAZY) & set(running["modules"])
