"""tests/helpers/cpucount.py: each test's CPU from its worker's cgroup, and the table by file."""

from __future__ import annotations

import json
import os

from helpers import cpucount


def test_a_worker_joins_its_own_group_and_writes_a_line_a_test(tmp_path):
    root = tmp_path / "cgroup"
    (root / "gw1").mkdir(parents=True)
    usage = root / "gw1" / "cpuacct.usage"
    usage.write_text("1000000000\n")  # what the kernel keeps: nanoseconds
    count = cpucount.CpuCount(str(tmp_path / "cpu"), "gw1", root)
    assert (root / "gw1" / "cgroup.procs").read_text() == str(os.getpid())
    count.begin()
    usage.write_text("3500000000\n")  # the test's tree used 2.5 s
    count.end("tests/e2e/test_x.py::test_a")
    count.begin()
    count.end("tests/e2e/test_x.py::test_b")
    count.out.close()
    lines = [json.loads(line) for line in (tmp_path / "cpu.gw1.jsonl").read_text().splitlines()]
    assert [(r["test"], r["cpu"]) for r in lines] == [("tests/e2e/test_x.py::test_a", 2.5),
                                                      ("tests/e2e/test_x.py::test_b", 0.0)]


def test_the_table_sums_each_file_costliest_first(tmp_path):
    (tmp_path / "cpu.gw0.jsonl").write_text(json.dumps({"test": "a.py::t1", "cpu": 1.0, "own": 0.1, "wall": 2}) + "\n"
                                      + json.dumps({"test": "b.py::t1", "cpu": 4.0, "own": 0.1, "wall": 5}) + "\n")
    (tmp_path / "cpu.gw1.jsonl").write_text(json.dumps({"test": "a.py::t2", "cpu": 0.5, "own": 0.1, "wall": 1}) + "\n")
    (tmp_path / "cpu.log").write_text("the run's own output, not a worker's lines")
    assert cpucount.by_file(cpucount.read(str(tmp_path / "cpu"))) == [("b.py", 1, 4.0, 5), ("a.py", 2, 1.5, 3)]


def test_without_a_cgroup_of_its_own_nothing_is_counted_and_it_says_so(tmp_path, capsys):
    (tmp_path / "no").write_text("a file, not a folder")  # mkdir fails, as it does without root
    assert cpucount.start(str(tmp_path / "cpu"), "gw0", tmp_path / "no" / "such") is None
    assert "no CPU counted" in capsys.readouterr().err
