"""qwen-gateway: run the gateway (mitmdump with the addon), or install it as a systemd user service.

    qwen-gateway [ARGS...]                   mitmdump -s addons/qwen.py --mode reverse:https://portal.qwen.ai
                                             -p 8080 --listen-host 127.0.0.1 ARGS...
    qwen-gateway mitmweb [ARGS...]           the same under mitmweb (UI at http://127.0.0.1:8081)
    qwen-gateway install-service [--dry-run] [--env-file FILE] [-- ARGS...]
    qwen-gateway uninstall-service [--dry-run]
    qwen-gateway --version                   the gateway's version, mitmproxy's, and whether each seam fits it

ARGS are mitmproxy's own (`--set qwen_default_model=qwen3-coder-plus`, `-p 9000`, `--mode …`,
`--listen-host …`); each default above is left out when ARGS set that option themselves. The command it
runs is printed first, on stderr.

install-service writes ~/.config/systemd/user/qwen-gateway.service ($XDG_CONFIG_HOME is honoured): it
runs `qwen-gateway ARGS...` with the settings this shell has (QWEN_DIR, QWEN_GATEWAY_HOME,
QWEN_OAUTH_BASE_URL, … — never keys) and reads the keys from an environment file,
~/.config/qwen-gateway/env by default, which it creates (mode 0600, with the names of the variables your
key accounts use) if it does not exist and never overwrites. Then:

    systemctl --user daemon-reload && systemctl --user enable --now qwen-gateway
    journalctl --user -u qwen-gateway -f      # the request lines
    loginctl enable-linger "$USER"            # keep it running while you are logged out

uninstall-service stops and disables the service (when systemctl can reach your user manager) and
removes the unit; the environment file, with your keys, is left where it is.
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import socket
import shutil
import subprocess
import sys
from pathlib import Path

from .service_unit import env_template, key_variables, unit_text
from .pipes import quiet_when_stdout_closes

UNIT_NAME = "qwen-gateway.service"
REVERSE_TARGET = "reverse:https://portal.qwen.ai"
PORT = "8080"
HOST = "127.0.0.1"
# Settings the service gets from the shell that installs it (names and values are not secret).

def addon_script() -> Path:
    """addons/qwen.py: the package is addons/gateway (installed editable by scripts/setup.sh)."""
    return Path(__file__).resolve().parents[2] / "qwen.py"


def _sets(args: list[str], long: str, short: str | None, option: str) -> bool:
    """Whether mitmproxy ARGS set an option: `--long X`, `--long=X`, `-sX`/`-s X`, `--set option=X`."""
    for i, a in enumerate(args):
        if a == long or a.startswith(long + "=") or (short and a.startswith(short)):
            return True
        if a == "--set" and i + 1 < len(args) and args[i + 1].startswith(option + "="):
            return True
        if a.startswith("--set=") and a[len("--set="):].startswith(option + "="):
            return True
    return False


def mitmproxy_args(args: list[str]) -> list[str]:
    """The gateway's defaults (those of scripts/gateway.sh) followed by the user's ARGS."""
    out = ["-s", str(addon_script())]
    if not _sets(args, "--mode", "-m", "mode"):
        out += ["--mode", REVERSE_TARGET]
    if not _sets(args, "--listen-port", "-p", "listen_port"):
        out += ["-p", PORT]
    if not _sets(args, "--listen-host", None, "listen_host"):
        out += ["--listen-host", HOST]
    return out + list(args)


def _value(args: list[str], long: str, short: str, option: str) -> str | None:
    """The last value ARGS give an option (the forms of `_sets`), or None."""
    found = None
    for i, a in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else None
        if a in (long, short) or a == "--set":
            v = nxt if a != "--set" else (nxt[len(option) + 1:] if nxt and nxt.startswith(option + "=") else None)
            found = v if v is not None else found
        elif a.startswith((long + "=", f"--set={option}=")):
            found = a.partition("=")[2].removeprefix(option + "=")
        elif a.startswith(short) and len(a) > len(short):
            found = a[len(short):]
    return found


def port_taken(args: list[str]) -> str | None:
    """Where the gateway would listen, when another program holds it: mitmproxy would fail and suggest a
    `--mode …@PORT`; the gateway's way is -p. None when free, or when the user's own --mode says the ports."""
    if _sets(args, "--mode", "-m", "mode"):
        return None
    host = _value(args, "--listen-host", "--listen-host", "listen_host") or HOST
    port = _value(args, "--listen-port", "-p", "listen_port") or PORT
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as mitmproxy binds: TIME_WAIT is no owner
            s.bind((host, int(port)))
    except OSError as e:
        return f"{host}:{port}" if e.errno == errno.EADDRINUSE else None
    except ValueError:  # not a port number: mitmproxy says so
        return None
    return None


def tool_path(tool: str) -> Path:
    """mitmdump/mitmweb of this Python environment (the console scripts sit next to the interpreter)."""
    here = Path(sys.executable).parent / tool
    if here.exists():
        return here
    found = shutil.which(tool)
    if found is None:
        raise SystemExit(f"qwen-gateway: {tool} not found next to {sys.executable} or on PATH")
    return Path(found)


def run(argv: list[str]) -> int:
    tool = "mitmdump"
    if argv and argv[0] in ("mitmdump", "mitmweb"):
        tool, argv = argv[0], argv[1:]
    script = addon_script()
    if not script.exists():
        print(f"qwen-gateway: {script} is missing: install the gateway from its repository with "
              "`pip install -e .` (scripts/setup.sh does)", file=sys.stderr)
        return 1
    if (taken := port_taken(argv)) is not None:
        print(f"qwen-gateway: {taken} is in use (another gateway, or another program): start this one on another "
              "port with -p PORT (`qwen-gateway -p 8090`) and point its clients there, or stop what holds it",
              file=sys.stderr)
        return 1
    exe = tool_path(tool)
    cmd = [str(exe), *mitmproxy_args(argv)]
    print("qwen-gateway: " + shlex.join([tool, *cmd[1:]]), file=sys.stderr, flush=True)
    os.execv(exe, cmd)
    return 1  # not reached


# ---- the systemd user service -----------------------------------------------------------------------


def config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def unit_path() -> Path:
    return config_home() / "systemd" / "user" / UNIT_NAME


def default_env_file() -> Path:
    return config_home() / "qwen-gateway" / "env"


def _named_in(path: Path) -> set[str]:
    try:
        text = path.read_text()
    except OSError:
        return set()
    return {ln.split("=", 1)[0].strip().removeprefix("export ").strip()
            for ln in text.splitlines() if "=" in ln and not ln.lstrip().startswith("#")}


def install(args: list[str], env_file: Path | None, dry_run: bool, out=sys.stdout) -> int:
    env_file = (env_file or default_env_file()).expanduser().absolute()
    unit = unit_path()
    text = unit_text(args, env_file)
    variables = key_variables()
    if dry_run:
        print(f"# would write {unit}:", file=out)
        print(text, file=out)
        if env_file.exists():
            print(f"# {env_file} exists: left as it is", file=out)
        else:
            print(f"# would create {env_file} (mode 0600):", file=out)
            print(env_template(variables), file=out)
        return 0
    unit.parent.mkdir(parents=True, exist_ok=True)
    tmp = unit.with_name(unit.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, unit)
    print(f"Wrote {unit}.", file=out)
    if env_file.exists():
        print(f"Kept {env_file} as it is.", file=out)
        missing = [v for v in variables if v not in _named_in(env_file)]
        if missing:
            print(f"Note: {env_file} sets no {', '.join(missing)} (used by your key accounts).", file=out)
    else:
        env_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(env_template(variables))
        print(f"Created {env_file} (mode 0600): put your keys there.", file=out)
    print("Then: systemctl --user daemon-reload && systemctl --user enable --now qwen-gateway", file=out)
    return 0


def uninstall(dry_run: bool, out=sys.stdout) -> int:
    unit = unit_path()
    systemctl = shutil.which("systemctl")
    steps = []
    if systemctl:
        steps.append([systemctl, "--user", "disable", "--now", UNIT_NAME])
    if dry_run:
        for s in steps:
            print("# would run: " + shlex.join(s), file=out)
        print(f"# would remove {unit}" if unit.exists() else f"# {unit} does not exist", file=out)
        return 0
    for s in steps:
        r = subprocess.run(s, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:  # no user manager here (a container, no login session): nothing runs it
            print(f"Note: `{shlex.join(s[1:])}` failed: {(r.stderr or r.stdout).strip()[:200]}", file=out)
    if unit.exists():
        unit.unlink()
        print(f"Removed {unit}.", file=out)
        if systemctl:
            subprocess.run([systemctl, "--user", "daemon-reload"], capture_output=True, timeout=30)
    else:
        print(f"{unit} does not exist.", file=out)
    env_file = default_env_file()
    if env_file.exists():
        print(f"Left {env_file} (your keys) in place; delete it yourself if you no longer need it.", file=out)
    return 0


DESCRIPTIONS = {
    "install-service": f"Write the systemd user unit {UNIT_NAME} (running `qwen-gateway ARGS...`) and, if it does "
                       "not exist, its environment file for keys (mode 0600; never overwritten).",
    "uninstall-service": "Stop and disable the service (when systemctl reaches your user manager) and remove its "
                         "unit; the environment file stays.",
}


def version_text(tool: Path) -> str:
    """The gateway's version, mitmproxy's own lines, and whether each seam fits the mitmproxy installed."""
    from ..seams import SEAMS, software

    theirs = subprocess.run([str(tool), "--version"], capture_output=True, text=True, timeout=60).stdout.rstrip()
    ours = software()
    left_out = ours["seams"]["left_out"]
    seams = (f"Seams:     all {len(SEAMS)} fit (written against mitmproxy {ours['seams']['written_against']})"
             if not left_out
             else "Seams:     left out: " + "; ".join(f"{s} (changed: {', '.join(n)})" for s, n in left_out.items()))
    return f"qwen-gateway {ours['gateway']}\n{theirs}\n{seams}"

@quiet_when_stdout_closes
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    if argv in (["--version"], ["mitmdump", "--version"], ["mitmweb", "--version"]):
        print(version_text(tool_path("mitmdump")))
        return 0
    if argv and argv[0] in ("install-service", "uninstall-service"):
        ap = argparse.ArgumentParser(prog=f"qwen-gateway {argv[0]}", description=DESCRIPTIONS[argv[0]])
        ap.add_argument("--dry-run", action="store_true", help="print what would be written or run; change nothing")
        if argv[0] == "install-service":
            ap.add_argument("--env-file", type=Path, metavar="FILE",
                            help=f"the service's environment file (default {default_env_file()})")
            ap.add_argument("args", nargs=argparse.REMAINDER,
                            help="mitmproxy arguments for the service, after `--`")
        a = ap.parse_args(argv[1:])
        if argv[0] == "uninstall-service":
            return uninstall(a.dry_run)
        args = a.args[1:] if a.args[:1] == ["--"] else a.args
        return install(args, a.env_file, a.dry_run)
    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
