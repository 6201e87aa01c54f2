"""compose.yaml (issue 40, item 2) run by Debian's docker-compose as it is: PostgreSQL (Debian's, in an image on
the same local base: `QWEN_POSTGRES_IMAGE`, as no registry is reachable here) and two gateways (the image the
session built: `QWEN_GATEWAY_IMAGE`) sharing its state, the secrets in the two environment files docs/deploy.md
makes, the ports free ones (`QWEN_GATEWAY_1_PORT`, `QWEN_GATEWAY_2_PORT`). A project of its own name in a
temporary folder (`--project-directory`: the environment files live there), taken down with its volumes after.
The Qwen emulator runs in each gateway's network namespace (tests/e2e/test_e2e_container.py says how).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from helpers.docker import Things, docker, docker_daemon, gateway_image, nsenter_problem, postgres_image  # noqa: F401
from helpers.procs import ROOT, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

COMPOSE = ROOT / "compose.yaml"
STATE_URL = "postgresql://qwen@postgres:5432/qwen_gateway"
DEMO_KEY = "sk-demo-compose"


def compose_problem() -> str | None:
    if shutil.which("docker-compose") is None:
        return "docker-compose is not installed (Debian package docker-compose: scripts/install-test-tools.sh)"
    return nsenter_problem()


class Project:
    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.name = f"qgwtest{secrets.token_hex(3)}"
        self.env = env
        self.things = Things()  # the emulators

    def __call__(self, *args: str, timeout: float = 180) -> str:
        r = subprocess.run(["docker-compose", "-f", str(COMPOSE), "--project-directory", str(self.folder),
                            "-p", self.name, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"docker-compose {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def container(self, service: str) -> str:
        return self("ps", "-q", service).strip()

    def url(self, service: str) -> str:
        return "http://127.0.0.1:" + self.env[f"QWEN_GATEWAY_{service[-1]}_PORT"]


def private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


@pytest.fixture
def project(tmp_path, gateway_image, postgres_image):
    problem = compose_problem()
    if problem and "not installed" in problem and os.environ.get("CI") == "true":
        pytest.fail(problem)
    if problem:
        pytest.skip(problem)
    password, client_key = secrets.token_hex(16), secrets.token_hex(16)
    private(tmp_path / "postgres.env", f"POSTGRES_PASSWORD={password}\n")
    private(tmp_path / "qwen-gateway.env", f"PGPASSWORD={password}\nQWEN_GATEWAY_KEYS={client_key}\nDEMO_KEY={DEMO_KEY}\n")
    env = {**os.environ, "QWEN_GATEWAY_IMAGE": gateway_image, "QWEN_POSTGRES_IMAGE": postgres_image,
           "QWEN_GATEWAY_1_PORT": str(free_port()), "QWEN_GATEWAY_2_PORT": str(free_port())}
    p = Project(tmp_path, env)
    p.client_key, p.password = client_key, password
    try:
        yield p
    finally:
        p.things.close()
        p("down", "--volumes", "--remove-orphans", "-t", "30")


def live(url: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            if httpx.get(url + "/health/liveness", trust_env=False, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url}: no liveness within {limit} s"
        time.sleep(0.2)


def test_compose_runs_two_gateways_sharing_postgresql(project, tmp_path):
    import openai

    assert not re.search(r"PASSWORD\s*[:=]|KEYS\s*[:=]", COMPOSE.read_text()), "a secret's value in compose.yaml"
    project("config", "--quiet")
    # an account added once, in the state volume both gateways share (the env file gives its key variable)
    project("run", "--rm", "--no-deps", "--entrypoint", "qwen-auth", "gateway-1",
            "add-key", "demo", "--base-url", "http://127.0.0.1:9999/v1", "--key-env", "DEMO_KEY")
    project("up", "-d")
    db = project.container("postgres")
    assert docker("inspect", "-f", "{{.State.Health.Status}}", db).stdout.strip() == "healthy"  # before the gateways
    clients = {}
    for service in ("gateway-1", "gateway-2"):  # every folder on a named volume of the project: none anonymous
        mounts = docker("inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", project.container(service)).stdout
        assert sorted(mounts.split()) == sorted(f"{project.name}_{v}" for v in ("state", "logins", f"certs-{service[-1]}"))
        project.things.emulator_in(project.container(service), tmp_path / service, "--port", "9999",
                                   "--api-key", DEMO_KEY)
        live(project.url(service))
        assert httpx.get(project.url(service) + "/health/readiness", trust_env=False).json() == {"status": "ready"}
        clients[service] = openai.OpenAI(base_url=project.url(service) + "/v1", api_key=project.client_key,
                                         max_retries=0, timeout=30)
    first = clients["gateway-1"].responses.create(model="gpt-4o", input="remember the word kumquat")
    second = clients["gateway-2"].responses.create(model="gpt-4o", previous_response_id=first.id, input="and now?")
    assert second.output_text == "Echo: and now?"
    assert clients["gateway-2"].responses.retrieve(first.id).output_text == "Echo: remember the word kumquat"
    assert clients["gateway-1"].responses.retrieve(second.id).id == second.id

    deadline = time.monotonic() + 20  # the shared ledger (written in batches): both gateways' requests
    while True:
        rows = json.loads(project("exec", "-T", "gateway-1", "qwen-usage", "requests", "--json", "--state-url",
                                  STATE_URL))
        served = [r for r in rows if r["endpoint"] == "responses" and r["status"] == 200]
        if len(served) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [r["account"] for r in served] == ["demo", "demo"], rows

    project("stop", "-t", "30")
    for service in ("gateway-1", "gateway-2"):
        container = project.container(service)
        assert docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip() == "0"
        log = docker("logs", container).stdout
        assert f"qwen: shared state on {STATE_URL}" in log and "] qwen: gateway stopped" in log, log
        assert " is unavailable (" not in log, log  # PostgreSQL was ready before the gateways started
        assert project.password not in log and project.client_key not in log
