"""Claude Code 2.1.328's WebFetch tool, unchanged, through the explicit proxy (issue #31, item 2).

Before it fetches a page Claude Code asks `GET https://api.anthropic.com/api/web/domain_info?domain=<host>` and
fetches only on a 200 with `can_fetch: true` ("Unable to verify if domain … is safe to fetch" otherwise). The
gateway answers that itself: nothing goes to Anthropic. The page is a real HTTPS site inside the test's
loopback-only namespace (tests/helpers/webpage.py, `docs.example`, its certificate from a test CA the proxy
trusts upstream); the emulator's model asks for WebFetch of it, Claude Code fetches it through the proxy, has
its small model read it (a side call, answered by Qwen too), and the page's words reach the model in the next
turn's tool result.
"""

from __future__ import annotations

import json

import pytest

from helpers import testca
from helpers.claude_ns import ClaudeWorld, claude_unavailable, flows
from helpers.netns import PY, ROOT, _wait_for, namespace_unavailable
from e2e.test_e2e_claude_code import CLIENT_KEY, STREAM_JSON, finished, proxy_env

pytestmark = pytest.mark.e2e

PAGE_HOST, PAGE_ADDRESS = "docs.example", "127.0.0.6"
PAGE_URL = f"https://{PAGE_HOST}/guide"
MARKER = "the-secret-word-is-periwinkle"
WEBPAGE = ROOT / "tests" / "helpers" / "webpage.py"


@pytest.fixture(scope="module")
def fetch_world(tmp_path_factory):
    reason = namespace_unavailable() or claude_unavailable()
    if reason:
        pytest.skip(reason)
    w = ClaudeWorld(tmp_path_factory.mktemp("claude-webfetch"))
    w.ns.hosts[PAGE_HOST] = PAGE_ADDRESS
    w.start()
    try:
        w.certs = testca.make(w.workdir / "ca", hosts=(PAGE_HOST,))
        page = w.workdir / "page.html"
        page.write_text(f"<html><head><title>Guide</title></head><body><h1>Guide</h1><p>Remember: {MARKER}.</p>"
                        "</body></html>")
        w.page_log, ready = w.workdir / "page.log", w.workdir / "page.ready"
        proc = w.spawn([PY, WEBPAGE, "--listen", f"{PAGE_ADDRESS}:443", "--cert", w.certs.cert, "--key",
                        w.certs.key, "--page", page, "--log", w.page_log, "--ready", ready],
                       log=w.workdir / "page.out")
        _wait_for(ready, proc, "the web page")
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def fetch_gw(fetch_world):
    """The explicit proxy; it trusts the page's test CA for its own upstream TLS, as a proxy trusts the web."""
    gw = fetch_world.recording_gateway("explicit", "regular", "--set",
                                       f"ssl_verify_upstream_trusted_ca={fetch_world.certs.ca}")
    yield gw
    gw.stop()


def tool_texts(request: dict) -> list[str]:
    """The tool results in a chat request Qwen received, as text."""
    out = []
    for m in request["body"]["messages"]:
        if m.get("role") == "tool":
            c = m.get("content")
            out.append(c if isinstance(c, str) else "".join(p.get("text", "") for p in c or []))
    return out


def test_webfetch_through_the_explicit_proxy(fetch_world, fetch_gw):
    world, gw = fetch_world, fetch_gw
    world.reset_emulator()
    world.switches(tool_arguments={"url": PAGE_URL, "prompt": "What is the secret word?"}, tool_calls_count=1)
    mark = world.mark_all(gw)
    r, _, _ = world.claude("use WebFetch to read the guide", "--tools", "WebFetch", "--allowedTools", "WebFetch",
                           *STREAM_JSON,
                           env=proxy_env(gw), timeout=180)
    events, result = finished(r, gw)
    seen = [f for f in flows(gw)[mark["flows"]:] if f["method"] != "CONNECT"]
    checks = [f for f in seen if f["path"].startswith("/api/web/domain_info")]
    assert [(f["host"], f["path"], f["status"]) for f in checks] == [
        ("api.anthropic.com", f"/api/web/domain_info?domain={PAGE_HOST}", 200)], seen
    assert world.page_log.read_text().splitlines() == ["GET /guide"]  # fetched once, through the proxy
    assert [(f["host"], f["status"]) for f in seen if f["host"] == PAGE_HOST] == [(PAGE_HOST, 200)]
    # the page's words reached the model in the turn after the tool call (read by Claude Code's side call)
    chats = world.chat_requests()
    answered = [c for c in chats if any(MARKER in t for t in tool_texts(c))]
    assert answered, [tool_texts(c) for c in chats]
    assert MARKER in result["result"]  # "Tool said: …" with the page's words, printed by Claude Code
    assert CLIENT_KEY not in json.dumps(world.emulator("requests"))
    # the fake api.anthropic.com saw nothing; mitmproxy's one connection of its own was the page's
    assert world.leaks_since(gw, mark) == [f"mitmproxy -> {PAGE_HOST}:443"]
