"""The cache doctor's `expiry` (issue 71: "past the cache's lifetime since the turn before", cache/compare.py
`now.at - was.at > was.lifetime`, `at` the exchange's `started_at`), through a real mitmdump to the emulator on a
streaming Messages client (the real `anthropic` SDK) that asks for `diagnostics`: a conversation whose second turn
comes after the gateway's clock AND the emulator's cache clock both moved past Qwen's five minutes.

The emulator's clock moves by its admin route (`POST /_emulator/cache {"advance": s}`). The gateway's moves for
real, in the gateway's process only: mitmdump runs under libfaketime (Debian's `faketime`; LD_PRELOAD, so the
gateway is started by Popen, never forked by the fork server, which would hold the server's C library), its
offset read from FAKETIME_TIMESTAMP_FILE, which the test rewrites between turns without a restart:

- only the realtime clock is faked (FAKETIME_DONT_FAKE_MONOTONIC=1): `started_at` is `time.time()`, and asyncio's
  timers, the gateway's durations and Python's lock and event waits all run on the monotonic clock — faked, it
  would jump with the offset (every pending timer due at once), and under libfaketime 0.9.10 it reads as the
  epoch's seconds and `threading.Event().wait(0.3)` never returns;
- file times are never faked (NO_FAKE_STAT=1): mitmproxy reloads an addon whose mtime grew, and a faked stat
  would move addons/qwen.py's mtime with the offset, reloading the gateway mid-conversation (Debian 12's 0.9.10
  was seen to leave Python's os.stat alone even without it; another version or C library may not);
- FAKETIME_CACHE_DURATION=1: libfaketime reads the file again once a call comes more than a second (whole seconds)
  after its last read, so a move is seen by every call from 2 s after the file changed (CACHE_WAIT_S).

libfaketime 0.9.10 (Debian 12's) turns `time.sleep` in the faked process into EINVAL when the monotonic clock is
not faked (wolfcw/libfaketime#426, fixed in 0.9.11: Python >= 3.11 sleeps with clock_nanosleep(CLOCK_MONOTONIC,
TIMER_ABSTIME)); the gateway sleeps only on paths this test never takes (a lock held by another program, a storage
outage), and the test checks its log holds no such error.

A second conversation is the control: the emulator's clock moved, the gateway's held — the same prefix read from
nothing is then Qwen's own doing (`evicted`, `unexplained`), never `expired`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mitmproxy import io

from e2e.test_e2e_cache_diagnostics import SYSTEM, TOOL, needs_sdk, params
from helpers import commands
from helpers.clock import LIBFAKETIME, faked_clock, move_clock
from helpers.ledger import ledger_rows
from helpers.procs import Gateway, until
from helpers.team import QWEN_USAGE, anthropic_calls

pytestmark = pytest.mark.e2e

needs_faketime = pytest.mark.skipif(LIBFAKETIME is None, reason="libfaketime not installed (Debian package faketime: "
                                    "scripts/install-test-tools.sh installs it)")
PAST_S = 360  # both clocks moved: past Qwen's five minutes (the gateway's lifetime for qwen3-coder-plus: 300 s)
KEY = "client-key"  # no named keys: the gateway's own tenant


def turn(tag: str, n: int) -> dict:
    """Claude Code's shape, the conversation's own (`tag`, in the system text and its first message: a
    conversation of its own for the doctor): the system prompt marked, the newest message marked, so the first turn
    stores its prefix in Qwen's explicit cache (at least 1,024 tokens) for five minutes."""
    body = params(n)
    messages = [{**m, "content": f"[{tag}] " + m["content"]} if i == 0 else m for i, m in enumerate(body["messages"])]
    messages[-1] = {"role": "user", "content": [{"type": "text", "text": messages[-1]["content"],
                                                 "cache_control": {"type": "ephemeral"}}]}
    system = [{"type": "text", "text": SYSTEM * 2 + f" [{tag}]", "cache_control": {"type": "ephemeral"}}]
    return {**body, "system": system, "tools": [TOOL], "messages": messages}


def stream(gw: Gateway, body: dict, previous: str | None) -> dict:
    (out,) = anthropic_calls(gw.url, KEY, [{"op": "stream", "params": body, "diagnose": True, "previous": previous}])
    assert "answer" in out, out
    return out["answer"]


def conversations(env: dict[str, str]) -> list[dict]:
    r = commands.run([QWEN_USAGE, "conversations", "--json"], timeout=60,
                       env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout or "[]")


def stored(answer: dict) -> int:
    """What a turn left in Qwen's explicit cache, as the emulator counted it: what it read there and what it wrote."""
    u = answer["message"]["usage"]
    return (u.get("cache_read_input_tokens") or 0) + (u.get("cache_creation_input_tokens") or 0)


@needs_sdk
@needs_faketime
def test_a_turn_after_both_clocks_passed_the_lifetime_is_named_expired(tmp_path, emu, key_home):
    rc = tmp_path / "faketime.rc"
    rc.write_text("+0\n")
    flowfile = tmp_path / "flows.mitm"
    state = Path(key_home["QWEN_GATEWAY_HOME"])
    gw = Gateway(tmp_path / "gw", env={**key_home, **faked_clock(rc)}, args=("-w", str(flowfile)), fork=False)
    try:
        gw.start()  # within the try: a gateway that never listened is stopped too
        assert gw.started["forked"] is False, gw.started  # LD_PRELOAD reached mitmdump itself
        # the control: Qwen's cache clock moved, the gateway's held
        held1 = stream(gw, turn("held", 2), None)
        emu.admin("POST", "cache", {"advance": PAST_S})
        held2 = stream(gw, turn("held", 3), held1["message"]["id"])
        # the proof: both clocks moved between the two turns
        moved1 = stream(gw, turn("moved", 2), None)
        emu.admin("POST", "cache", {"advance": PAST_S})
        move_clock(rc, PAST_S)
        moved2 = stream(gw, turn("moved", 3), moved1["message"]["id"])
        rows = until(lambda: (r := [x for x in ledger_rows(state) if x["cache_turn"]]) and len(r) >= 4 and r,
                     "the four turns in the ledger", limit=30)
        table = conversations(key_home)
    finally:
        gw.stop()
    log = gw.log()
    assert "Errno 22" not in log and "Invalid argument" not in log, log[-3000:]  # libfaketime#426 never hit

    # the client's own diagnostics: on the stream's message_delta (message_start goes out before Qwen's usage)
    for first, second, kind in ((held1, held2, "evicted"), (moved1, moved2, "expired")):
        said = second["delta_diagnostics"]
        print(f"\n{kind}: message_delta diagnostics {said}; turn 1 usage {first['message']['usage']}; "
              f"turn 2 usage {second['message']['usage']}")
        assert second["start_diagnostics"] == {} and said["cache_miss_reason"] == {"type": "unavailable"}, said
        miss = said["qwen_cache_miss"]
        assert miss["type"] == kind and miss["cache_lifetime_seconds"] == 300, said
        # Qwen (the emulator) read nothing of what the turn before stored: the tokens missed are those, within 10 %
        assert second["message"]["usage"]["cache_read_input_tokens"] == 0, second["message"]["usage"]
        left = stored(first)
        assert left >= 1024 and abs(miss["cache_missed_input_tokens"] - left) <= 0.1 * left, (miss, left)

    # the ledger: each turn's row, its cause in the doctor's words; the gateway's clock moved (its rows' times)
    by = {}
    for r in rows:
        by.setdefault(r["conversation"], []).append(r)
    assert len(by) == 2 and all([r["cache_turn"] for r in turns] == [1, 2] for turns in by.values()), rows
    (held_rows, moved_rows) = sorted(by.values(), key=lambda turns: turns[0]["ts"])
    print("ledger:", [(r["cache_turn"], r["cache_miss"], r["miss_tokens"], round(r["ts"], 1)) for r in rows])
    assert [r["cache_miss"] for r in held_rows] == [None, "unexplained"], held_rows
    assert [r["cache_miss"] for r in moved_rows] == [None, "expiry"], moved_rows
    assert moved_rows[1]["miss_tokens"] == moved2["delta_diagnostics"]["qwen_cache_miss"]["cache_missed_input_tokens"]
    assert held_rows[1]["ts"] - held_rows[0]["ts"] < 60  # the gateway's clock held there
    assert PAST_S <= moved_rows[1]["ts"] - moved_rows[0]["ts"] < PAST_S + 120, moved_rows  # and moved here

    # qwen-usage conversations names the turn and its cause
    causes = {c["conversation"]: c["causes"] for c in table}
    print("qwen-usage conversations:", table)
    assert causes == {held_rows[0]["conversation"][:12]: "unexplained (turn 2)",
                      moved_rows[0]["conversation"][:12]: "expiry (turn 2)"}, table

    # the flow: its record and its comment (what mitmweb shows), read from the flow file
    with open(flowfile, "rb") as f:
        flows = [fl for fl in io.FlowReader(f).stream() if fl.request.path.startswith("/v1/messages")]
    assert len(flows) == 4, [fl.request.path for fl in flows]
    caches = [fl.metadata["qwen"]["cache"] for fl in flows]
    assert [(c["turn"], c["cause"]) for c in caches] == [(1, None), (2, "unexplained"), (1, None), (2, "expiry")]
    print("comment:", flows[3].comment)
    assert "cache: turn 2 read 0 of" in flows[3].comment, flows[3].comment
    assert "vs turn 1: past the cache's lifetime since the turn before" in flows[3].comment, flows[3].comment
    assert "no change found in the prefix: Qwen dropped it" in flows[1].comment, flows[1].comment
    assert flows[3].request.timestamp_start - flows[2].request.timestamp_start >= PAST_S  # mitmproxy's clock too
