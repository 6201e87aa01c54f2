"""A plain HTTP/1.1 client for loops of thousands of requests (a cut at every byte of a stream): the standard
library's `http.client` on one kept-alive connection. httpx spends ~1 ms of CPU a request on its layers
(~0.35 ms here), and in such a loop the client's CPU is the machine's, shared with the gateway it tests."""

from __future__ import annotations

import http.client
import json
import select
from urllib.parse import urlsplit


class Plain:
    """Requests to one `http://host:port`, each answered whole: (status, body)."""

    def __init__(self, url: str, timeout: float = 60) -> None:
        parts = urlsplit(url)
        assert parts.scheme == "http", url
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def _fresh(self) -> http.client.HTTPConnection:
        """The kept-alive connection, or a new one when the server closed it (readable while idle: its EOF)."""
        if self.conn is not None and self.conn.sock is not None and select.select([self.conn.sock], [], [], 0)[0]:
            self.conn.close()
            self.conn = None
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def request(self, method: str, path: str, body: dict | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = self._fresh()
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, data, {**({"content-type": "application/json"} if data is not None else {}),
                                          **(headers or {})})
        answer = conn.getresponse()
        content = answer.read()
        if answer.will_close:
            self.close()
        return answer.status, content

    def post(self, path: str, body: dict, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        return self.request("POST", path, body, headers)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
