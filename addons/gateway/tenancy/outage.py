"""A write that fails every second while its storage is away is said once: one line when it starts failing,
one when it works again (each gateway's log, not a line a second)."""

from __future__ import annotations

import logging

log = logging.getLogger("qwen")


class OutageNote:
    def __init__(self, failing: str, back: str) -> None:
        self.failing = failing  # "%s": the exception's type
        self.back = back
        self.down = False

    def failed(self, e: BaseException) -> None:
        if not self.down:
            self.down = True
            log.warning(self.failing, type(e).__name__)

    def worked(self) -> None:
        if self.down:
            self.down = False
            log.info(self.back)
