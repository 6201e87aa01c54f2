"""File descriptors: the soft limit raised to the hard one at start.

Every client connection holds a descriptor. Linux starts a process with a soft limit of 1,024 (systemd's
default for services too) under a hard limit that is commonly 524,288: 1,100 slow clients were enough to
exhaust it. The gateway raises its soft limit to the hard one when it loads — as Go programs do at start —
and its service unit asks for LimitNOFILE= (cli/service.py). Linux's epoll has no use for a low limit;
only select() does, and nothing in the gateway's process uses it.

When descriptors still run out, accept() fails on every turn of the event loop: the gateway's handler for
the loop's reports logs that in a few lines (seams/loop_reports.py).
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("qwen")

LOW = 4096  # fewer descriptors than this after raising: said at start


def raise_soft_limit() -> None:
    """The soft RLIMIT_NOFILE up to the hard one (once: later calls find them equal)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log.debug(f"qwen: open files limit raised from {soft} to {hard} (each client connection takes one)")
            soft = hard
    except (OSError, ValueError) as e:  # a platform that refuses (macOS with an unlimited hard limit)
        log.debug(f"qwen: open files limit left as it is: {e}")
        return
    if soft < LOW:
        log.warning(f"qwen: only {soft} open files allowed (hard limit): each client connection takes one. "
                    "Raise it: `ulimit -Hn` / LimitNOFILE= in the service unit.")
