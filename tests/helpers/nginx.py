"""Debian's nginx on loopback, in a folder of its own (its configuration, logs and temporary folders), started and
stopped by the test: in front of several gateways (tests/e2e/test_e2e_deploy.py, test_e2e_many_gateways.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from helpers.netns import stop


class Nginx:
    def __init__(self, root: Path, port: int, site: str) -> None:
        self.root = root
        self.port = port
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (root / sub).mkdir(exist_ok=True)
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers may read the test's temporary folders
        (root / "nginx.conf").write_text(
            f"{user}worker_processes 1;\npid {root}/nginx.pid;\nerror_log {root}/error.log info;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            "  log_format upstreams '$request $status upstream=$upstream_addr statuses=$upstream_status';\n"
            f"  access_log {root}/access.log upstreams;\n"  # which gateway each request was sent to, and what it said
            f"  client_body_temp_path {root}/client_body; proxy_temp_path {root}/proxy;\n"
            f"  fastcgi_temp_path {root}/fastcgi; uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;\n"
            + site.replace("\n", "\n  ") + "\n}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Nginx":
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        check = subprocess.run([nginx, "-t", "-c", str(self.root / "nginx.conf"), "-p", str(self.root)],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([nginx, "-c", str(self.root / "nginx.conf"), "-p", str(self.root), "-g",
                                      "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", trust_env=False, timeout=2)
                return self
            except httpx.TransportError as e:
                if self.proc.poll() is not None:
                    said = self.proc.stderr.read() if self.proc.stderr else b""
                    raise RuntimeError(f"nginx exited: {said!r}") from e
                time.sleep(0.1)
        raise RuntimeError("nginx did not start")

    def tried(self) -> list[str]:
        """nginx's access log: each request, its status and each gateway it was sent to with that one's status."""
        path = self.root / "access.log"
        return path.read_text().splitlines() if path.exists() else []

    def errors(self) -> str:
        path = self.root / "error.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def stop(self) -> None:
        stop(self.proc)
