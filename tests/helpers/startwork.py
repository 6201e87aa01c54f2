"""Test-only mitmproxy script, loaded after addons/qwen.py: what the gateway's start did, written as JSON to
$QWEN_TEST_STARTWORK once it runs. At this script's load (the gateway's script loaded just before) and at its
`running` (after the gateway's): whether the collector runs, its full passes so far, what it froze, and which
modules the process holds. Lifecycle hooks only (see portfile.py)."""

import gc
import json
import os
import sys


def _now() -> dict:
    return {"collector_on": gc.isenabled(), "full_passes": gc.get_stats()[2]["collections"],
            "frozen": gc.get_freeze_count(), "modules": sorted(sys.modules)}


class StartWork:
    def __init__(self) -> None:
        self.loaded = _now()

    def running(self) -> None:
        path = os.environ["QWEN_TEST_STARTWORK"]
        with open(path + ".tmp", "w") as f:
            json.dump({"loaded": self.loaded, "running": _now()}, f)
        os.replace(path + ".tmp", path)


addons = [StartWork()]
