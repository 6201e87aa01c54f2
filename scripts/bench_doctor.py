"""Instructions of the cache doctor alone, per answered turn (issue 61 item 5): its `finished` on TURNS turns of
the bench's 202-message conversation (bench_http.long_conversation, 60 kB, as `bench_hooks.py --long` sends it),
counted by valgrind's callgrind against a run that makes the same exchanges and calls nothing. The difference
over TURNS is one turn; `bench_hooks.py --long --no-doctor` gives the whole request it is a share of.

    .venv/bin/python scripts/bench_doctor.py [TURNS]          # instructions a turn (TURNS: 100)
    .venv/bin/python scripts/bench_doctor.py [TURNS] --grow   # each turn the last one plus an answer and a question

Needs valgrind (apt: valgrind); run from the repository (it reuses tests/helpers to make the exchanges)."""

from __future__ import annotations

import copy
import gc
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]


def run(turns: int, call: bool, grow: bool) -> None:
    from bench_http import long_conversation
    from helpers.observe_testlib import answered, config, exchange

    from qwen_gateway import jsonio
    from qwen_gateway.accounts import Conversation
    from qwen_gateway.observe.cache_doctor import CacheDoctor
    from qwen_gateway.upstream.dashscope.request import chat_to_qwen

    doctor = CacheDoctor()
    doctor.configure(config())
    doctor.shown = False  # plain mitmdump: no flow record, no comment
    client = long_conversation()
    made = []
    for i in range(turns + 1):  # the first turn: the conversation's opening, in both runs
        body = chat_to_qwen(copy.deepcopy(client), model="qwen3-coder-plus", oauth=True)
        ex = exchange(upstream_body=body, usage={"prompt_tokens": 15000, "completion_tokens": 8,
                                                 "prompt_tokens_details": {"cached_tokens": 14000}})
        ex.attempt.sent = jsonio.dumps(body)
        ex.conversation = Conversation("agent", "session")
        made.append((ex, answered(ex)))
        if grow:
            client = {**client, "messages": client["messages"] + [
                {"role": "assistant", "content": f"Done {i}."}, {"role": "user", "content": f"next {i}"}]}
    doctor.finished(*made[0])
    gc.collect()
    gc.freeze()
    gc.disable()
    if call:
        for ex, flow in made[1:]:
            doctor.finished(ex, flow)
    assert not call or made[-1][0].result.cache is not None


def callgrind(turns: int, call: bool, grow: bool, out: Path) -> int:
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__, "--run",
           str(turns), "call" if call else "none", "grow" if grow else "same"]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    return int(re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M).group(1))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--run"]:
        run(int(argv[1]), argv[2] == "call", argv[3] == "grow")
        return 0
    turns = int(next((a for a in argv if a.isdigit()), "100"))
    grow = "--grow" in argv
    with tempfile.TemporaryDirectory() as tmp:
        none = callgrind(turns, False, grow, Path(tmp) / "none.out")
        called = callgrind(turns, True, grow, Path(tmp) / "call.out")
        if "--keep" in argv:
            subprocess.run(["cp", str(Path(tmp) / "call.out"), "/tmp/bench_doctor.call.out"], check=True)
    print(f"the doctor's finished: {(called - none) / turns:,.0f} instructions a turn "
          f"({turns} turns{', growing' if grow else ''}; runs {none:,} and {called:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
