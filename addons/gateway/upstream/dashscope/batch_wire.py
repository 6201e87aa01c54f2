"""Model Studio's OpenAI-compatible Files and Batch APIs on a key account's base (`{base}/files…`,
`{base}/batches…`): one request with the account's key, its answer whole. The api package's batches
(api/batches/) says what to ask, upstream/dashscope/batch_calls.py chooses the account and mends refusals; components.py
hands it `send`.

The request says who the client is (its own User-Agent, as a key account's chat requests do; the gateway's when
it sent none), never the client's key: the account's key alone goes upstream. Over a connection of its own with
the gateway's network settings (the engine's pool is for chat)."""

from __future__ import annotations

from dataclasses import dataclass

from ...accounts import Credential
from ...errors import ConnectionFailed
from ...settings.network import Network
from ..client import UpstreamClient
from .headers import GATEWAY_AGENT, target

TIMEOUT = 120.0  # seconds for the head and each read: an upload of hundreds of MB, a results file
MAX_ANSWER = 1 << 30  # bytes of an answer read at most (Model Studio's batch files hold 500 MB)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    body: bytes


class TooLarge(ConnectionFailed):
    """An answer over MAX_ANSWER."""


async def send(cred: Credential, method: str, suffix: str, body: bytes = b"", *, content_type: str = "",
               query: str = "", client_agent: str = "", network: Network | None = None) -> Reply:
    """`method` `{base}/{suffix}?{query}` with the account's key. Raises upstream/client's ConnectionFailed (and
    its UpstreamTimeout) when Qwen cannot be reached."""
    url, host = target(cred.base_url, suffix)
    headers = [("Host", host), ("User-Agent", client_agent or GATEWAY_AGENT), ("Accept", "application/json"),
               ("Authorization", f"Bearer {cred.token}")]
    if content_type:
        headers.append(("Content-Type", content_type))
    client = UpstreamClient(keepalive=0, network=network)
    try:
        resp = await client.send(url + (f"?{query}" if query else ""), headers, body, head_timeout=TIMEOUT,
                                 read_timeout=TIMEOUT, method=method)
        try:
            parts, size = [], 0
            async for chunk in resp.aiter_raw():
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise TooLarge(f"Qwen's answer is larger than {MAX_ANSWER} bytes")
                parts.append(chunk)
        finally:
            await resp.aclose()
    finally:
        await client.aclose()
    return Reply(resp.status_code, resp.headers.get("content-type", ""), b"".join(parts))
