"""A command's output into a pipe whose reader is gone (`qwen-usage requests | head`): the command ends as `cat`
does — by SIGPIPE, without a word — instead of a BrokenPipeError traceback. Only then, and only for stdout: the
process keeps Python's own SIGPIPE handling (ignored), so a network peer that hangs up never kills it."""

from __future__ import annotations

import functools
import os
import select
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

Main = TypeVar("Main", bound=Callable[..., int])


def quiet_when_stdout_closes(main: Main) -> Main:
    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            try:
                return main(*args, **kwargs)
            finally:  # what is still buffered, written here rather than at exit (where it would say "Exception ignored")
                sys.stdout.flush()
        except BrokenPipeError:
            if not stdout_closed():
                raise
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGPIPE)
            os._exit(128 + signal.SIGPIPE)  # (not reached: the signal ends the process first)
    return run  # type: ignore[return-value]


def stdout_closed() -> bool:
    """Whether stdout is a pipe with no reader (Linux polls it as an error)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poll.poll(0))
    except (OSError, ValueError):
        return False
