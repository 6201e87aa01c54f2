"""The container image (issue 40, item 1), built from the Dockerfile and run by a real Docker daemon
(tests/helpers/docker.py: the image is built once per session on the local Debian base).

The network: each gateway container is on Docker's default bridge with its port published on the host's
loopback only (`-p 127.0.0.1::8080`, a free port); the test reaches it there, through docker-proxy, so the
gateway sees a client beyond loopback, as it would in production. The Qwen emulator (scripts/qwen_emulator.py)
runs on the host in the container's own network namespace (`nsenter -n`): the gateway reaches it at
127.0.0.1:9999 inside, and nothing outside the container can.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from helpers.docker import Things, docker, docker_daemon, gateway_image, nsenter_problem, things  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]  # the first test may build the base and the image

DEMO_KEY = "sk-demo-container"
UPSTREAM = "http://127.0.0.1:9999/v1"  # the emulator, inside the container's network namespace


def volumes(things: Things) -> list[str]:
    """The three folders the image keeps, on named volumes of this test."""
    return ["-v", f"{things.volume('state')}:/home/qwen/.qwen-gateway", "-v", f"{things.volume('logins')}:/home/qwen/.qwen",
            "-v", f"{things.volume('certs')}:/home/qwen/.mitmproxy"]


def tool(image: str, things: Things, name: str, *args: str) -> str:
    """A command of the package (qwen-keys, qwen-auth, qwen-usage) in a throwaway container on the volumes."""
    return docker("run", "--rm", *volumes(things), "--entrypoint", name, image, *args).stdout


def start(image: str, things: Things, name: str, tmp_path, *args: str) -> str:
    """A gateway container (healthcheck every second instead of every 30 s: the image's own command), its
    emulator, and the URL of its published port once the liveness probe answers there."""
    container = things.run(name, "-e", f"DEMO_KEY={DEMO_KEY}", "-p", "127.0.0.1::8080", "--health-interval", "1s",
                           "--health-start-period", "1s", *volumes(things), *args, image)
    things.emulator_in(container, tmp_path / name, "--port", "9999", "--api-key", DEMO_KEY)
    url = "http://" + docker("port", container, "8080/tcp").stdout.split()[0]
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health/liveness", trust_env=False, timeout=5).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{container} did not answer its liveness probe:\n{things.logs(container)}")
        time.sleep(0.2)


def health_status(container: str) -> str:
    return docker("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip()


def stop(things: Things, container: str) -> str:
    """`docker stop` (SIGTERM): the container's log once it exited 0."""
    docker("stop", "-t", "30", container, timeout=60)
    code = docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip()
    log = things.logs(container)
    assert code == "0", f"{container} exited {code}:\n{log}"
    return log


def chat(url: str, key: str, text: str) -> str:
    import openai

    c = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)
    return c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}]
                                     ).choices[0].message.content


def test_the_image_answers_keeps_its_state_across_containers_and_stops_on_sigterm(gateway_image, things, tmp_path):
    problem = nsenter_problem()
    if problem:
        pytest.skip(problem)
    added = tool(gateway_image, things, "qwen-keys", "add", "alice")
    alice = re.search(r"^(sk-qg-\S+)$", added, re.M).group(1)  # shown once; its hash is in the state volume
    tool(gateway_image, things, "qwen-auth", "add-key", "demo", "--base-url", UPSTREAM, "--key-env", "DEMO_KEY")

    url = start(gateway_image, things, "first", tmp_path)
    first = f"{things.prefix}-first"
    # beyond loopback (docker-proxy's address): the probes answer without a key, the rest needs one
    assert httpx.get(url + "/health/readiness", trust_env=False).json() == {"status": "ready"}
    assert httpx.get(url + "/health", trust_env=False).status_code == 401
    # as kubelet asks: the container's own address, in Host too
    ip = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", first).stdout.strip()
    assert httpx.get(f"http://{ip}:8080/health/liveness", trust_env=False).json() == {"status": "alive"}
    assert httpx.post(url + "/v1/chat/completions", trust_env=False, json={"model": "gpt-4o", "messages": [
        {"role": "user", "content": "no key"}]}).status_code == 401
    assert chat(url, alice, "ping") == "Echo: ping"
    deadline = time.monotonic() + 30  # the image's HEALTHCHECK (the liveness probe, from inside)
    while health_status(first) != "healthy" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert health_status(first) == "healthy", docker("inspect", "-f", "{{json .State.Health}}", first).stdout
    log = stop(things, first)
    lines = [ln for ln in log.splitlines() if ln.startswith("[")]  # mitmdump's (qwen-gateway's own: on stderr)
    assert "] qwen: gateway stopped" in lines[-1], log
    assert "Traceback" not in log and alice not in log, log
    assert "--listen-host 0.0.0.0" in log and "listening at *:8080" in log
    ca = tool(gateway_image, things, "cat", "/home/qwen/.mitmproxy/mitmproxy-ca-cert.pem")
    docker("rm", first)

    # a new container on the same volumes: the named key, the account, the ledger and mitmproxy's CA are there
    url = start(gateway_image, things, "second", tmp_path)
    assert chat(url, alice, "again") == "Echo: again"
    stop(things, f"{things.prefix}-second")
    rows = json.loads(tool(gateway_image, things, "qwen-usage", "requests", "--key", "alice", "--json"))
    served = [(r["endpoint"], r["account"], r["status"]) for r in rows]
    assert served == [("chat.completions", "demo", 200)] * 2, rows  # one per container, in the one ledger
    assert tool(gateway_image, things, "cat", "/home/qwen/.mitmproxy/mitmproxy-ca-cert.pem") == ca


def test_without_client_keys_the_image_refuses_to_start(gateway_image, things):
    """Listening on 0.0.0.0 without named keys, QWEN_GATEWAY_KEYS or a keys file: the gateway's guard stops it."""
    container = things.run("open", gateway_image)
    docker("wait", container, timeout=60)
    code = docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip()
    assert code != "0"
    assert "would listen beyond loopback without client keys" in things.logs(container)


def test_the_image_runs_as_a_user_of_its_own_with_its_folders_on_volumes(gateway_image):
    config = json.loads(docker("image", "inspect", gateway_image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert set(config["Volumes"]) == {"/home/qwen/.qwen-gateway", "/home/qwen/.qwen", "/home/qwen/.mitmproxy"}
    assert config["Entrypoint"] == ["qwen-gateway", "--listen-host", "0.0.0.0"]
    assert "/health/liveness" in " ".join(config["Healthcheck"]["Test"])
    # the CA bundle pip trusted in the build stage is not in the image
    files = docker("run", "--rm", "--entrypoint", "find", gateway_image, "/opt", "-name", "build-ca.pem").stdout
    assert files == ""
