"""What every qwen-auth command shares: exit codes and the error that carries one."""

from __future__ import annotations

import re

EXIT_OK, EXIT_LOCAL, EXIT_DENIED, EXIT_EXPIRED, EXIT_SERVER, EXIT_NO_ACCOUNT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
ENV_NAME_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: `$` would let a final newline in


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_LOCAL) -> None:
        super().__init__(message)
        self.code = code
