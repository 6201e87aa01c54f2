"""Run by Python at start when this folder is on PYTHONPATH (tests/e2e/test_e2e_another_mitmproxy.py): the process's
mitmproxy becomes another release, whose code differs from what the gateway's seams were written against."""

import os
from pathlib import Path

import another_mitmproxy  # tests/helpers, on PYTHONPATH too

another_mitmproxy.install(Path(os.environ["QWEN_TEST_NEXT_MITMPROXY"]))
