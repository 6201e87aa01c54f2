"""Test-only mitmproxy script: where a batch file's work ran, counted inside a real mitmdump. Loaded with `-s` after
addons/qwen.py; each call of the batch files' work (api/batches/lines.py) appends one line to $QWEN_TEST_BATCHWORK:

    rows <bytes> <thread>     an upload's rows read (`_upload_rows`: decoded, counted against MAX_LINES)
    piece <requests> <thread> a piece of an upload's lines parsed and translated (`_Upload.piece`): the requests
                              it held (its blank lines aside)

<thread> is `loop` for the event loop's thread, else the thread's name (the batch files' worker: qwen-batch-lines_0).
A count, never a clock: the same lines on a quiet and on a busy machine (tests/e2e/test_e2e_batch_files.py reads
them; the script is never imported by a test process: it patches the module it loads)."""

from __future__ import annotations

import functools
import os
import threading

from qwen_gateway.api.batches import lines

_loop_thread: int | None = None


def _where() -> str:
    return "loop" if threading.get_ident() == _loop_thread else threading.current_thread().name


def _record(what: str, size: int) -> None:
    with open(os.environ["QWEN_TEST_BATCHWORK"], "a") as f:
        f.write(f"{what} {size} {_where()}\n")


def _rows_counted(real):
    @functools.wraps(real)
    def upload_rows(data: bytes):
        _record("rows", len(data))
        return real(data)
    return upload_rows


def _piece_counted(real):
    @functools.wraps(real)
    def piece(self, first: int, rows: list[str]) -> bytes:
        _record("piece", sum(1 for text in rows if text.strip()))
        return real(self, first, rows)
    return piece


lines._upload_rows = _rows_counted(lines._upload_rows)
lines._Upload.piece = _piece_counted(lines._Upload.piece)  # type: ignore[method-assign]


class BatchWork:
    def running(self) -> None:
        global _loop_thread
        _loop_thread = threading.get_ident()


addons = [BatchWork()]
