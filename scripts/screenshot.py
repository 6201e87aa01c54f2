"""Regenerate a picture of the docs: runs its browser test (real emulator, gateway and headless Chromium) and
copies the screenshot it took, after all its checks passed, to the docs.

    .venv/bin/python scripts/screenshot.py [mitmweb|usage-report] [OUT.png]

`mitmweb` (the default): docs/img/mitmweb-stream.png, the mitmweb browser test. `usage-report`:
docs/img/usage-report.png, the page `qwen-usage report` wrote for a real gateway's ledger.

Needs Debian's chromium and chromium-driver (scripts/install-test-tools.sh). The tests themselves never
write to the repository: without this script the screenshot stays in pytest's temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PICTURES = {  # name -> (the test that takes it, where the docs keep it)
    "mitmweb": ("tests/e2e/test_mitmweb.py::test_browser_shows_the_assembled_answer_and_summary", "mitmweb-stream.png"),
    "usage-report": ("tests/e2e/test_e2e_usage_report.py::"
                     "test_report_renders_in_chromium_with_the_ledgers_numbers_and_no_network", "usage-report.png"),
}


def main(argv: list[str]) -> int:
    name = argv.pop(0) if argv and argv[0] in PICTURES else "mitmweb"
    test, picture = PICTURES[name]
    out = Path(argv[0]).resolve() if argv else ROOT / "docs" / "img" / picture
    before = out.stat().st_mtime_ns if out.exists() else None
    pytest = Path(sys.executable).parent / "pytest"
    env = {**os.environ, "QWEN_SCREENSHOT_OUT": str(out)}
    # -rs: a skipped browser test (no Chromium) must say so; it would leave the image as it was
    r = subprocess.run([str(pytest), "-q", "-rs", "-p", "no:cacheprovider", test], cwd=ROOT, env=env)
    after = out.stat().st_mtime_ns if out.exists() else None
    if r.returncode != 0 or after is None or after == before:
        print(f"screenshot: {out} was not written (see the test output above)", file=sys.stderr)
        return 1
    print(f"screenshot: wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
