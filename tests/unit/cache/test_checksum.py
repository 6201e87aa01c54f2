"""The checksum of a turn's repeated bytes (cache/checksum.py): a running sum over pieces is the one-shot sum of
their bytes joined, with xxhash and with the CRC-32 that stands in without it."""

from __future__ import annotations

import subprocess
import sys

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


WITHOUT_XXHASH = """
import sys, zlib
sys.modules["xxhash"] = None  # an install older than the dependency
from qwen_gateway.cache import checksum
total = checksum.Sum(memoryview(PIECES[0]))
for piece in PIECES[1:]:
    total.update(piece)
print(checksum.checksum is zlib.crc32, total.intdigest() == zlib.crc32(b"".join(PIECES)))
"""


def test_without_xxhash_crc32_stands_in():
    """In a process of its own: a reload here changes a module every later test of the worker shares, and a module
    imported meanwhile keeps the stand-in (with it a doctor's turn counts 116 calls, not 112: what CI once counted)."""
    code = f"PIECES = {PIECES!r}\n{WITHOUT_XXHASH}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]
