"""Installed as one package: `qwen_gateway` imports, the folders' own names (`auth`, `addons`) do not."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e  # starts a Python process outside the checkout


@pytest.mark.parametrize("module,importable", [("qwen_gateway", True), ("qwen_gateway.auth.pool", True),
                                               ("auth", False), ("addons", False)])
def test_only_qwen_gateway_is_importable(tmp_path, module, importable):
    r = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode == 0) is importable, r.stderr
