"""qwen-redirect: the iptables rules that send an unchanged client's OpenAI traffic to mitmproxy's
transparent listener (Linux, as root).

    qwen-redirect install --port 8080            redirect TCP 443 and 80 to api.openai.com's addresses
                                                 to 127.0.0.1:8080, except traffic of the group
                                                 mitmproxy runs as (default: qwen-gateway)
    qwen-redirect remove                         remove exactly those rules (their own chain)
    qwen-redirect run --port 8080 --run-as "$USER" -- mitmdump -s addons/qwen.py --mode transparent
                                                 install, run the command in that group (as that user),
                                                 remove the rules when it exits
    --dry-run                                    print the commands instead of running them

Options (install and run):
    --host HOST      a host whose traffic is redirected (repeat; default api.openai.com), resolved now
    --all-hosts      redirect every destination instead (the addresses of CDN hosts change)
    --group GROUP    name or number of the group mitmproxy runs as: its traffic is never redirected,
                     so its own upstream connections are not sent back to itself (default qwen-gateway)
    --user USER      exclude a user instead of a group
    --dport PORT     destination port to redirect (repeat; default 443 and 80)
    --ipv4-only      no ip6tables rules
    --chain NAME     the chain holding the rules (default QWEN_REDIRECT)

The rules live in one chain of the nat table, jumped to from OUTPUT; `remove` deletes the jump and
the chain and nothing else. `install` replaces an earlier install. REDIRECT sends locally generated
connections to 127.0.0.1 (IPv4) or ::1 (IPv6) on --port, where mitmproxy's transparent listener waits.
"""

from __future__ import annotations

import argparse
import grp
import ipaddress
import os
import pwd
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence

from .pipes import quiet_when_stdout_closes
from .redirect_rules import (DEFAULT_CHAIN, DEFAULT_GROUP, DEFAULT_HOSTS, DEFAULT_PORTS, TOOLS, Command, Plan,
    RedirectError, Resolver, format_commands, install_commands, remove_commands, resolve)

MAX_JUMPS = 16  # removing duplicate jumps left by earlier installs: at most this many


# ---- applying ---------------------------------------------------------------------------------------


def _run(cmd: Command) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as e:
        raise RedirectError(f"{cmd[0]} not found: install iptables (Debian: apt-get install iptables)") from e


def _chain_exists(tool: str, chain: str) -> bool:
    try:
        return _run([tool, "-t", "nat", "-S", chain]).returncode == 0
    except RedirectError:
        return False


def remove(chain: str = DEFAULT_CHAIN, families: Sequence[int] = (4, 6)) -> list[Command]:
    """Remove the jump(s) to `chain` and the chain itself; returns the commands that succeeded."""
    done: list[Command] = []
    for family in families:
        tool = TOOLS[family]
        if not _chain_exists(tool, chain):
            continue
        nat = [tool, "-t", "nat"]
        jump = [*nat, "-D", "OUTPUT", "-p", "tcp", "-j", chain]
        for _ in range(MAX_JUMPS):
            if _run(jump).returncode != 0:
                break
            done.append(jump)
        for cmd in ([*nat, "-F", chain], [*nat, "-X", chain]):
            r = _run(cmd)
            if r.returncode != 0:
                raise RedirectError(f"{shlex.join(cmd)} failed: {r.stderr.strip()}")
            done.append(cmd)
    return done


def install(plan: Plan) -> list[Command]:
    """Replace any earlier install of `plan.chain`, then apply `plan`. On failure, nothing stays."""
    remove(plan.chain, plan.families)
    commands = install_commands(plan)
    for cmd in commands:
        r = _run(cmd)
        if r.returncode != 0:
            remove(plan.chain, plan.families)
            raise RedirectError(f"{shlex.join(cmd)} failed: {r.stderr.strip() or r.returncode}")
    return commands


def _owner_ids(owner: tuple[str, str]) -> tuple[int | None, int, list[int]]:
    """(uid or None, gid, supplementary groups) a command runs with so that the owner match excludes it."""
    kind, value = owner
    if kind == "gid":
        try:
            gid = int(value) if value.isdigit() else grp.getgrnam(value).gr_gid
        except KeyError:
            raise RedirectError(f"group {value} does not exist: create it (groupadd --system {value}) or pass "
                                "--group with an existing group or a number") from None
        return None, gid, []
    try:
        pw = pwd.getpwuid(int(value)) if value.isdigit() else pwd.getpwnam(value)
    except KeyError:
        raise RedirectError(f"user {value} does not exist") from None
    return pw.pw_uid, pw.pw_gid, sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid)))


def run(plan: Plan, command: Sequence[str], run_as: str | None = None) -> int:
    """Install the rules, run `command` as the excluded user/group, remove the rules when it exits.
    `run_as`: with a group exclusion, run as this user (its home, its files) in the excluded group."""
    uid, gid, groups = _owner_ids(plan.owner)
    env = None
    if run_as:
        if uid is not None:
            raise RedirectError("--run-as goes with --group (with --user the command runs as that user)")
        try:
            pw = pwd.getpwuid(int(run_as)) if run_as.isdigit() else pwd.getpwnam(run_as)
        except KeyError:
            raise RedirectError(f"user {run_as} does not exist") from None
        uid = pw.pw_uid
        env = {**os.environ, "HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name}
    install(plan)
    try:
        child = subprocess.Popen(list(command), user=uid, group=gid, extra_groups=groups, env=env)
    except BaseException:
        remove(plan.chain, plan.families)
        raise

    def forward(signum, _frame):
        if child.poll() is None:
            child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    # Ctrl-C reaches the command from the terminal by itself; this process only waits for it.
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        remove(plan.chain, plan.families)


# ---- command line -------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qwen-redirect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--chain", default=DEFAULT_CHAIN, help=f"chain holding the rules (default {DEFAULT_CHAIN})")
        sp.add_argument("--dry-run", action="store_true", help="print the commands, change nothing")
        sp.add_argument("--ipv4-only", action="store_true", help="leave ip6tables alone")

    for name in ("install", "run"):
        sp = sub.add_parser(name, help="install the rules" if name == "install"
                            else "install, run a command as the excluded group/user, remove on exit")
        sp.add_argument("--port", type=int, default=8080, help="mitmproxy's transparent listener (default 8080)")
        sp.add_argument("--host", action="append", dest="hosts", metavar="HOST",
                        help="host whose traffic is redirected (repeat; default api.openai.com)")
        sp.add_argument("--all-hosts", action="store_true", help="redirect every destination")
        sp.add_argument("--dport", action="append", type=int, dest="dports", metavar="PORT",
                        help="destination port (repeat; default 443 and 80)")
        who = sp.add_mutually_exclusive_group()
        who.add_argument("--group", help=f"group mitmproxy runs as, never redirected (default {DEFAULT_GROUP})")
        who.add_argument("--user", help="user mitmproxy runs as, never redirected (instead of --group)")
        common(sp)
        if name == "run":
            sp.add_argument("--run-as", metavar="USER",
                            help="run the command as USER (its home and files) in the excluded group")
            sp.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS… (normally mitmdump)")
    common(sub.add_parser("remove", help="remove the rules"))
    return p


def plan_from_args(args: argparse.Namespace, resolver: Resolver = resolve) -> Plan:
    if not 0 < args.port < 65536:
        raise RedirectError(f"--port {args.port} is not a TCP port")
    if args.all_hosts and args.hosts:
        raise RedirectError("--all-hosts and --host exclude each other")
    addresses: list[str] = []
    if not args.all_hosts:
        for host in args.hosts or DEFAULT_HOSTS:
            try:
                found = [str(ipaddress.ip_address(host))]
            except ValueError:
                found = list(resolver(host))
            for address in found:
                if address not in addresses:
                    addresses.append(address)
    families = (4,) if args.ipv4_only else (4, 6)
    owner = ("uid", args.user) if args.user else ("gid", args.group or DEFAULT_GROUP)
    plan = Plan(port=args.port, addresses=tuple(addresses), all_hosts=args.all_hosts,
                dports=tuple(args.dports or DEFAULT_PORTS), owner=owner, families=families, chain=args.chain)
    if not plan.used_families():
        raise RedirectError("nothing to redirect: the hosts have no address of an allowed family")
    return plan


@quiet_when_stdout_closes
def main(argv: Sequence[str] | None = None, resolver: Resolver = resolve) -> int:
    args = _parser().parse_args(argv)
    families = (4,) if args.ipv4_only else (4, 6)
    try:
        if args.action == "remove":
            if args.dry_run:
                sys.stdout.write(format_commands(remove_commands(args.chain, families)))
                return 0
            done = remove(args.chain, families)
            sys.stdout.write(format_commands(done) if done else f"qwen-redirect: no {args.chain} rules installed\n")
            return 0
        plan = plan_from_args(args, resolver)
        if args.action == "install":
            if not args.dry_run:
                _owner_ids(plan.owner)  # a clear message for a missing group/user, before iptables
            sys.stdout.write(format_commands(install_commands(plan) if args.dry_run else install(plan)))
            return 0
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            raise RedirectError("run needs a command: qwen-redirect run [options] -- COMMAND…")
        if args.dry_run:
            sys.stdout.write(format_commands(install_commands(plan)))
            who = f"user {plan.owner[1]}" if plan.owner[0] == "uid" else f"group {plan.owner[1]}"
            if args.run_as:
                who = f"user {args.run_as}, {who}"
            sys.stdout.write(f"# then, as {who}: {shlex.join(command)}\n# then, when it exits:\n")
            sys.stdout.write(format_commands(remove_commands(plan.chain, plan.used_families())))
            return 0
        return run(plan, command, args.run_as)
    except RedirectError as e:
        print(f"qwen-redirect: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
