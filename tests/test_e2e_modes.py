"""Run modes that need help from the operating system: reported as skipped, with the reason, where
this machine cannot provide it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from helpers.procs import ADDON, BIN

pytestmark = pytest.mark.e2e

# The client resolves api.openai.com to loopback: the machine is offline and tests may only reach
# loopback addresses. Nothing else about the client is changed.
CLIENT = textwrap.dedent("""
    import socket, openai
    real = socket.getaddrinfo
    socket.getaddrinfo = lambda h, *a, **k: real("127.0.0.1" if h == "api.openai.com" else h, *a, **k)
    c = openai.OpenAI(api_key="sk-unchanged", max_retries=0, timeout=20)
    print(c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "local"}])
          .choices[0].message.content)
""")


def test_local_redirector_mode(tmp_path, emu, oauth_home):
    env = {**os.environ, **oauth_home["env"]}
    proc = subprocess.Popen([str(BIN / "mitmdump"), "--set", f"confdir={tmp_path / 'conf'}", "--mode",
                             "local:python", "-s", str(ADDON)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, text=True)
    try:
        out, _ = proc.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        out = None  # it is running: the redirector works here
    if out is not None:
        first = next((ln for ln in out.splitlines() if "Failed" in ln or "rror" in ln), out.strip()[-200:])
        pytest.skip(f"local redirector unavailable on this machine: {first.strip()}")
    try:
        r = subprocess.run([sys.executable, "-c", CLIENT], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "SSL_CERT_FILE": str(tmp_path / "conf" / "mitmproxy-ca-cert.pem")})
        assert r.stdout.strip() == "Echo: local", r.stderr
    finally:
        proc.terminate()
        proc.wait(10)

