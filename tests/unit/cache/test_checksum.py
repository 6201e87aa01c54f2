"""The checksum of a turn's repeated bytes (cache/checksum.py): a running sum over pieces is the one-shot sum of
their bytes joined, with xxhash and with the CRC-32 that stands in without it."""

from __future__ import annotations

import importlib
import sys
import zlib

from qwen_gateway.cache import checksum

PIECES = [b'{"role":"user","content":"fix file 1"}', b",", b'{"role":"assistant","content":"done"}', b""]


def running(module) -> int:
    total = module.Sum(memoryview(PIECES[0]))
    for piece in PIECES[1:]:
        total.update(piece)
    return total.intdigest()


def test_a_running_sum_is_the_sum_of_the_joined_bytes():
    whole = b"".join(PIECES)
    assert running(checksum) == checksum.checksum(whole) == checksum.checksum(memoryview(whole))
    assert checksum.checksum(whole) != checksum.checksum(whole[:-1] + b"]")


def test_without_xxhash_crc32_stands_in(monkeypatch):
    monkeypatch.setitem(sys.modules, "xxhash", None)  # an install older than the dependency
    try:
        fallback = importlib.reload(checksum)
        assert fallback.checksum is zlib.crc32
        assert running(fallback) == zlib.crc32(b"".join(PIECES))
    finally:
        monkeypatch.undo()
        importlib.reload(checksum)
