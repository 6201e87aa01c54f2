"""Background runs (turn/background.py): the runs held by their key, and only finished ones beyond KEEP_RUNS let
go. (A Responses run's record: tests/unit/api/responses/test_background.py.)"""

from __future__ import annotations

from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.turn import background


class Record:
    """A dialect's record that holds nothing (turn.background.RunRecord)."""

    translator = None

    def response(self, ended: bool) -> dict:
        return {"ended": ended}

    def since(self, starting_after: int) -> bytes:
        return b""

    def fail(self, error: dict) -> None:
        pass

    def cancel(self) -> None:
        pass


def run() -> background.Run:
    return background.Run(Exchange(ClientRequest("POST", "/v1/responses", "http://x/v1/responses")), Record())


def test_the_runs_of_another_key_are_not_found():
    runs = background.BackgroundRuns(runner=None)
    r = run()
    r.ex.key.name = "alice"
    runs.runs["resp_1"] = r
    assert runs.get("resp_1", "alice") is r
    assert runs.get("resp_1", "bob") is None and runs.get("resp_2", "alice") is None


def test_only_finished_runs_beyond_the_limit_are_let_go():
    runs = background.BackgroundRuns(runner=None)
    for n in range(background.KEEP_RUNS + 3):
        runs.runs[f"resp_{n}"] = r = run()
        if n != 0:  # the oldest is still running
            r.done.set()
    runs._evict()
    assert len(runs.runs) == background.KEEP_RUNS and "resp_0" in runs.runs
    assert "resp_1" not in runs.runs and "resp_3" not in runs.runs and "resp_4" in runs.runs


def test_a_run_answers_as_it_stands_from_its_record():
    r = run()
    assert r.response() == {"ended": False}
    r.done.set()
    assert r.response() == {"ended": True}
