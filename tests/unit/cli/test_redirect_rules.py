"""qwen-redirect's rules as data (cli/redirect_rules.py): the plan's addresses by family, the iptables/ip6tables
commands that install it (the owner's exemption first, the jump last) and remove it, as docs/clients.md prints
them, and the name lookup — never on the network here: getaddrinfo is a stand-in.
tests/unit/cli/test_redirect.py runs the command."""

from __future__ import annotations

import socket

import pytest

from qwen_gateway.cli import redirect_rules
from qwen_gateway.cli.redirect_rules import (Plan, RedirectError, format_commands, install_commands, remove_commands,
                                             resolve)

DOCS_INSTALL = """\
iptables -t nat -N QWEN_REDIRECT
iptables -t nat -A QWEN_REDIRECT -m owner --gid-owner qwen-gateway -j RETURN
iptables -t nat -A QWEN_REDIRECT -p tcp -d 192.0.2.10 -m multiport --dports 443,80 -j REDIRECT --to-ports 8080
iptables -t nat -A QWEN_REDIRECT -p tcp -d 198.51.100.20 -m multiport --dports 443,80 -j REDIRECT --to-ports 8080
iptables -t nat -A OUTPUT -p tcp -j QWEN_REDIRECT
"""


def test_the_docs_install_rules():
    plan = Plan(port=8080, addresses=("192.0.2.10", "198.51.100.20"))
    assert format_commands(install_commands(plan)) == DOCS_INSTALL


def test_addresses_by_family_and_only_the_families_used():
    plan = Plan(port=8080, addresses=("192.0.2.10", "2001:db8::1", "198.51.100.20"))
    assert plan.family_addresses(4) == ["192.0.2.10", "198.51.100.20"]
    assert plan.family_addresses(6) == ["2001:db8::1"]
    assert plan.used_families() == [4, 6]
    assert Plan(port=1, addresses=("192.0.2.10",)).used_families() == [4]
    assert Plan(port=1, addresses=("2001:db8::1",), families=(4,)).used_families() == []  # --ipv4-only
    assert Plan(port=1, all_hosts=True).used_families() == [4, 6]


def test_all_hosts_a_uid_owner_other_ports_and_chain():
    plan = Plan(port=9000, all_hosts=True, dports=(443,), owner=("uid", "1001"), families=(6,), chain="QR")
    assert install_commands(plan) == [
        ["ip6tables", "-t", "nat", "-N", "QR"],
        ["ip6tables", "-t", "nat", "-A", "QR", "-m", "owner", "--uid-owner", "1001", "-j", "RETURN"],
        ["ip6tables", "-t", "nat", "-A", "QR", "-p", "tcp", "-m", "multiport", "--dports", "443", "-j", "REDIRECT",
         "--to-ports", "9000"],
        ["ip6tables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", "QR"]]


def test_a_plan_with_nothing_to_redirect_installs_nothing():
    assert install_commands(Plan(port=8080)) == []


def test_removal_undoes_the_jump_then_the_chain_in_each_family():
    assert format_commands(remove_commands()) == (
        "iptables -t nat -D OUTPUT -p tcp -j QWEN_REDIRECT\n"
        "iptables -t nat -F QWEN_REDIRECT\n"
        "iptables -t nat -X QWEN_REDIRECT\n"
        "ip6tables -t nat -D OUTPUT -p tcp -j QWEN_REDIRECT\n"
        "ip6tables -t nat -F QWEN_REDIRECT\n"
        "ip6tables -t nat -X QWEN_REDIRECT\n")
    assert remove_commands("X", (6,)) == [["ip6tables", "-t", "nat", "-D", "OUTPUT", "-p", "tcp", "-j", "X"],
                                         ["ip6tables", "-t", "nat", "-F", "X"], ["ip6tables", "-t", "nat", "-X", "X"]]


def test_printed_commands_are_quoted_for_a_shell():
    assert format_commands([["iptables", "-m", "owner", "--gid-owner", "my group"]]) == \
        "iptables -m owner --gid-owner 'my group'\n"
    assert format_commands([]) == ""


def test_resolve_gives_each_address_once_ipv4_first_without_zone(monkeypatch):
    def getaddrinfo(host, port, proto=0):
        assert (host, port, proto) == ("api.openai.com", None, socket.IPPROTO_TCP)
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::2", 0, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("198.51.100.20", 0)),
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1%eth0", 0, 0, 2)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.10", 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("198.51.100.20", 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.9", 0))]
    monkeypatch.setattr(redirect_rules.socket, "getaddrinfo", getaddrinfo)
    assert resolve("api.openai.com") == ["192.0.2.9", "192.0.2.10", "198.51.100.20", "2001:db8::2", "fe80::1"]


def test_a_name_that_does_not_resolve_says_what_to_do(monkeypatch):
    def getaddrinfo(host, port, proto=0):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(redirect_rules.socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(RedirectError) as e:
        resolve("no-such.invalid")
    assert str(e.value) == ("cannot resolve no-such.invalid: Name or service not known (use --all-hosts to redirect "
                            "every destination)")
