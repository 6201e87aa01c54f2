"""The rules of qwen-redirect as data: what to redirect where (`Plan`), the iptables/ip6tables commands
that install and remove it, and how they are printed. Nothing here changes the system: redirect.py applies
the commands (or prints them for --dry-run)."""

from __future__ import annotations

import ipaddress
import shlex
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

DEFAULT_HOSTS = ("api.openai.com",)
DEFAULT_GROUP = "qwen-gateway"
DEFAULT_PORTS = (443, 80)
DEFAULT_CHAIN = "QWEN_REDIRECT"
TOOLS = {4: "iptables", 6: "ip6tables"}

Command = list[str]
Resolver = Callable[[str], Sequence[str]]


class RedirectError(Exception):
    pass


@dataclass(frozen=True)
class Plan:
    """What to redirect where, and whose traffic to leave alone."""

    port: int
    addresses: tuple[str, ...] = ()  # destinations; empty with all_hosts
    all_hosts: bool = False
    dports: tuple[int, ...] = DEFAULT_PORTS
    owner: tuple[str, str] = ("gid", DEFAULT_GROUP)  # ("gid"|"uid", name or number) never redirected
    families: tuple[int, ...] = field(default=(4, 6))
    chain: str = DEFAULT_CHAIN

    def family_addresses(self, family: int) -> list[str]:
        return [a for a in self.addresses if ipaddress.ip_address(a).version == family]

    def used_families(self) -> list[int]:
        if self.all_hosts:
            return list(self.families)
        return [f for f in self.families if self.family_addresses(f)]


def resolve(host: str) -> list[str]:
    """Every address `host` resolves to here (IPv4 first), as the client would look it up."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as e:
        raise RedirectError(f"cannot resolve {host}: {e.strerror} (use --all-hosts to redirect every "
                            "destination)") from e
    return sorted({str(info[4][0]).split("%", 1)[0] for info in infos}, key=_address_order)


def _address_order(address: str):
    ip = ipaddress.ip_address(address)
    return ip.version, ip


def install_commands(plan: Plan) -> list[Command]:
    """The iptables/ip6tables commands that install `plan` (none of them removes anything)."""
    ports = ",".join(str(p) for p in plan.dports)
    owner_flag = "--gid-owner" if plan.owner[0] == "gid" else "--uid-owner"
    commands: list[Command] = []
    for family in plan.used_families():
        nat = [TOOLS[family], "-t", "nat"]
        commands.append([*nat, "-N", plan.chain])
        commands.append([*nat, "-A", plan.chain, "-m", "owner", owner_flag, str(plan.owner[1]), "-j", "RETURN"])
        destinations = [None] if plan.all_hosts else plan.family_addresses(family)
        for address in destinations:
            dest = ["-d", address] if address else []
            commands.append([*nat, "-A", plan.chain, "-p", "tcp", *dest, "-m", "multiport", "--dports", ports,
                             "-j", "REDIRECT", "--to-ports", str(plan.port)])
        commands.append([*nat, "-A", "OUTPUT", "-p", "tcp", "-j", plan.chain])
    return commands


def remove_commands(chain: str = DEFAULT_CHAIN, families: Sequence[int] = (4, 6)) -> list[Command]:
    """The commands that remove the chain and the jump to it (one pass; see `remove`)."""
    commands: list[Command] = []
    for family in families:
        nat = [TOOLS[family], "-t", "nat"]
        commands += [[*nat, "-D", "OUTPUT", "-p", "tcp", "-j", chain], [*nat, "-F", chain], [*nat, "-X", chain]]
    return commands


def format_commands(commands: Sequence[Command]) -> str:
    return "".join(shlex.join(c) + "\n" for c in commands)
