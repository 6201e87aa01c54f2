"""docs/deploy.md's Kubernetes manifest, as printed (issue 40, item 3). No cluster runs here, and `kubectl apply
--dry-run=client` needs one (it asks the API server for the kinds), so the manifest is validated offline against
Kubernetes' own JSON schemas, strict (`kubernetes-validate`: an unknown or misplaced field is an error), and
checked against the gateway and its image: the probes' paths are the gateway's probe routes, the port, user and
volumes the Dockerfile's, the accounts a registry the gateway reads, the secrets referenced and never written."""

from __future__ import annotations

import copy
import json
import re

import httpx

import kubernetes_validate
import pytest
import yaml

from helpers import commands
from helpers.docker import Things, docker, docker_daemon, gateway_image, things  # noqa: F401  (fixtures)
from helpers.procs import BIN, ROOT, until
from qwen_gateway.ingress import routing
from qwen_gateway.storage.pg_url import check_url

SECRET_NAMES = re.compile(r"KEY|PASSWORD|TOKEN|SECRET", re.I)


def manifest() -> dict[str, dict]:
    """The page's one yaml block: its objects by kind."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "deploy.md").read_text(), re.S)
    assert len(blocks) == 1, "docs/deploy.md should show one yaml block (the Kubernetes manifest)"
    return {doc["kind"]: doc for doc in yaml.safe_load_all(blocks[0])}


def container(objects: dict) -> dict:
    (c,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c


def dockerfile(instruction: str) -> str:
    """The argument of the Dockerfile's (last) INSTRUCTION."""
    found = re.findall(rf"^{instruction} (.+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert found, instruction
    return found[-1]


def test_every_object_is_valid_for_kubernetes_strictly():
    version = kubernetes_validate.utils.latest_version()
    objects = manifest()
    assert set(objects) == {"ConfigMap", "Deployment", "Service"}
    for obj in objects.values():
        kubernetes_validate.validate(obj, version, strict=True)
    wrong = copy.deepcopy(objects["Deployment"])  # the check can fail: a misspelt field is refused
    wrong["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = wrong["spec"]["template"]["spec"][
        "containers"][0].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProbes"):
        kubernetes_validate.validate(wrong, version, strict=True)


def test_the_probes_and_the_port_are_the_gateways():
    objects = manifest()
    c = container(objects)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": int(dockerfile("EXPOSE"))}
    asked = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["port"] == "http"
        asked[probe] = routing.route("GET", get["path"], {}).name
    assert asked == {"startupProbe": "liveness", "livenessProbe": "liveness", "readinessProbe": "readiness"}
    service = objects["Service"]["spec"]
    assert service["selector"] == objects["Deployment"]["spec"]["selector"]["matchLabels"]
    assert service["ports"][0]["targetPort"] == "http"


def test_it_runs_as_the_images_user_with_the_images_folders():
    pod = manifest()["Deployment"]["spec"]["template"]["spec"]
    uid, gid = dockerfile("USER").split(":")
    ctx = pod["securityContext"]
    assert ctx["runAsNonRoot"] is True and (str(ctx["runAsUser"]), str(ctx["runAsGroup"])) == (uid, gid)
    mounted = {m["mountPath"] for m in container(manifest())["volumeMounts"]}
    assert set(json.loads(dockerfile("VOLUME"))) <= mounted


def test_secrets_are_referenced_never_written():
    objects = manifest()
    c = container(objects)
    assert c["envFrom"] == [{"secretRef": {"name": "qwen-gateway"}}]
    assert all("value" not in e for e in c.get("env", []) if SECRET_NAMES.search(e["name"]))
    assert "Secret" not in objects
    urls = [a.split("=", 1)[1] for a in c["args"] if a.startswith("qwen_state_url=")]
    assert urls and all(check_url(u) == u for u in urls)  # the gateway's own check: no password in it


@pytest.mark.e2e
def test_the_accounts_config_map_is_a_registry_the_gateway_reads(tmp_path):
    """The ConfigMap's accounts.json where the pod mounts it (the state folder), read by the real qwen-auth with
    the key's variable set as the Secret sets it: the account is there and usable."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "accounts.json").write_text(manifest()["ConfigMap"]["data"]["accounts.json"])
    env = {"HOME": str(tmp_path), "QWEN_GATEWAY_HOME": str(state), "QWEN_DIR": str(tmp_path / ".qwen"),
           "DASHSCOPE_API_KEY": "sk-manifest-test", "PATH": ""}
    r = commands.run([BIN / "qwen-auth", "status"], env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("ds ")]
    assert rows and rows[0][:4] == ["ds", "key", "dashscope", "ok"], r.stdout
    assert "https://dashscope-intl.aliyuncs.com/compatible-mode/v1" in r.stdout


@pytest.mark.e2e
@pytest.mark.timeout(1200)  # a bound: the image may be built first
def test_the_pod_runs_as_kubelet_would_run_it(gateway_image, things, tmp_path):
    """The Deployment's container without a cluster: the image run by Docker with the pod's user, the Secret's
    variables, `emptyDir` folders (0777, as kubelet makes them), the ConfigMap's accounts.json mounted read-only
    at its subPath, and the args as printed but for the state URL (no PostgreSQL at postgres.example.com here).
    Kubelet's probes (GET to the pod's address, that address in Host, no key) answer 200, and a client calling
    the Service's name with a client key is served."""
    objects = manifest()
    c, pod = container(objects), objects["Deployment"]["spec"]["template"]["spec"]
    ctx = pod["securityContext"]
    pairs = list(zip(c["args"][::2], c["args"][1::2], strict=True))
    assert {flag for flag, _ in pairs} == {"--set"}
    args = [w for flag, value in pairs if not value.startswith("qwen_state_url=") for w in (flag, value)]
    secret = tmp_path / "secret.env"  # the Secret's variables (the manifest's comment names them)
    secret.write_text("PGPASSWORD=unused\nQWEN_GATEWAY_KEYS=pod-client-key\nDASHSCOPE_API_KEY=sk-pod-test\n")
    mounts: list[str] = []
    kinds = {v["name"]: v for v in pod["volumes"]}
    for m in c["volumeMounts"]:
        volume = kinds[m["name"]]
        if "emptyDir" in volume:
            folder = tmp_path / m["name"]
            folder.mkdir()
            folder.chmod(0o777)
            mounts += ["-v", f"{folder}:{m['mountPath']}"]
        else:
            data = objects["ConfigMap"]["data"][m["subPath"]]
            assert volume["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
            (tmp_path / m["subPath"]).write_text(data)
            mounts += ["-v", f"{tmp_path / m['subPath']}:{m['mountPath']}:{'ro' if m.get('readOnly') else 'rw'}"]
    name = things.run("pod", "--user", f"{ctx['runAsUser']}:{ctx['runAsGroup']}", "--env-file", str(secret), *mounts,
                      gateway_image, *args)
    ip = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name).stdout.strip()
    port = c["ports"][0]["containerPort"]

    def kubelet(probe: str) -> int:
        try:
            return httpx.get(f"http://{ip}:{port}{c[probe]['httpGet']['path']}", trust_env=False, timeout=5).status_code
        except httpx.TransportError:
            return 0
    until(lambda: kubelet("startupProbe") == 200, "the startup probe", limit=60)
    assert kubelet("livenessProbe") == 200 and kubelet("readinessProbe") == 200, things.logs(name)
    service = objects["Service"]["metadata"]["name"]
    r = httpx.get(f"http://{ip}:{port}/v1/models", headers={"Host": f"{service}:{port}",
                  "Authorization": "Bearer pod-client-key"}, trust_env=False, timeout=10)
    assert r.status_code == 200, r.text
    assert "qwen: account ds (key): ok" in things.logs(name)
