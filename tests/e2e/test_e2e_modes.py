"""Run modes that need help from the operating system: reported as skipped, with the reason, where
this machine cannot provide it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time

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


# What mitmproxy's local mode logs when its redirector cannot start, and what it means.
REDIRECTOR_FAILURES = (
    ("BTF couldn't be loaded", "the kernel refuses the local redirector's eBPF program (BPF_BTF_LOAD: Invalid "
                               "argument): this kernel lacks the BTF support mitmproxy's local mode needs"),
    ("eBPF initialization failed", "the kernel refuses the local redirector's eBPF program (its log: 'eBPF "
                                   "initialization failed', e.g. BPF_BTF_LOAD or bpf_link_create refused)"),
    ("Failed to run sudo", "mitmproxy's local redirector elevates itself with sudo, which is not installed"),
    ("Failed to elevate", "mitmproxy's local redirector could not elevate its privileges (needs root)"),
    ("redirector] exited", "mitmproxy's local redirector exited at start-up"),
)


def test_local_redirector_mode(tmp_path, emu, oauth_home):
    env = {**os.environ, **oauth_home["env"]}
    if os.geteuid() == 0 and shutil.which("sudo") is None:
        # The redirector always starts itself through `sudo`; as root that is a no-op, so stand one in
        # to reach the redirector's own verdict.
        shim = tmp_path / "bin"
        shim.mkdir()
        (shim / "sudo").write_text('#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n')
        (shim / "sudo").chmod(0o755)
        env["PATH"] = f"{shim}:{env.get('PATH', '')}"
    log = tmp_path / "mitmdump.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "mitmdump"), "--set", f"confdir={tmp_path / 'conf'}", "--mode",
                                 "local:python", "-s", str(ADDON)], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30  # the redirector fails within a second or two when it fails (more, loaded)
        while time.monotonic() < deadline and proc.poll() is None:
            text = log.read_text()
            if any(marker in text for marker, _ in REDIRECTOR_FAILURES):
                break
            time.sleep(0.2)
        text = log.read_text()
        reason = next((why for marker, why in REDIRECTOR_FAILURES if marker in text), None)
        if reason is None and proc.poll() is not None:
            reason = f"mitmdump exited with {proc.returncode}: {text.strip()[-200:]}"
        if reason:
            pytest.skip(f"local redirector unavailable on this machine: {reason}")
        r = subprocess.run([sys.executable, "-c", CLIENT], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "SSL_CERT_FILE": str(tmp_path / "conf" / "mitmproxy-ca-cert.pem")})
        text = log.read_text()
        late = next((why for marker, why in REDIRECTOR_FAILURES if marker in text), None)
        if r.stdout.strip() != "Echo: local" and late:  # its failure said after the wait, on a loaded machine
            pytest.skip(f"local redirector unavailable on this machine: {late}")
        assert r.stdout.strip() == "Echo: local", r.stderr + text[-2000:]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
