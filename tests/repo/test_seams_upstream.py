"""The seams proven by mitmproxy's own tests: the test files that cover each function a seam replaces or wraps,
run twice over the installed mitmproxy — as it is, and with every seam installed (tests/helpers/
mitmproxy_with_seams.py) — must end the same for every test.

mitmproxy's tests live only in its git repository (PyPI has no sdist of 12.x; Debian packages 8.1), and fetched
code is never copied into this repository: QWEN_MITMPROXY_TESTS names a checkout of them, at the version
installed. Without it this test is skipped, saying how to get one. The figures of the last run are in
docs/architecture.md#seams."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from mitmproxy import version

from helpers.procs import ROOT

CHECKOUT = os.environ.get("QWEN_MITMPROXY_TESTS", "")

# each seam's code, and mitmproxy's tests of it
COVERING = {
    "test/mitmproxy/test_addonmanager.py": "hook_dispatch: AddonManager (trigger_event, register, remove, add)",
    "test/mitmproxy/test_hooks.py": "hook_dispatch: Hook.args",
    "test/mitmproxy/addons/test_script.py": "hook_dispatch's chain watch: Script.loadscript, ScriptLoader",
    "test/mitmproxy/test_http.py": "message_checks: MessageData",
    "test/mitmproxy/utils/test_typecheck.py": "message_checks: check_option_type",
    "test/mitmproxy/proxy/layers/http": "http1_heads: Http1Server (and the HTTP layer around it); body_limit: "
                                        "make_error_response, Http1Server.send, HttpStream.check_body_size",
    "test/mitmproxy/proxy/test_server.py": "server_connect: ConnectionHandler.open_connection",
    "test/mitmproxy/proxy/layers/test_websocket.py": "websocket_messages: WebsocketLayer",
    "test/mitmproxy/test_master.py": "loop_reports: Master.run, Master._asyncio_exception_handler",
    "test/mitmproxy/tools/test_main.py": "shutdown_signals: mitmproxy.tools.main.run",
    "test/mitmproxy/addons/test_termlog.py": "terminal_log: TermLog, TermLogHandler",
}
SEAMS = ["hook_dispatch", "message_checks", "http1_heads", "body_limit", "server_connect", "websocket_messages",
         "terminal_log", "loop_reports", "shutdown_signals"]
HOW = (f"git clone --depth 1 --branch v{version.VERSION} https://github.com/mitmproxy/mitmproxy <dir>, then "
       "QWEN_MITMPROXY_TESTS=<dir> bash scripts/test.sh tests/repo/test_seams_upstream.py")


def outcomes(junit: Path) -> dict[str, str]:
    """Each test's outcome in a JUnit XML report: passed, failed, error or skipped."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        found = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        out[f"{case.get('classname')}::{case.get('name')}"] = {"failure": "failed"}.get(found[0], found[0]) \
            if found else "passed"
    return out


def run(checkout: Path, tmp: Path, seams: bool) -> tuple[dict[str, str], dict]:
    name = "seams" if seams else "bare"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "helpers"), "HOME": str(tmp / f"home-{name}"),
           "QWEN_SEAMS_INSTALL": "1" if seams else "0", "QWEN_SEAMS_REPORT": str(tmp / f"{name}.json")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "mitmproxy_with_seams",
                          "--timeout", "120", f"--junitxml={tmp / name}.xml", *COVERING], cwd=checkout, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert (tmp / f"{name}.xml").exists(), out.stdout[-3000:] + out.stderr[-3000:]
    return outcomes(tmp / f"{name}.xml"), json.loads((tmp / f"{name}.json").read_text())


def checkout_version(checkout: Path) -> str:
    found = re.search(r'^VERSION = "([^"]+)"', (checkout / "mitmproxy" / "version.py").read_text(), re.M) \
        if (checkout / "mitmproxy" / "version.py").exists() else None
    return found.group(1) if found else "unknown (no mitmproxy/version.py beside the tests)"


@pytest.mark.skipif(not CHECKOUT, reason="QWEN_MITMPROXY_TESTS is not set, so mitmproxy's own tests of the code the "
                                         "seams patch were not run: they are only in mitmproxy's git repository. "
                                         f"To run them: {HOW}")
def test_mitmproxys_own_tests_end_the_same_with_every_seam_installed(tmp_path):
    checkout = Path(CHECKOUT)
    missing = [path for path in COVERING if not (checkout / path).exists()]
    assert missing == [], f"not a checkout of mitmproxy's tests ({HOW}): no {', '.join(missing)}"
    bare, bare_run = run(checkout, tmp_path, seams=False)
    seamed, seamed_run = run(checkout, tmp_path, seams=True)
    installed = Path(version.__file__).parent
    assert Path(bare_run["from"]) == Path(seamed_run["from"]) == installed  # not the checkout's own source
    assert bare_run["installed"] == [] and seamed_run["installed"] == SEAMS
    assert len(bare) > 300, bare  # the files ran
    differing = {test: (bare.get(test), seamed.get(test)) for test in bare.keys() | seamed.keys()
                 if bare.get(test) != seamed.get(test)}
    assert differing == {}, "outcomes without the seams and with them"
    counts = {o: list(bare.values()).count(o) for o in sorted(set(bare.values()))}
    print(f"\nmitmproxy {version.VERSION} installed, tests of {checkout_version(checkout)}: {len(bare)} tests, "
          f"the same outcome for each with the seams ({counts})")
