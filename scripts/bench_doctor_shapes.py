"""The cache doctor's instructions on recorded client sessions (issue 71: Claude Code; issue 81: Codex too, and the
whole session), and its share of the whole request on the same bodies, in one run.

    .venv/bin/python scripts/bench_doctor_shapes.py [N] [--shapes FILE] [--both]
    .venv/bin/python scripts/bench_doctor_shapes.py --shapes scripts/data/codex_shapes.json   # Codex's session
    .venv/bin/python scripts/bench_doctor_shapes.py --doctor-only   # the doctor's figures alone (a minute)

The shapes (scripts/data/claude_code_shapes.json, made by scripts/record_claude_shapes.py: a real Claude Code
session of 14 requests, 54 to 97 kB as sent; codex_shapes.json, by record_codex_shapes.py: a real Codex session's
Responses requests; their texts replaced by filler of the same sizes) go through the gateway's own hooks
(bench_hooks.py's harness: the client's endpoint, the translation to chat, the marker, the upstream body as
encoded; Qwen's answer canned with the usage each turn was answered with), the doctor taken out; then, between
marks that callgrind dumps its counters at (`--dump-before=getppid`, as bench_hooks.py), the doctor's two hooks
(`upstream_request`, then `finished`) are called on each of those exchanges, in the session's order, once per turn: ROUNDS sessions, each with a fresh doctor
(its memory empty), the figures of the last (the first pays Python's first calls). A mark's own cost (pairs of
marks with nothing between) is taken off. Then `bench_hooks.py N --shapes FILE --no-doctor` (N: 100) counts the
whole request on the last turn's body, and `--turn all` a request's mean over the session's turns (each turn's body
in turn), its prompt counted with tiktoken (as the gateway counts a Messages prompt once the encoding is loaded)
and, `--estimate`, as characters / 4 (before it is: the cheaper request); with `--both`, with the doctor too (that
difference is the doctor's cost too, within the runs' spread). The shares: the late turns' doctor over the last
turn's request, and the session's doctor (a turn's mean) over the session's request (a turn's mean).
Needs valgrind (apt: valgrind). `replay` (no valgrind) is what tests/unit/cache/test_claude_shapes.py runs."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts")]

import bench_hooks  # noqa: E402  (scripts/ on the path first)
import recorded_shapes  # noqa: E402
from callgrind_report import instructions  # noqa: E402

ROUNDS = 3  # sessions replayed through the doctor; the last one's figures are printed
EMPTY = 5  # pairs of marks with nothing between: a mark's own instructions
LATE = 4  # the late turns: the session's last four requests


def exchanges(turns: list[dict], rounds: int, home: Path | None = None) -> list[list[tuple[Any, Any]]]:
    """Each recorded turn through the gateway's hooks, `rounds` times: the exchanges and flows the doctor is given
    after the answer, as the gateway gives them (the doctor itself taken out). `home`: the gateway's folder."""
    from qwen_gateway.observer import Observer

    made: list[tuple[Any, Any]] = []

    class Kept(Observer):  # what the doctor would have been told, in its place
        def finished(self, ex: Any, flow: Any) -> None:
            made.append((ex, flow))

    async def main() -> None:
        async with bench_hooks.serving(no_doctor=True) as (gw, reader, _):
            gw.observers.all.append(Kept())
            gw.observers._index()
            for _ in range(rounds):
                for turn in turns:
                    f = bench_hooks.flow(recorded_shapes.request(turn), recorded_shapes.path(turn))
                    await bench_hooks.request(gw, reader, f, bench_hooks.canned(recorded_shapes.answer(turn["usage"])))
                gw.observers.flush()
            for o in gw.observers.all:  # the prompt estimates' thread done: no other thread runs between the marks
                if (pool := getattr(o, "_executor", None)) is not None:
                    pool.shutdown(wait=True)

    bench_hooks.home(home)
    asyncio.run(main())
    assert len(made) == rounds * len(turns), len(made)
    return [made[r * len(turns):(r + 1) * len(turns)] for r in range(rounds)]


def doctor() -> Any:
    from qwen_gateway.observe.cache_doctor import CacheDoctor
    from qwen_gateway.settings.config import Config

    d = CacheDoctor()
    d.configure(Config())
    d.shown = False  # plain mitmdump: no flow record, no comment
    return d


def replay(turns: list[dict], rounds: int = 1, home: Path | None = None) -> list[Any]:
    """The doctor's verdicts (CacheTurn) on the recorded session's turns, in order, for the last round."""
    made = exchanges(turns, rounds, home)
    for session in made:
        d = doctor()
        for ex, flow in session:
            d.upstream_request(ex, flow)
            d.finished(ex, flow)
    return [ex.result.cache for ex, _ in made[-1]]


def run(shapes: str) -> None:
    """Under callgrind: the marks around each of the doctor's turns."""
    made = exchanges(recorded_shapes.turns(shapes), ROUNDS)
    doctors = [doctor() for _ in made]
    gc.collect()
    gc.freeze()
    gc.disable()
    for _ in range(EMPTY):
        os.getppid()
        os.getppid()
    for d, session in zip(doctors, made):
        for ex, flow in session:
            os.getppid()
            d.upstream_request(ex, flow)  # its hook as the request goes upstream (Diagnoser.begin): its cost too
            d.finished(ex, flow)
            os.getppid()
    assert all(ex.result.cache is not None for ex, _ in made[-1])


def intervals(shapes: str, out: Path) -> list[int]:
    """Instructions between each pair of marks, in order (the empty pairs first)."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-before=getppid", sys.executable,
           __file__, "--run", shapes]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    dumps = sorted(out.parent.glob(out.name + ".*"), key=lambda f: int(f.suffix[1:]))
    counts = [instructions(d) for d in dumps]
    return counts[1::2]  # .1: start-up and the exchanges made; then each pair: between its marks, then the gap


def whole(shapes: str, n: int, doctor_on: bool, estimate: bool = False, turn: str = "-1") -> int:
    """bench_hooks.py's instructions per request on the last recorded turn's body (`turn` "all": a request's mean
    over the session's turns)."""
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_hooks.py"), str(n), "--shapes", shapes, "--turn", turn,
           *(() if doctor_on else ("--no-doctor",)), *(("--estimate",) if estimate else ())]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    print(out.strip())
    return int(re.search(r"^([\d,]+) instructions per", out, re.M).group(1).replace(",", ""))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--run"]:
        run(argv[1])
        return 0
    shapes = argv[argv.index("--shapes") + 1] if "--shapes" in argv else str(recorded_shapes.FILE)
    n = int(next((a for a in argv if a.isdigit()), "100"))
    turns = recorded_shapes.turns(shapes)
    with tempfile.TemporaryDirectory() as tmp:
        counts = intervals(shapes, Path(tmp) / "doctor.out")
    mark = min(counts[:EMPTY])
    per_turn = [c - mark for c in counts[EMPTY:]]
    assert len(per_turn) == ROUNDS * len(turns), (len(per_turn), len(turns))
    first, last = per_turn[:len(turns)], per_turn[-len(turns):]
    print(f"the doctor's finished on {Path(shapes).name} (a mark: {mark:,} instructions, taken off)")
    print(f"{'turn':>4} {'bytes':>8} {'messages':>8} {'first session':>14} {'last session':>13}")
    for i, turn in enumerate(turns):
        size = len(recorded_shapes.request(turn))
        items = len(turn["body"][recorded_shapes.ITEMS[turn["dialect"]]])
        print(f"{i:>4} {size:>8,} {items:>8} {first[i]:>14,} {last[i]:>13,}")
    late = last[-LATE:]
    print(f"late turns (the last {LATE}): {statistics.mean(late):,.0f} instructions a turn (max {max(late):,})")
    if "--doctor-only" in argv:
        return 0
    print(f"the whole session: {statistics.mean(last):,.0f} instructions a turn")
    requests = {"with tiktoken": whole(shapes, n, False), "as characters / 4": whole(shapes, n, False, True)}
    sessions = {"with tiktoken": whole(shapes, n, False, turn="all"),
                "as characters / 4": whole(shapes, n, False, True, turn="all")}
    if "--both" in argv:
        with_doctor = whole(shapes, n, True)
        print(f"with the doctor, less without: {with_doctor - requests['with tiktoken']:+,} (one run each)")
    for how, request in requests.items():
        print(f"the doctor's share of a late request, its prompt counted {how}: {statistics.mean(late) / request:.2%} "
              f"(max {max(late) / request:.2%})")
    for how, request in sessions.items():  # the session's doctor over the session's requests, each turn once
        print(f"the doctor's share over the whole session, its prompts counted {how}: "
              f"{statistics.mean(last) / request:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
