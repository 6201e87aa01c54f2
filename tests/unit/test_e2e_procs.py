"""tests/helpers/procs.py, the e2e tests' gateway process: what it is started with."""

from __future__ import annotations

from pathlib import Path

from helpers.procs import Gateway, free_port


def test_a_gateway_whose_test_names_no_state_folder_keeps_its_state_in_its_workdir(tmp_path, monkeypatch):
    """A gateway started with the worker's environment alone wrote the machine's ~/.qwen-gateway (a crash test's
    state.sqlite3 was found there after a run)."""
    monkeypatch.delenv("QWEN_GATEWAY_HOME", raising=False)
    assert Gateway(tmp_path / "gw").environment()["QWEN_GATEWAY_HOME"] == str(tmp_path / "gw" / "state")
    given = Gateway(tmp_path / "gw", env={"QWEN_GATEWAY_HOME": "/elsewhere"}).environment()
    assert given["QWEN_GATEWAY_HOME"] == "/elsewhere"
    own_home = Gateway(tmp_path / "gw", env={"HOME": str(tmp_path)}).environment()
    assert "QWEN_GATEWAY_HOME" not in own_home or Path(own_home["QWEN_GATEWAY_HOME"]) != tmp_path / "gw" / "state"


def test_free_ports_are_below_the_ephemeral_range_and_apart_per_worker(monkeypatch):
    """A port the kernel may hand to any port-0 bind or outgoing connection was taken between free_port and the
    bind of the mitmweb it was for ("Address already in use", one failure in a whole run)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {}
    for worker in ("gw0", "gw3"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        ports[worker] = {free_port() for _ in range(50)}
    assert len(ports["gw0"]) == len(ports["gw3"]) == 50  # in turn, none twice
    assert all(p < low for p in ports["gw0"] | ports["gw3"]), sorted(ports["gw0"] | ports["gw3"])[-3:]
    assert max(ports["gw0"]) < min(ports["gw3"])  # slices apart
