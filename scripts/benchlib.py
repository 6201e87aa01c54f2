"""Process plumbing for the benchmarks: emulator, bare mitmdump and gateway on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


# How long a target may take to start (QWEN_BENCH_START_S): under callgrind on a busy machine, more than 30 s
START_S = float(os.environ.get("QWEN_BENCH_START_S") or 30)


def _wait(path: Path, proc: subprocess.Popen, what: str) -> str:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            return path.read_text()
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early ({proc.returncode})")
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


class Procs:
    """Starts the three targets of every benchmark: direct, bare mitmproxy, gateway."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="qwen-bench-"))
        self.procs: list[subprocess.Popen] = []
        self.pids: dict[str, int] = {}

    def __enter__(self) -> "Procs":
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    def _spawn(self, cmd: list[str], name: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.procs.append(p)
        self.pids[name] = p.pid
        return p

    def emulator(self, *args: str) -> str:
        """The emulator (`args`: more of its flags, e.g. `--serve vllm`); $QWEN_BENCH_EMULATOR names another copy of
        scripts/qwen_emulator.py (e.g. a pinned one)."""
        pf = self.tmp / "emu.port"
        script = os.environ.get("QWEN_BENCH_EMULATOR", str(ROOT / "scripts" / "qwen_emulator.py"))
        p = self._spawn([sys.executable, script, "--port", "0",
                         "--port-file", str(pf), "--quiet", "--api-key", "sk-bench", *args], "emulator")
        return f"http://127.0.0.1:{int(_wait(pf, p, 'emulator'))}"

    def mitmdump(self, name: str, upstream: str, *, addon: bool, env: dict | None = None, tool: str = "mitmdump",
                 args: tuple[str, ...] = (), checkout: Path | None = None) -> str:
        """`checkout`: run another checkout's gateway (its own .venv and addons/qwen.py), e.g. a baseline."""
        pf = self.tmp / f"{name}.ports"
        args = [str((checkout / ".venv" / "bin" if checkout else BIN) / tool), "-q", "--set", f"confdir={self.tmp / 'conf'}", "--mode",
                f"reverse:{upstream}@127.0.0.1:0", "--set", "connection_strategy=lazy",
                "-s", str(ROOT / "tests" / "helpers" / "portfile.py"), *args]
        if tool == "mitmweb":
            args += ["--set", "web_open_browser=false", "--set", "web_port=0", "--set", "web_password=bench"]
        if addon:
            args += ["-s", str(checkout / "addons" / "qwen.py") if checkout else
                     os.environ.get("QWEN_BENCH_SCRIPT", str(ROOT / "addons" / "qwen.py"))]
        p = self._spawn(args, name, {"QWEN_TEST_PORTFILE": str(pf), **(env or {})})
        port = next(iter(json.loads(_wait(pf, p, name)).values()))
        return f"http://127.0.0.1:{port}"

    def gateway(self, emulator_url: str, name: str = "gateway", *, tool: str = "mitmdump",
                args: tuple[str, ...] = (), upstream: str | None = None, refreshable: bool = False,
                checkout: Path | None = None, env: dict | None = None) -> str:
        """The gateway with one OAuth login pointing at the emulator (token seeded there); `upstream`: another
        API base for it (e.g. a delay proxy in front of the emulator); `refreshable`: a real refresh token;
        `env`: more environment (client keys)."""
        token, refresh = "bench-token", "unused"
        if refreshable:
            issued = httpx.post(emulator_url + "/_emulator/tokens", json={"expires_in": 86400}, trust_env=False)
            issued.raise_for_status()
            token, refresh = issued.json()["access_token"], issued.json()["refresh_token"]
        else:
            httpx.post(emulator_url + "/_emulator/tokens", json={"access_token": token, "expires_in": 86400},
                       trust_env=False).raise_for_status()
        qdir = self.tmp / f"qwen-{name}"
        qdir.mkdir(mode=0o700)
        creds = {"access_token": token, "refresh_token": refresh, "token_type": "Bearer",
                 "resource_url": upstream or emulator_url, "expiry_date": int((time.time() + 86400) * 1000)}
        fd = os.open(qdir / "oauth_creds.json", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, json.dumps(creds, indent=2).encode())
        os.close(fd)
        env = {"QWEN_DIR": str(qdir), "QWEN_GATEWAY_HOME": str(self.tmp / f"state-{name}"),
               "QWEN_OAUTH_BASE_URL": emulator_url, **(env or {})}
        return self.mitmdump(name, "https://portal.qwen.ai", addon=True, env=env, tool=tool, args=args,
                             checkout=checkout)

    def delay_proxy(self, target: str, delay_ms: int, name: str = "far") -> str:
        """A forwarder adding `delay_ms` each way in front of `target` (scripts/delay_proxy.py)."""
        pf = self.tmp / f"{name}.port"
        p = self._spawn([sys.executable, str(ROOT / "scripts" / "delay_proxy.py"), "--target",
                         target.split("://", 1)[1], "--delay-ms", str(delay_ms), "--port-file", str(pf)], name)
        return f"http://127.0.0.1:{int(_wait(pf, p, name))}"

    def litellm(self, binary: str, upstream: str, name: str = "litellm") -> str:
        """LiteLLM's proxy with one OpenAI-compatible model ("qwen") in front of `upstream`."""
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = self.tmp / "litellm.yaml"
        cfg.write_text("model_list:\n  - model_name: qwen\n    litellm_params:\n      model: openai/qwen3-coder-plus\n"
                       f"      api_base: {upstream}/v1\n      api_key: sk-bench\n")
        p = self._spawn([binary, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)], name,
                        {"LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": "sk-bench-litellm-master"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/liveliness", trust_env=False, timeout=2).status_code == 200:
                    return f"http://127.0.0.1:{port}"
            except httpx.HTTPError:
                pass
            if p.poll() is not None:
                raise RuntimeError("litellm exited early")
            time.sleep(0.5)
        raise RuntimeError("litellm did not start")

    def cpu_s(self, name: str) -> float:
        """User + system CPU seconds the process `name` has used so far (from /proc)."""
        fields = open(f"/proc/{self.pids[name]}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self, name: str) -> float:
        for line in open(f"/proc/{self.pids[name]}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def machine() -> dict:
    import platform

    return {"python": platform.python_version(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "system": platform.platform(), "mitmproxy": _version("mitmproxy")}


def _version(pkg: str) -> str:
    from importlib.metadata import version

    return version(pkg)


def gateway_state_dir(procs: Procs, name: str = "gateway") -> Path:
    """The state folder ($QWEN_GATEWAY_HOME) of a gateway started with `Procs.gateway(..., name)`."""
    return procs.tmp / f"state-{name}"


def set_emulator_switches(emulator_url: str, **values) -> None:
    """Emulator behaviour for a benchmark (e.g. reply="ok": a short answer to a huge prompt)."""
    httpx.post(emulator_url + "/_emulator/switches", json=values, trust_env=False).raise_for_status()


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty sample."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(-(-len(xs) * q // 1)) - 1))]


def revision(checkout: Path) -> str:
    """The short commit of a checkout (a baseline's label)."""
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or checkout.name
    except OSError:
        return checkout.name
