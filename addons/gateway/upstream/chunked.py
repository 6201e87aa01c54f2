"""HTTP/1.1 chunked framing removed from bytes as they arrive (a decoder apart from the transport: no I/O).

`feed` takes whatever one socket read returned and gives back every body byte it completes, joined: one
piece per read, however many chunks the read held. The engine used to await the size line and then the
chunk for every chunk, each read under its own timeout: two awaits and two timers per upstream event, and
one relay write per chunk; now one of each per read (under load a read holds several events).
"""

from __future__ import annotations

MAX_LINE = 4096  # a size or trailer line longer than this is not HTTP
_SIZE, _DATA, _CRLF, _TRAILER, _DONE = range(5)


class ChunkedDecoder:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = _SIZE
        self._left = 0  # bytes of the current chunk still to come

    @property
    def done(self) -> bool:
        """The last chunk and the trailers have been read."""
        return self._state == _DONE

    @property
    def leftover(self) -> bytes:
        """Bytes that came after the end of the body (a connection holding them cannot be reused)."""
        return bytes(self._buf) if self.done else b""

    def feed(self, data: bytes) -> bytes:
        """The body bytes `data` completes. Raises ValueError when the framing is broken."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        while self._state != _DONE:
            if self._state == _DATA:
                take = min(self._left, len(buf) - pos)
                if not take:
                    break
                out.append(bytes(buf[pos:pos + take]))
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _CRLF
            elif self._state == _CRLF:
                if len(buf) - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise ValueError("a chunk does not end with CRLF")
                pos += 2
                self._state = _SIZE
            else:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if len(buf) - pos > MAX_LINE:
                        raise ValueError("a chunk size or trailer line is too long")
                    break
                line = bytes(buf[pos:end])
                pos = end + 2
                if self._state == _TRAILER:
                    if not line:
                        self._state = _DONE
                    continue
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size < 0:
                    raise ValueError("a negative chunk size")
                self._left = size
                self._state = _DATA if size else _TRAILER
        del buf[:pos]
        return b"".join(out)
