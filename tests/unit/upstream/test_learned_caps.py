"""Output caps Qwen named, kept in the state folder (upstream/learned_caps.py): a restarted gateway sends the
next request within the cap at once; a folder that cannot take the file keeps them in memory, said once."""

from __future__ import annotations

import logging
import os
import stat

from qwen_gateway.upstream.learned_caps import FILE, LearnedCaps


def test_a_learned_cap_survives_a_restart(tmp_path):
    caps = LearnedCaps(tmp_path)
    caps.learn("qwen9-max", 40000, now=1.0)
    caps.close()
    again = LearnedCaps(tmp_path)
    assert again == {"qwen9-max": 40000}
    assert stat.S_IMODE(os.stat(tmp_path / FILE).st_mode) == 0o600


def test_a_newer_cap_replaces_the_older(tmp_path):
    caps = LearnedCaps(tmp_path)
    caps.learn("m", 40000, now=1.0)
    caps.learn("m", 32000, now=2.0)
    caps.close()
    assert LearnedCaps(tmp_path)["m"] == 32000


def test_a_folder_that_is_a_file_keeps_caps_in_memory(tmp_path, caplog):
    blocker = tmp_path / "state"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="qwen"):
        caps = LearnedCaps(blocker)
        caps.learn("m", 1000, now=1.0)
        caps.learn("n", 2000, now=2.0)
    assert caps == {"m": 1000, "n": 2000} and caplog.text.count("kept in memory only") == 1  # said once


def test_configuring_makes_no_folder(tmp_path):
    """The folder is made at the first cap learned: a gateway whose state option is refused made nothing."""
    LearnedCaps(tmp_path / "nowhere").close()
    assert not (tmp_path / "nowhere").exists()
