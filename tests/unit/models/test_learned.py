"""Facts Qwen's refusals taught, kept in the state folder (models/learned.py): bounded by the catalogue, holding
a day, skipped with one line when a row is damaged, forgotten on demand, read again when another process
changed the file; a folder that cannot take the file keeps them in memory, said once."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat

import pytest

from qwen_gateway.models import learned
from qwen_gateway.models.learned import BUDGET, FILE, FLOORS, INPUT, OLD_FILE, OUTPUT, TTL_S, LearnedFacts


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_learned_fact_survives_a_restart(tmp_path):
    facts = LearnedFacts(tmp_path, clock=Clock())
    facts.learn("qwen9-max", OUTPUT, 40000)
    facts.close()
    again = LearnedFacts(tmp_path, clock=Clock())
    assert again.value("qwen9-max", OUTPUT) == 40000
    assert stat.S_IMODE(os.stat(tmp_path / FILE).st_mode) == 0o600


def test_the_floors_are_the_smallest_the_catalogue_has():
    assert FLOORS == {OUTPUT: 8192, BUDGET: 38912, INPUT: 258048}


@pytest.mark.parametrize("fact,value", [(OUTPUT, 1), (OUTPUT, FLOORS[OUTPUT] - 1), (BUDGET, 1024), (INPUT, 4096),
                                        ("colour", 90000), (OUTPUT, True), (OUTPUT, "40000")])
def test_a_value_the_catalogue_does_not_allow_is_never_learned(tmp_path, fact, value):
    facts = LearnedFacts(tmp_path, clock=Clock())
    assert facts.learn("qwen3-coder-plus", fact, value) is None
    assert facts.rows() == [] and facts.value("qwen3-coder-plus", OUTPUT) is None


def test_a_fact_holds_a_day_then_qwen_is_asked_again(tmp_path):
    clock = Clock()
    facts = LearnedFacts(tmp_path, clock=clock)
    found = facts.learn("m", OUTPUT, 40000)
    assert found is not None and found.expires == clock.now + TTL_S
    clock.now += TTL_S - 1
    assert facts.value("m", OUTPUT) == 40000
    clock.now += 1
    assert facts.value("m", OUTPUT) is None and facts.rows() == [found]  # still shown, no longer applied
    assert "learned from Qwen's refusal at 1970-01-01 00:16 UTC, asked again after 1970-01-02 00:16 UTC" \
        == found.said()


def test_a_newer_value_replaces_the_older(tmp_path):
    facts = LearnedFacts(tmp_path, clock=Clock())
    facts.learn("m", OUTPUT, 40000)
    facts.learn("m", OUTPUT, 32000)
    facts.learn("m", BUDGET, 40000)
    facts.close()
    again = LearnedFacts(tmp_path, clock=Clock())
    assert (again.value("m", OUTPUT), again.value("m", BUDGET)) == (32000, 40000)


def test_damaged_rows_are_skipped_with_one_line_each(tmp_path, caplog):
    LearnedFacts(tmp_path, clock=Clock()).learn("good", OUTPUT, 40000)
    with sqlite3.connect(tmp_path / FILE) as db:
        db.execute("INSERT INTO facts VALUES ('bad', 'output', 'lots', 1.0)")
        db.execute("INSERT INTO facts VALUES ('tiny', 'output', 1, 1.0)")
        db.execute("INSERT INTO facts VALUES ('odd', 'colour', 90000, 1.0)")
    with caplog.at_level(logging.WARNING, logger="qwen"):
        facts = LearnedFacts(tmp_path, clock=Clock())
    assert [f.model for f in facts.rows()] == ["good"]
    skipped = [m for m in caplog.messages if "is not valid and is skipped" in m]
    assert len(skipped) == 3 and "'bad'" in skipped[0]


def test_forget_drops_a_model_everywhere_it_is_kept(tmp_path):
    facts = LearnedFacts(tmp_path, clock=Clock())
    facts.learn("m", OUTPUT, 40000)
    facts.learn("m", BUDGET, 40000)
    facts.learn("n", OUTPUT, 40000)
    assert facts.forget("m", OUTPUT) == 1
    assert facts.forget("m") == 1 and facts.forget("m") == 0
    facts.close()
    assert [(f.model, f.fact) for f in LearnedFacts(tmp_path, clock=Clock()).rows()] == [("n", OUTPUT)]


async def test_a_running_gateway_reads_the_file_again_when_another_process_changed_it(tmp_path, monkeypatch):
    monkeypatch.setattr(learned, "RELOAD_S", 0.01)
    gateway = LearnedFacts(tmp_path, clock=Clock())
    gateway.learn("m", OUTPUT, 40000)
    gateway.start()
    try:
        cli = LearnedFacts(tmp_path, clock=Clock())
        cli.forget("m")
        cli.close()
        for _ in range(300):
            if gateway.value("m", OUTPUT) is None:
                break
            import asyncio
            await asyncio.sleep(0.01)
        assert gateway.value("m", OUTPUT) is None
    finally:
        gateway.close()


def test_the_old_caps_file_is_imported_once_and_its_bad_rows_dropped(tmp_path, caplog):
    with sqlite3.connect(tmp_path / OLD_FILE) as db:
        db.execute("CREATE TABLE caps (model TEXT PRIMARY KEY, cap INTEGER NOT NULL, learned REAL)")
        db.execute("INSERT INTO caps VALUES ('qwen3-coder-plus', 1, 5.0), ('qwen9-max', 40000, 5.0)")
    with caplog.at_level(logging.WARNING, logger="qwen"):
        facts = LearnedFacts(tmp_path, clock=Clock())
    assert [(f.model, f.value, f.learned) for f in facts.rows()] == [("qwen9-max", 40000, 1000.0)]
    assert "qwen3-coder-plus" in caplog.text  # the poisoned cap of 1 token: said, not kept
    assert not (tmp_path / OLD_FILE).exists() and (tmp_path / f"{OLD_FILE}.imported").exists()
    facts.forget("qwen9-max")
    facts.close()
    assert LearnedFacts(tmp_path, clock=Clock()).rows() == []  # a forgotten cap does not come back


def test_a_folder_that_is_a_file_keeps_facts_in_memory(tmp_path, caplog):
    blocker = tmp_path / "state"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="qwen"):
        facts = LearnedFacts(blocker, clock=Clock())
        facts.learn("m", OUTPUT, 10000)
        facts.learn("n", OUTPUT, 20000)
    assert (facts.value("m", OUTPUT), facts.value("n", OUTPUT)) == (10000, 20000)
    assert caplog.text.count("kept in memory only") == 1  # said once


def test_configuring_makes_no_folder(tmp_path):
    """The folder is made at the first fact learned: a gateway whose state option is refused made nothing."""
    LearnedFacts(tmp_path / "nowhere").close()
    assert not (tmp_path / "nowhere").exists()
