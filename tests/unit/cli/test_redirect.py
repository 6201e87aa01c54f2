"""qwen-redirect (addons/gateway/cli/redirect.py): the rules it generates, what it prints, the order in which
it applies and removes them (against a fake iptables), and that docs/clients.md shows its real output.
The rules at work, inside a network namespace: tests/e2e/test_e2e_transparent.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qwen_gateway.cli import redirect

ROOT = Path(__file__).resolve().parents[3]
DOC_ADDRESSES = {"api.openai.com": ["192.0.2.10", "198.51.100.20", "2001:db8::10"]}


def fake_resolver(table):
    def resolve(host):
        if host not in table:
            raise redirect.RedirectError(f"cannot resolve {host}")
        return table[host]
    return resolve


def dry(capsys, *argv, table=DOC_ADDRESSES) -> tuple[int, str, str]:
    rc = redirect.main([*argv], resolver=fake_resolver(table))
    out, err = capsys.readouterr()
    return rc, out, err


def test_default_install_redirects_443_and_80_of_the_intercepted_host_except_the_proxy_group(capsys):
    rc, out, _ = dry(capsys, "install", "--port", "8080", "--dry-run", table={"api.openai.com": ["192.0.2.10"]})
    assert rc == 0
    assert out.splitlines() == [
        "iptables -t nat -N QWEN_REDIRECT",
        "iptables -t nat -A QWEN_REDIRECT -m owner --gid-owner qwen-gateway -j RETURN",
        "iptables -t nat -A QWEN_REDIRECT -p tcp -d 192.0.2.10 -m multiport --dports 443,80 -j REDIRECT "
        "--to-ports 8080",
        "iptables -t nat -A OUTPUT -p tcp -j QWEN_REDIRECT",
    ]


def test_ipv6_addresses_get_ip6tables_rules_and_ipv4_only_drops_them():
    plan = redirect.Plan(port=9000, addresses=("192.0.2.10", "2001:db8::10"))
    cmds = redirect.install_commands(plan)
    v6 = [c for c in cmds if c[0] == "ip6tables"]
    assert ["ip6tables", "-t", "nat", "-A", "QWEN_REDIRECT", "-p", "tcp", "-d", "2001:db8::10", "-m", "multiport",
            "--dports", "443,80", "-j", "REDIRECT", "--to-ports", "9000"] in v6
    assert not any("2001:db8::10" in c for c in cmds if c[0] == "iptables")
    only4 = redirect.install_commands(redirect.Plan(port=9000, addresses=plan.addresses, families=(4,)))
    assert {c[0] for c in only4} == {"iptables"}


def test_owner_exclusion_comes_before_any_redirect_and_the_jump_comes_last():
    """Otherwise the proxy's own upstream connections would be redirected back to it, or traffic
    redirected before the chain is complete."""
    for plan in (redirect.Plan(port=1, addresses=("192.0.2.1", "192.0.2.2")),
                 redirect.Plan(port=1, all_hosts=True, owner=("uid", "1234"))):
        for tool in ("iptables", "ip6tables"):
            cmds = [c for c in redirect.install_commands(plan) if c[0] == tool]
            if not cmds:
                continue
            assert cmds[0][3:] == ["-N", "QWEN_REDIRECT"]
            assert "RETURN" in cmds[1] and "-m" in cmds[1] and "owner" in cmds[1]
            assert all("REDIRECT" in c for c in cmds[2:-1])
            assert cmds[-1][3:] == ["-A", "OUTPUT", "-p", "tcp", "-j", "QWEN_REDIRECT"]


def test_all_hosts_user_ports_and_chain_options(capsys):
    rc, out, _ = dry(capsys, "install", "--all-hosts", "--user", "proxyuser", "--dport", "443", "--port", "9443",
                     "--chain", "MINE", "--dry-run")
    assert rc == 0
    assert "iptables -t nat -A MINE -m owner --uid-owner proxyuser -j RETURN" in out
    assert "iptables -t nat -A MINE -p tcp -m multiport --dports 443 -j REDIRECT --to-ports 9443" in out
    assert "ip6tables -t nat -A MINE -p tcp -m multiport --dports 443 -j REDIRECT --to-ports 9443" in out
    assert " -d " not in out and "QWEN_REDIRECT" not in out


def test_hosts_are_resolved_and_literal_addresses_kept(capsys):
    rc, out, _ = dry(capsys, "install", "--host", "a.example", "--host", "203.0.113.5", "--dry-run",
                     table={"a.example": ["192.0.2.7", "192.0.2.7"]})
    assert rc == 0
    assert re.findall(r"-d (\S+)", out) == ["192.0.2.7", "203.0.113.5"]


@pytest.mark.parametrize("argv,message", [
    (["install", "--host", "nowhere.example", "--dry-run"], "cannot resolve nowhere.example"),
    (["install", "--all-hosts", "--host", "a.example", "--dry-run"], "exclude each other"),
    (["install", "--port", "70000", "--dry-run"], "not a TCP port"),
    (["install", "--host", "2001:db8::1", "--ipv4-only", "--dry-run"], "nothing to redirect"),
    (["run", "--dry-run"], "run needs a command"),
])
def test_errors_are_reported_with_exit_code_2(capsys, argv, message):
    rc, out, err = dry(capsys, *argv)
    assert rc == 2 and out == "" and message in err


def test_remove_dry_run_prints_exactly_the_chain_removal(capsys):
    rc, out, _ = dry(capsys, "remove", "--dry-run", "--ipv4-only")
    assert rc == 0
    assert out.splitlines() == ["iptables -t nat -D OUTPUT -p tcp -j QWEN_REDIRECT",
                                "iptables -t nat -F QWEN_REDIRECT", "iptables -t nat -X QWEN_REDIRECT"]


def test_run_dry_run_prints_install_command_and_removal(capsys):
    rc, out, _ = dry(capsys, "run", "--port", "8080", "--group", "4242", "--run-as", "alice", "--dry-run", "--",
                     "mitmdump", "--mode", "transparent", table={"api.openai.com": ["192.0.2.10"]})
    assert rc == 0
    lines = out.splitlines()
    assert lines[:4] == redirect.format_commands(redirect.install_commands(redirect.Plan(
        port=8080, addresses=("192.0.2.10",), owner=("gid", "4242")))).splitlines()
    assert lines[4] == "# then, as user alice, group 4242: mitmdump --mode transparent"
    assert lines[6:] == ["iptables -t nat -D OUTPUT -p tcp -j QWEN_REDIRECT", "iptables -t nat -F QWEN_REDIRECT",
                         "iptables -t nat -X QWEN_REDIRECT"]


def test_the_docs_show_the_real_dry_run_output(capsys):
    """docs/clients.md prints `install --dry-run` and `remove --dry-run` for example addresses: the
    output must be what qwen-redirect prints for them."""
    doc = (ROOT / "docs" / "clients.md").read_text()
    block = re.search(r"```console\n(.*?)```", doc, re.S).group(1)
    sessions = re.split(r"^\$ ", block, flags=re.M)[1:]
    assert [s.splitlines()[0] for s in sessions] == [".venv/bin/qwen-redirect install --port 8080 --dry-run",
                                                     ".venv/bin/qwen-redirect remove --dry-run"]
    for session in sessions:
        command, _, shown = session.partition("\n")
        rc, out, _ = dry(capsys, *command.split()[1:])
        assert rc == 0 and out == shown, command
    for address in DOC_ADDRESSES["api.openai.com"]:
        assert address in doc


# ---- applying, against a fake iptables -------------------------------------------------------------------


class FakeIptables:
    """Enough of iptables' nat table for install/remove: chains, rules, the OUTPUT jump."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.tables = {"iptables": {"OUTPUT": []}, "ip6tables": {"OUTPUT": []}}
        self.log: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, cmd):
        self.log.append(cmd)
        tool, args = cmd[0], cmd[3:]
        chains = self.tables[tool]
        ok = subprocess.CompletedProcess(cmd, 0, "", "")
        bad = subprocess.CompletedProcess(cmd, 1, "", "iptables: No chain/target/match by that name.\n")
        if self.fail_on and self.fail_on in " ".join(cmd):
            return bad
        op, chain, rule = args[0], args[1], args[2:]
        if op == "-S":
            return ok if chain in chains else bad
        if op == "-N":
            if chain in chains:
                return bad
            chains[chain] = []
        elif op == "-A":
            chains[chain].append(rule)
        elif op == "-D":
            if rule not in chains.get(chain, []):
                return bad
            chains[chain].remove(rule)
        elif op == "-F":
            chains[chain] = []
        elif op == "-X":
            if chains.get(chain) or any(r[-1] == chain for rules in chains.values() for r in rules):
                return bad  # not empty, or still referenced
            del chains[chain]
        return ok


@pytest.fixture
def fake(monkeypatch):
    ipt = FakeIptables()
    monkeypatch.setattr(redirect, "_run", ipt)
    return ipt


PLAN = redirect.Plan(port=8080, addresses=("192.0.2.10", "2001:db8::10"), owner=("gid", str(os.getgid())))


def test_install_then_remove_leaves_nothing_and_reinstall_does_not_duplicate(fake):
    redirect.install(PLAN)
    redirect.install(PLAN)  # replaces, no second jump
    for tool in ("iptables", "ip6tables"):
        assert fake.tables[tool]["OUTPUT"] == [["-p", "tcp", "-j", "QWEN_REDIRECT"]]
        assert len(fake.tables[tool]["QWEN_REDIRECT"]) == 2
    redirect.remove()
    assert fake.tables == {"iptables": {"OUTPUT": []}, "ip6tables": {"OUTPUT": []}}


def test_remove_leaves_other_rules_alone(fake):
    fake.tables["iptables"]["OUTPUT"].append(["-p", "tcp", "-j", "DOCKER"])
    fake.tables["iptables"]["DOCKER"] = [["-j", "RETURN"]]
    redirect.install(PLAN)
    redirect.remove()
    assert fake.tables["iptables"] == {"OUTPUT": [["-p", "tcp", "-j", "DOCKER"]], "DOCKER": [["-j", "RETURN"]]}


def test_a_failed_install_leaves_nothing_behind(monkeypatch):
    ipt = FakeIptables(fail_on="ip6tables -t nat -A QWEN_REDIRECT -p tcp")
    monkeypatch.setattr(redirect, "_run", ipt)
    with pytest.raises(redirect.RedirectError, match="failed"):
        redirect.install(PLAN)
    assert ipt.tables == {"iptables": {"OUTPUT": []}, "ip6tables": {"OUTPUT": []}}


@pytest.mark.e2e  # starts a process
def test_run_installs_runs_in_the_excluded_group_and_removes_on_exit(fake, tmp_path):
    seen = tmp_path / "seen"
    code = ("import os,sys; open(sys.argv[1],'w').write(str(os.getgid())); "
            "sys.exit(3)")  # the command's exit code is passed on, and the rules go anyway
    rc = redirect.run(PLAN, [sys.executable, "-c", code, str(seen)])
    assert rc == 3
    assert seen.read_text() == str(os.getgid())
    assert fake.tables == {"iptables": {"OUTPUT": []}, "ip6tables": {"OUTPUT": []}}
    ops = [c[3] for c in fake.log if c[0] == "iptables"]
    assert ops.index("-N") < ops.index("-X", ops.index("-N"))  # installed first, removed last


@pytest.mark.e2e  # starts a process
@pytest.mark.skipif(os.geteuid() != 0, reason="changing a process's group needs root")
def test_run_changes_the_command_group(fake, tmp_path):
    seen = tmp_path / "seen"
    plan = redirect.Plan(port=8080, addresses=("192.0.2.10",), owner=("gid", "34343"))
    rc = redirect.run(plan, [sys.executable, "-c", "import os,sys; open(sys.argv[1],'w').write("
                             "f'{os.getgid()} {os.getegid()} {os.getgroups()}')", str(seen)])
    assert rc == 0 and seen.read_text() == "34343 34343 []"


def test_missing_group_is_explained(fake):
    with pytest.raises(redirect.RedirectError, match="groupadd --system no-such-group-here"):
        redirect.run(redirect.Plan(port=1, addresses=("192.0.2.1",), owner=("gid", "no-such-group-here")), ["true"])
    assert fake.log == []  # nothing was installed


@pytest.mark.e2e  # starts a process
@pytest.mark.skipif(os.geteuid() != 0, reason="changing a process's user and group needs root")
def test_run_as_a_user_keeps_that_user_home_in_the_excluded_group(fake):
    import pwd
    import tempfile

    nobody = pwd.getpwnam("nobody")
    fd, name = tempfile.mkstemp(dir="/tmp")  # pytest's tmp_path is not reachable for nobody
    os.close(fd)
    seen = Path(name)
    seen.chmod(0o666)
    plan = redirect.Plan(port=8080, addresses=("192.0.2.10",), owner=("gid", "34343"))
    rc = redirect.run(plan, ["/bin/sh", "-c", 'echo "$(id -u) $(id -g) $(id -G) $HOME $USER" > "$0"', str(seen)],
                      run_as="nobody")
    text = seen.read_text()
    seen.unlink()
    assert rc == 0
    assert text.split() == [str(nobody.pw_uid), "34343", "34343", nobody.pw_dir, "nobody"]
    assert fake.tables == {"iptables": {"OUTPUT": []}, "ip6tables": {"OUTPUT": []}}
