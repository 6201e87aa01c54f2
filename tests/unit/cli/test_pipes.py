"""A CLI writing into a pipe whose reader is gone (`qwen-usage requests | head`) ends as `cat` would, by SIGPIPE and
without a word (cli/pipes.py): each of the package's commands, run for real with its stdout's reader closed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qwen_gateway.cli import pipes

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("argv", [["qwen-keys", "list"], ["qwen-usage"], ["qwen-usage", "requests"],
                                  ["qwen-auth", "status"], ["qwen-redirect", "--help"], ["qwen-gateway", "--help"]])
def test_a_closed_pipe_ends_the_command_quietly(tmp_path, argv):
    env = {**os.environ, "QWEN_GATEWAY_HOME": str(tmp_path), "QWEN_STATE_URL": "", "HOME": str(tmp_path)}
    p = subprocess.Popen([str(BIN / argv[0]), *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.close()  # `head` gone before the command writes
    _, err = p.communicate(timeout=60)
    assert b"BrokenPipe" not in err and b"Traceback" not in err, err.decode()
    # as `cat` ends (the shell says 141); argparse's own --help may drop what it cannot write, and exit 0
    assert p.returncode in ((0, -signal.SIGPIPE) if "--help" in argv else (-signal.SIGPIPE,))


def test_another_broken_pipe_is_not_taken_for_stdouts():
    @pipes.quiet_when_stdout_closes
    def main() -> int:
        raise BrokenPipeError("a socket's")
    with pytest.raises(BrokenPipeError):
        main()
