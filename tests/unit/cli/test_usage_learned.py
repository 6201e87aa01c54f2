"""qwen-usage learned (cli/usage_learned.py): what Qwen's refusals taught, from the state folder, and --forget;
the shared database's case runs in tests/e2e/test_e2e_knowledge.py on a real PostgreSQL."""

from __future__ import annotations

import json

import pytest

from qwen_gateway.cli import usage, usage_learned
from qwen_gateway.models.learned import LearnedFacts


def test_the_view_is_found_among_qwen_usages_options():
    assert usage_learned.asked(["learned"]) == []
    assert usage_learned.asked(["--state-dir", "x", "learned", "--json"]) == ["--state-dir", "x", "--json"]
    assert usage_learned.asked(["--model", "learned"]) is None  # a model named so: the ledger's filter
    assert usage_learned.asked(["today"]) is None and usage_learned.asked([]) is None


def test_listed_then_forgotten(tmp_path, capsys):
    facts = LearnedFacts(tmp_path)
    facts.learn("qwen3.8-flash", "output", 32768)
    facts.learn("qwen3.8-flash", "budget", 40000)
    facts.learn("qwen9-max", "output", 40000)
    facts.close()
    assert usage.main(["learned", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "qwen3.8-flash  budget  40,000" in out and "qwen9-max      output  32,768" not in out
    assert usage.main(["learned", "--forget", "qwen3.8-flash", "--fact", "output", "--state-dir", str(tmp_path),
                       "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["fact"]) for r in rows] == [("qwen3.8-flash", "budget"), ("qwen9-max", "output")]
    assert usage.main(["learned", "--forget", "qwen3.8-flash", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("forgot 1 fact of qwen3.8-flash in ") and "qwen3.8-flash" not in out.split("\n", 1)[1]


def test_nothing_learned_yet_says_so(tmp_path, capsys):
    assert usage.main(["learned", "--state-dir", str(tmp_path)]) == 0
    assert "nothing learned from Qwen yet" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        usage.main(["learned", "--fact", "output", "--state-dir", str(tmp_path)])
