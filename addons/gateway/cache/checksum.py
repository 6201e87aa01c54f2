"""The checksum that tells a turn's repeated bytes from changed ones (prints.Reuse, prints_sent.py): xxh3, 64 bits,
reads the 60 kB an agent's late turn repeats in ~21,000 instructions where zlib's CRC-32 took ~230,000
(docs/performance.md, "The cache doctor off the request path"). Without the xxhash package (an install older
than the dependency) CRC-32 stands in: the same checks, slower. A running `Sum` is made and dropped within one
turn: nothing of the bytes it read is kept."""

from __future__ import annotations

import zlib
from collections.abc import Buffer

try:
    from xxhash import xxh3_64 as Sum, xxh3_64_intdigest as checksum
except ImportError:  # an install without xxhash (tests/unit/cache/test_checksum.py)
    checksum = zlib.crc32  # type: ignore[assignment]

    class Sum:  # type: ignore[no-redef]
        """xxhash.xxh3_64's `update` and `intdigest`, over CRC-32."""

        def __init__(self, data: Buffer = b"") -> None:
            self.value = zlib.crc32(data)

        def update(self, data: Buffer) -> None:
            self.value = zlib.crc32(data, self.value)

        def intdigest(self) -> int:
            return self.value


__all__ = ["Sum", "checksum"]
