"""Docker for the container tests (tests/e2e/test_e2e_container.py, tests/e2e/test_e2e_compose.py): the daemon, the
local base image, the images built once per session, and what each test starts, removed after it.

- The daemon: used when it runs; else, as root with Debian's docker.io installed, `dockerd` is started here
  (its log in a temporary folder) and stopped when the session ends. Otherwise the tests SKIP saying why —
  in CI (`CI=true`, where scripts/install-test-tools.sh installs docker.io) a missing docker is a failure.
- The base: no image registry is reachable here, so images build FROM `qwen-gateway-base:trixie`, Debian
  trixie made by scripts/docker-base.sh with debootstrap (about 2 minutes, once per machine: CI makes it in
  install-test-tools.sh; the session makes it if it is missing).
- The images, built once per session from the checkout (Docker's layer cache makes a rebuild after a code change
  take seconds): `qwen-gateway:test` from the Dockerfile (and its build stage, tagged `qwen-gateway:test-build`
  so the dependency layer stays cached rather than dangling), and `qwen-gateway-postgres:test`, Debian's
  PostgreSQL on the same base (docker/postgres, docs/deploy.md's recipe). Pip in the build trusts this machine's CA store
  (`build-ca.pem`, copied into the checkout for the build and removed after: docs/deploy.md).
- `Things`: the containers and volumes a test makes, removed (with their data) when it ends, whatever happens.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from helpers.procs import ROOT, _stop, _wait_for_file

BASE = "qwen-gateway-base:trixie"
IMAGE = "qwen-gateway:test"
BUILD_STAGE = "qwen-gateway:test-build"
POSTGRES_IMAGE = "qwen-gateway-postgres:test"
CA_STORE = Path("/etc/ssl/certs/ca-certificates.crt")
EMULATOR = ROOT / "scripts" / "qwen_emulator.py"
# what the legacy builder says when the daemon, not the Dockerfile, failed (seen on a machine under stress-ng:
# "unexpected EOF" while copying a stage's layer)
DAEMON_FAULTS = ("unexpected EOF",)


def docker(*args: str, timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def _answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Daemon:
    """The Docker daemon for the session: the running one, or one started here (and stopped at the end)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.folder: Path | None = None

    def problem(self) -> tuple[str, bool] | None:
        """None when the daemon answers; else (why not, whether it is a missing installation)."""
        if shutil.which("docker") is None:
            return "docker is not installed (Debian package docker.io: scripts/install-test-tools.sh)", True
        if _answers():
            return None
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        if not Path(dockerd).exists():
            return "no Docker daemon runs and dockerd is not installed (Debian package docker.io)", True
        if os.geteuid() != 0:
            return "no Docker daemon runs, and starting one (dockerd) needs root", False
        self.folder = Path(tempfile.mkdtemp(prefix="qwen-dockerd-"))
        log = open(self.folder / "dockerd.log", "w")
        self.proc = subprocess.Popen([dockerd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not _answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.folder / "dockerd.log").read_text()[-1500:]
                self.stop()
                return f"dockerd did not start (no privileges for containers here?):\n{tail}", False
            time.sleep(0.2)
        return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # dockerd stops its containerd too
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _exists(image: str) -> bool:
    return docker("image", "inspect", image, check=False).returncode == 0


def _base_problem() -> str | None:
    if _exists(BASE):
        return None
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        return (f"the base image {BASE} is missing and cannot be made here: scripts/docker-base.sh needs root and "
                "debootstrap (scripts/install-test-tools.sh makes it)")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "docker-base.sh"), BASE], capture_output=True, text=True,
                       timeout=1200)
    print(r.stdout, r.stderr, file=sys.stderr)
    return None if r.returncode == 0 else f"scripts/docker-base.sh failed:\n{r.stdout}\n{r.stderr}"


def build(tag: str, *args: str, context: Path = ROOT) -> float:
    """`docker build` on the local base; from the checkout with this machine's CA store as build-ca.pem (for
    pip, in the build stage only), removed after. Returns the seconds it took."""
    ca = context / "build-ca.pem"
    before = docker("image", "inspect", "-f", "{{.Id}}", tag, check=False).stdout.strip()
    start = time.monotonic()
    try:
        if context == ROOT and CA_STORE.exists():
            shutil.copyfile(CA_STORE, ca)
        command = ("build", "--build-arg", f"BASE={BASE}", "-t", tag, *args, str(context))
        for attempt in (1, 2):  # the daemon's own fault, not the image's: once more
            r = docker(*command, timeout=900, check=False)
            if r.returncode == 0:
                break
            if attempt == 2 or not any(fault in r.stderr for fault in DAEMON_FAULTS):
                raise AssertionError(f"docker {' '.join(command)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
            print(f"docker build {tag}: the daemon failed ({r.stderr.strip()[-200:]}); once more", file=sys.stderr)
    finally:
        ca.unlink(missing_ok=True)
    if before and before != docker("image", "inspect", "-f", "{{.Id}}", tag).stdout.strip():
        docker("image", "rm", before, check=False)  # the image this tag named before a change: not left dangling
    return time.monotonic() - start


@pytest.fixture(scope="session")
def docker_daemon():
    daemon = Daemon()
    found = daemon.problem()
    if found is not None:
        reason, missing = found
        if missing and os.environ.get("CI") == "true":  # .ci/run installs docker.io: there, missing is a failure
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        base = _base_problem()
        if base is not None:
            pytest.skip(base)
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def gateway_image(docker_daemon) -> str:
    """The Dockerfile built from the checkout on the local base, once per session: its tag."""
    seconds = build(BUILD_STAGE, "--target", "build") + build(IMAGE)
    print(f"\n{IMAGE}: built in {seconds:.0f} s", file=sys.stderr)
    return IMAGE


@pytest.fixture(scope="session")
def postgres_image(docker_daemon) -> str:
    """Debian's PostgreSQL on the same base, standing in for the `postgres` image compose.yaml names."""
    build(POSTGRES_IMAGE, context=ROOT / "docker" / "postgres")
    return POSTGRES_IMAGE


class Things:
    """Containers and volumes of one test, named uniquely (`qgw-test-…`), removed when the test ends."""

    def __init__(self) -> None:
        self.prefix = f"qgw-test-{secrets.token_hex(3)}"
        self.containers: list[str] = []
        self.volumes: list[str] = []
        self.emulators: list[subprocess.Popen] = []

    def volume(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        if full not in self.volumes:
            docker("volume", "create", full)
            self.volumes.append(full)
        return full

    def run(self, name: str, *args: str) -> str:
        """`docker run -d --name PREFIX-NAME ARGS…`: the container's name."""
        full = f"{self.prefix}-{name}"
        self.containers.append(full)
        docker("run", "-d", "--name", full, *args)
        return full

    def emulator_in(self, container: str, workdir: Path, *args: str) -> int:
        """The Qwen emulator (scripts/qwen_emulator.py, this checkout, this Python) in the container's network
        namespace: the gateway inside reaches it on its own 127.0.0.1; nothing else does. Returns its port."""
        pid = docker("inspect", "-f", "{{.State.Pid}}", container).stdout.strip()
        workdir.mkdir(parents=True, exist_ok=True)
        portfile = workdir / "port"
        proc = subprocess.Popen(["nsenter", "-t", pid, "-n", "--", sys.executable, str(EMULATOR), "--host", "127.0.0.1",
                                 "--port", "0", "--port-file", str(portfile), "--quiet", *args],
                                stdout=open(workdir / "emulator.log", "w"), stderr=subprocess.STDOUT)
        self.emulators.append(proc)
        return int(_wait_for_file(portfile, proc, "emulator").strip())

    def logs(self, container: str) -> str:
        r = docker("logs", container, check=False)
        return r.stdout + r.stderr

    def close(self) -> None:
        for proc in self.emulators:
            _stop(proc)
        if self.containers:
            docker("rm", "-f", "-v", *self.containers, check=False)
        if self.volumes:
            docker("volume", "rm", "-f", *self.volumes, check=False)


@pytest.fixture
def things(docker_daemon):
    made = Things()
    try:
        yield made
    finally:
        made.close()


def nsenter_problem() -> str | None:
    if os.geteuid() != 0 or shutil.which("nsenter") is None:
        return "the emulator runs in the container's network namespace: that needs root and nsenter (util-linux)"
    return None
