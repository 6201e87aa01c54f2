"""Batch files through a real mitmdump and the emulator's Files API (issue 60, item 3): uploads are parsed and
translated off the event loop, a bounded piece at a time — four at once, every line translated once, in pieces of at
most PIECE lines, none on the loop's thread (counted inside the gateway: helpers/batchwork.py) — a file of more lines
than Model Studio takes is refused before any line is translated, and every refusal names its real cause.

Counts, never a clock: the same on a quiet and on a busy machine. The maximal cases (four uploads of 50,000 lines at
once, a 180,000-line refusal) and their figures — the loop's lateness, the liveness probe's longest answer — are a
benchmark's: `.venv/bin/python scripts/bench_maximal.py` (docs/performance.md)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import openai
import pytest

from e2e.test_e2e_batches import MODEL, payg_env
from e2e.test_e2e_storage_faults import _MOUNT, _fill, _inside, _mount_namespace_problem
from helpers.procs import ROOT, Gateway
from helpers.team import openai_client

pytestmark = pytest.mark.e2e

MAX_LINES = 50_000  # Model Studio's "up to 50,000 requests per file"
PIECE = 500  # api/batches/pieces.py: the lines a piece of work holds
LINES = 4 * PIECE + 7  # an upload of several pieces, the last one partial
WORKER = "qwen-batch-lines_0"  # the batch files' one worker thread (pieces.py)
BATCHWORK = ROOT / "tests" / "helpers" / "batchwork.py"  # the gateway loads it; never imported here (it patches)


def maximal_file(lines: int = MAX_LINES, tag: str = "q", url: str = "/v1/chat/completions") -> bytes:
    """A batch file of `lines` requests (chat: 50,000 are about 8.6 MB, the issue's maximal upload); `url`
    another endpoint's lines (embeddings: lines the gateway checks and passes on without translating them)."""
    body = ({"model": MODEL, "messages": [{"role": "user", "content": "{i}+{i}?"}]} if url.endswith("completions")
            else {"model": "text-embedding-v4", "input": "{i}"})
    line = json.dumps({"custom_id": f"{tag}{{i}}", "method": "POST", "url": url, "body": body}) + "\n"
    return "".join(line.replace("{i}", str(i)) for i in range(lines)).encode()


def uploads(emu) -> list[dict]:
    """The uploads Qwen (the emulator) received."""
    return [r for r in emu.requests() if r["method"] == "POST" and r["path"].endswith("/files")]


def counted(make_gateway, tmp_path, emu, name: str = "gw"):
    """A gateway on a pay-as-you-go key account whose batch files' work is recorded (helpers/batchwork.py):
    (gateway, the record's path)."""
    env = payg_env(tmp_path / name, emu)
    work = tmp_path / name / "batchwork.txt"
    gw = make_gateway(name, env={**env, "QWEN_TEST_BATCHWORK": str(work)},
                      args=("-s", str(BATCHWORK)))
    return gw, work


def recorded(path: Path) -> list[tuple[str, int, str]]:
    """The batch files' work the gateway recorded (helpers/batchwork.py), in order: (what, size, thread)."""
    if not path.exists():
        return []
    return [(w, int(n), t) for w, n, t in (line.split(" ", 2) for line in path.read_text().splitlines())]


def test_four_uploads_at_once_are_translated_off_the_loop_a_piece_at_a_time(make_gateway, tmp_path, emu):
    gw, work = counted(make_gateway, tmp_path, emu)
    c = openai_client(gw.url, "client-key").with_options(timeout=300)
    data = [maximal_file(LINES, tag=f"u{n}-") for n in range(4)]
    made: list = []
    threads = [threading.Thread(target=lambda d=d: made.append(c.files.create(file=("in.jsonl", d),
                                                                               purpose="batch"))) for d in data]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    calls = recorded(work)
    pieces = [n for what, n, _ in calls if what == "piece"]
    print(f"\nfour uploads of {LINES:,} lines ({len(data[0]) / 1e6:.2f} MB each) at once: "
          f"{len(pieces)} pieces of {min(pieces)}-{max(pieces)} requests; threads {sorted({t for *_, t in calls})}")
    assert len(made) == 4 and all(f.purpose == "batch" for f in made)
    assert len(uploads(emu)) == 4
    assert sum(pieces) == 4 * LINES  # every line translated, once
    assert len(pieces) >= 4 * -(-LINES // PIECE) and max(pieces) == PIECE  # a bounded piece at a time
    assert [what for what, *_ in calls].count("rows") == 4
    assert {t for *_, t in calls} == {WORKER}  # never on the event loop's thread


def test_a_file_of_more_lines_than_model_studio_takes_is_refused_before_translation(make_gateway, tmp_path, emu):
    """50,001 requests: refused, no line translated (the rows only counted, off the loop), nothing sent to Qwen;
    50,000 are taken. The lines are embeddings requests, which the gateway passes on untranslated: the bound is a
    count of requests, whatever they are (the translation's work is the test above's)."""
    gw, work = counted(make_gateway, tmp_path, emu)
    c = openai_client(gw.url, "client-key").with_options(timeout=300)
    data = maximal_file(MAX_LINES + 1, url="/v1/embeddings")
    with pytest.raises(openai.BadRequestError) as e:
        c.files.create(file=("big.jsonl", data), purpose="batch")
    error = e.value.body
    print(f"\n{MAX_LINES + 1:,} lines ({len(data) / 1e6:.1f} MB): {e.value.status_code} {error['code']}: "
          f"{error['message']}")
    assert error["code"] == "too_many_requests" and error["param"] == "file"
    assert error["message"] == (f"The batch file holds {MAX_LINES + 1} requests; a batch file can contain up to "
                                f"{MAX_LINES:,} requests.")
    assert uploads(emu) == []  # nothing went to Qwen
    assert recorded(work) == [("rows", len(data), WORKER)]  # counted off the loop, no line translated
    ok = c.files.create(file=("max.jsonl", maximal_file(MAX_LINES, url="/v1/embeddings")), purpose="batch")
    assert ok.purpose == "batch"  # the maximum itself is taken
    pieces = [n for what, n, _ in recorded(work) if what == "piece"]
    assert sum(pieces) == MAX_LINES and max(pieces) == PIECE and len(uploads(emu)) == 1


def test_an_upload_to_a_full_state_folder_is_refused_for_the_full_folder(tmp_path, emu):
    """With the state folder full, the owner's row cannot be written: the upload is refused 503 saying so, before
    anything is made on Qwen (the issue saw "No Qwen account is configured", which was not the cause)."""
    reason = _mount_namespace_problem()
    if reason:
        pytest.skip(reason)
    env = payg_env(tmp_path / "staged", emu)
    staging, state = Path(env["QWEN_GATEWAY_HOME"]), tmp_path / "state"
    state.mkdir(mode=0o700)
    prefix = ("unshare", "-m", "--propagation", "private", "--", "sh", "-c", _MOUNT, "sh", str(state), str(staging),
              "rw")
    gw = Gateway(tmp_path / "gw", env={**env, "QWEN_GATEWAY_HOME": str(state)}, prefix=prefix).start()
    try:
        c = openai_client(gw.url, "client-key")
        assert c.files.create(file=("a.jsonl", maximal_file(3, "a")), purpose="batch").purpose == "batch"
        _fill(_inside(gw, state / "filler"))
        with pytest.raises(openai.APIStatusError) as e:
            c.files.create(file=("b.jsonl", maximal_file(3, "b")), purpose="batch")
        print(f"\nan upload with the state folder full: {e.value.status_code} {e.value.body}")
        assert e.value.status_code == 503 and e.value.body["code"] == "state_unavailable", e.value.body
        assert "disk full" in e.value.body["message"] and "No Qwen account" not in e.value.body["message"]
        assert len(uploads(emu)) == 1  # the second never reached Qwen
        assert "Traceback" not in gw.log()
    finally:
        gw.stop()
