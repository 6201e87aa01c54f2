"""The gateway outlives its log (issue 60, item 1): its standard output — the terminal log, the request lines — is a
file on a tmpfs of its own mount namespace (`unshare -m`), filled to ENOSPC while clients are served, alone or with
the state folder on the same tmpfs (the docs' own `qwen-gateway … > ~/gateway.log 2>&1 &` with `~/.qwen-gateway`
on one disk). mitmproxy's terminal log calls `sys.exit(1)` at the first line it cannot write; the gateway drops
the line instead, counts it, and says how many once writing works again (seams/terminal_log.py). Requests keep
being answered, the process lives, no ledger row is lost; the state folder keeps its own outage handling."""

from __future__ import annotations

import re

import pytest

from helpers.home import CODING_PLAN, Home
from helpers.ledger import ledger_rows
from helpers.procs import Gateway, until
from e2e.test_e2e_shared_state import client
from e2e.test_e2e_storage_faults import (_chat_goes_on, _fill, _inside, _ledger_rows, _mount_namespace_problem,
                                         _refused_before_upstream, _rows_settle, _served_again)

pytestmark = pytest.mark.e2e

# The tmpfs at "$1", the state folder's files copied into "$1/state" when "$2" names them ("" : state elsewhere),
# then mitmdump with its standard output and error on "$1/gateway.log".
_MOUNT = """set -e
disk="$1"; staging="$2"; shift 2
mount -t tmpfs -o "size=4m,mode=0755" qwen-log "$disk"
if [ -n "$staging" ]; then mkdir -m 0700 "$disk/state"; cp -a "$staging"/. "$disk/state"/; fi
exec "$@" >"$disk/gateway.log" 2>&1
"""
DROPPED = re.compile(r"qwen: (\d+) log lines? could not be written \((.+?)\) and (?:was|were) dropped")


@pytest.fixture
def log_on_tmpfs(tmp_path, emu):
    """A factory: a gateway whose standard output is a file on a 4 MiB tmpfs of its own mount namespace; with
    `state_too`, its state folder is on that tmpfs as well. Each gateway gets `.disk` (the tmpfs's mount point),
    `.state` (its state folder) and `.logfile` pointed at the log inside its namespace."""
    reason = _mount_namespace_problem()
    if reason:
        pytest.skip(reason)
    started: list[Gateway] = []

    def start(state_too: bool = False, buffered: bool = False) -> Gateway:
        disk, staging = tmp_path / "disk", tmp_path / "staging"
        disk.mkdir()
        state = disk / "state" if state_too else staging  # state_too: the mount script copies staging there
        home = Home(tmp_path, emu, state=staging)
        home.key("k", path=CODING_PLAN, key_env="KEY_K", default_model="qwen3-coder-plus")
        prefix = ("unshare", "-m", "--propagation", "private", "--", "sh", "-c", _MOUNT, "sh", str(disk),
                  str(staging) if state_too else "")
        gw = Gateway(tmp_path / "gw", env=home.env(QWEN_GATEWAY_HOME=str(state),
                                                   # "": standard output block-buffered, as a shell's `> file` leaves it
                                                   **({"PYTHONUNBUFFERED": ""} if buffered else {})),
                     prefix=prefix).start()
        started.append(gw)
        gw.disk, gw.state = disk, state  # type: ignore[attr-defined]
        gw.logfile = _inside(gw, disk / "gateway.log")  # what `gw.log()` reads: the tmpfs's file
        return gw

    yield start
    for gw in started:
        gw.stop()


def _served(gw: Gateway, since: int) -> int:
    """A chat, a streamed chat and a Response not stored (3 exchanges); a gateway gone is said as such, with the
    exchanges it served `since` the disk filled."""
    import openai

    try:
        return _chat_goes_on(gw)
    except openai.APIConnectionError:
        assert gw.proc is not None
        raise AssertionError(f"the gateway died with its log: exit status {gw.proc.wait(10)}, after {since} "
                             "exchanges with the disk full") from None


def _dropped(log: str) -> list[int]:
    return [int(m.group(1)) for m in DROPPED.finditer(log)]


def _said(gw: Gateway) -> str | None:
    """The log once it says lines were dropped."""
    log = gw.log()
    return log if _dropped(log) else None


def _request_lines(log: str) -> int:
    return sum(1 for line in log.splitlines() if "POST /v1/" in line and "acct=" in line)


@pytest.mark.parametrize("buffered", [False, True], ids=["unbuffered", "buffered"])
def test_a_full_log_disk_drops_lines_and_the_gateway_serves_on(log_on_tmpfs, buffered):
    gw = log_on_tmpfs(buffered=buffered)
    exchanges = _chat_goes_on(gw)
    until(lambda: _rows_settle(lambda: len(ledger_rows(gw.state)), exchanges), "the first rows (and lines) written")  # type: ignore[attr-defined]
    filler = _inside(gw, gw.disk / "filler")  # type: ignore[attr-defined]
    _fill(filler)
    full = 0
    for _ in range(30):  # request lines the log cannot take (a line may still fit its file's last page at first)
        full += _served(gw, full)
    exchanges += full
    written = _request_lines(gw.log())
    assert written < exchanges, "the log never filled"
    filler.unlink()  # space returns
    exchanges += _chat_goes_on(gw)
    log = until(lambda: _said(gw), "the dropped lines said", limit=10)
    assert "No space left on device" in DROPPED.search(log).group(2), log
    # every request line is in the log or counted as dropped: each exactly once, said once
    log = until(lambda: (lambda text: text if _request_lines(text) + sum(_dropped(text)) == exchanges else None)(
        gw.log()), "every request line written or counted", limit=10)
    # said once; what the full disk took (lines written while it was full may be fewer than `written` was: a
    # page's tail may still have taken one as it filled, and the log's batches land late under load)
    assert len(_dropped(log)) == 1 and 0 < _dropped(log)[0] <= exchanges - _request_lines(log) + 1, log
    print(f"\n{full} exchanges with the log's disk full: {_dropped(log)[0]} lines dropped, said once")
    until(lambda: _rows_settle(lambda: len(ledger_rows(gw.state)), exchanges), "every exchange's ledger row")  # type: ignore[attr-defined]
    assert gw.alive()
    assert "Traceback" not in log, log


def test_log_and_state_on_one_full_disk_serve_chat_refuse_stored_and_come_back(log_on_tmpfs, emu):
    gw = log_on_tmpfs(state_too=True)
    exchanges = _chat_goes_on(gw)
    until(lambda: _rows_settle(lambda: _ledger_rows(gw), exchanges), "the first rows written")
    filler = _inside(gw, gw.disk / "filler")  # type: ignore[attr-defined]
    _fill(filler)
    for _ in range(30):  # the issue: 25 requests, then the process died
        exchanges += _served(gw, exchanges - 3)
    _refused_before_upstream(gw, emu)  # the state folder's own outage: stored answers 503, Qwen never asked
    exchanges += 4
    filler.unlink()  # space returns
    exchanges += _served_again(gw, "after a full disk shared by the log and the state")
    log = until(lambda: _said(gw), "the dropped lines said", limit=10)
    assert len(_dropped(log)) == 1 and _dropped(log)[0] >= 60, log
    print(f"\n{exchanges} exchanges, {_dropped(log)[0]} log lines dropped, said once")
    until(lambda: _rows_settle(lambda: _ledger_rows(gw), exchanges), "every exchange's ledger row, written after")
    assert client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "after"}]
                                              ).choices[0].message.content == "Echo: after"
    assert gw.alive()
    assert "Traceback" not in gw.log(), gw.log()
