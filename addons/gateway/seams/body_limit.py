"""mitmproxy's 413 past `body_size_limit` answered in JSON (reverse mode bounds every upload there:
ingress/exposure.py sets twice qwen_max_body_mb and 1 MiB).

Why: past the limit mitmproxy answers the client itself. `HttpStream.check_body_size` runs the requestheaders
hook, then sends a protocol error whatever the hook set, and `Http1Server.send` writes
`make_error_response(413, …)`: an HTML page where an OpenAI or Anthropic SDK reads JSON (openai-python raised
`APIStatusError` with the page as its message). This replaces `_http1.make_error_response`, the module's function
`Http1Server.send` calls, for that one answer; every other status goes to mitmproxy's own function, and a
request within the limit never calls it. The function is not told the request, so the answer is one JSON
body both SDKs read: OpenAI's `error.message` and `error.code`, Anthropic's `type: "error"` and `error.type`
(ingress/access.too_large_answer).

What mitmproxy change would remove it: `check_body_size` honouring a response the requestheaders hook set, or
the error's answer made by an addon.
"""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy.proxy.layers.http import _http1

from .fingerprint import WrittenAgainst

WRITTEN = WrittenAgainst(
    seam="mitmproxy's 413 past body_size_limit in JSON",
    loses="an upload past body_size_limit gets mitmproxy's HTML 413 page",
    # the function, the class that calls it as shipped and its `send` as found, the check that sends the error
    code=(("mitmproxy.proxy.layers.http._http1:make_error_response", "03ce75ab62e8e78b"),
          ("mitmproxy.proxy.layers.http._http1:Http1Server", "cc8428d0bb6f79a5"),
          ("mitmproxy.proxy.layers.http._http1:Http1Server.send", "cc218a1337c0f5cf"),
          ("mitmproxy.proxy.layers.http:HttpStream.check_body_size", "236ca0a7b9fd4f69")))
BODY_LIMIT = "Request body exceeds mitmproxy's body_size_limit."  # check_body_size's message for a request

_answer: bytes = b""
_original: list[Callable[..., bytes]] = []


def install(answer: bytes) -> bool:
    """From now on `answer` (a whole HTTP/1 response) is mitmproxy's 413 past body_size_limit; later calls only
    change it. False on a mitmproxy this was not written against: nothing changed."""
    global _answer
    _answer = answer
    if _original:
        return True
    if not WRITTEN.fits():
        return False
    _original.append(_http1.make_error_response)
    _http1.make_error_response = _error_response
    return True


def installed() -> bool:
    return bool(_original)


def _error_response(status_code: int, message: str = "") -> bytes:
    if status_code == 413 and message == BODY_LIMIT and _answer:
        return _answer
    return _original[0](status_code, message)
