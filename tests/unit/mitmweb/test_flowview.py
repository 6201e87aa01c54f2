"""mitmweb presentation: summaries, markers, the flow and body caps (unit). The content views: test_contentviews.py."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import unicodedata

import pytest
from mitmproxy import http
from mitmproxy.addons.view import View
from mitmproxy.test import taddons, tflow
from mitmproxy.tools.web.app import flow_to_json

from qwen_gateway.exchange import RetryReason
from qwen_gateway.mitmweb.flowview import (BODY_KEEP, MARK_ERROR, MARK_OK, MARK_RETRIED, SEP, FlowAnnotator, FlowCap,
    cut_body, marker, summary_line)
from helpers.observe_testlib import answered, chat_body, client_flow, config, exchange, local, refused, retry


def rotated():
    return exchange(usage={"prompt_tokens": 12, "completion_tokens": 34, "prompt_tokens_details": {"cached_tokens": 2}},
                    ttfb_ms=85.4, duration_ms=1200, retries=(retry(RetryReason.ROTATED, "a"),),
                    notes=("quota exhausted on a: rotated",))


def test_summary_sections_are_separated_on_one_line():
    line = summary_line(rotated())
    assert "\n" not in line  # the Comment column is one table cell
    summary, note, client = line.split(SEP)
    assert summary == ("gpt-4o → coder-model · acct default · 200 · in 12 / out 34 (cached 2) · ttfb 85 ms · "
                       "1.20 s · retries rotated (a)")
    assert note == "quota exhausted on a: rotated"
    assert client == "client: POST /v1/chat/completions · key sk-… (20 chars)"


def test_a_placeholder_key_gets_no_hint():
    """Issue 32: a client sending `x` as its key read `key <1 chars>`. A short key is a placeholder (`x`,
    `anything`): its length says nothing, three of its characters would give it away; nothing is shown."""
    from qwen_gateway.ingress.claim import key_hint
    assert key_hint("x") is None and key_hint("anything") is None and key_hint("") is None
    assert key_hint("sk-ant-client-key") == "sk-… (17 chars)"
    client = summary_line(exchange(key_hint=key_hint("x"))).split(SEP)[-1]
    assert client == "client: POST /v1/chat/completions", client


def test_error_summaries_have_no_stray_fragments():
    """Issue: an error summary read "… · est 9 in · …"."""
    ex = refused(400, "context_length_exceeded", "This model's maximum context length is 50 tokens.",
                 model="gpt-4o-mini", prompt_tokens_est=9, notes=("context guard: 9 tokens > 5",))
    summary, note, error, client = summary_line(ex).split(SEP)
    assert summary == "gpt-4o-mini → ? · acct - · 400 · prompt ≈ 9 tokens · 0.00 s"
    assert error == "error: context_length_exceeded “This model's maximum context length is 50 tokens.”"
    assert client.startswith("client: POST /v1/chat/completions")
    assert " in " not in summary_line(ex).replace(" in the ", "")
    broken = exchange(stream=True, stream_error="idle for 300 s", ttfb_ms=5)
    assert summary_line(broken).split(SEP)[1] == "error: “idle for 300 s”"


def test_local_answers_say_so():
    assert summary_line(local("models")) == ("models (answered by the gateway) · 200 · 0.00 s" + SEP +
                                             "client: GET /v1/models · key sk-… (20 chars)")


def test_markers():
    assert marker(rotated()) == MARK_RETRIED
    assert marker(exchange()) == MARK_OK
    assert marker(exchange(status=429, error=(429, "insufficient_quota", "quota"))) == MARK_ERROR
    assert marker(exchange(stream_error="cut")) == MARK_ERROR
    assert marker(exchange(status=None, usage=None)) == MARK_ERROR


def test_markers_render_in_mitmweb_without_an_emoji_font():
    """mitmweb maps flow.marked through mitmproxy's emoji table (unknown values become 🔴). Emoji-only
    glyphs (✅ ❌ 🔁 🔴) are East Asian Wide (UAX #11); text-presentation dingbats are not."""
    seen = set()
    for m in (MARK_OK, MARK_RETRIED, MARK_ERROR):
        f = tflow.tflow(resp=True)
        f.marked = m
        shown = flow_to_json(f)["marked"]
        assert shown != "🔴" and len(shown) == 1, m  # a known shortcode, one character
        assert unicodedata.east_asian_width(shown) != "W", (m, shown)
        seen.add(shown)
    assert seen == {"✔", "↪", "✖"}
    assert unicodedata.east_asian_width("✅") == unicodedata.east_asian_width("🔴") == "W"  # the check can fail


@pytest.mark.skipif(shutil.which("fc-list") is None, reason="fontconfig not installed")
def test_markers_and_separator_are_in_a_plain_font():
    for ch in "✔↪✖┃→≈·":
        fonts = subprocess.run(["fc-list", f":charset={ord(ch):x}", "family"], capture_output=True, text=True,
                               timeout=20).stdout
        assert fonts.strip(), f"no installed font draws {ch!r}"


def test_annotator_sets_comment_and_marker_and_keeps_a_users_marker():
    ex = rotated()
    f = answered(ex)
    FlowAnnotator().finished(ex, f)
    assert f.comment == summary_line(ex) and f.marked == MARK_RETRIED
    f.marked = ":star:"  # a person marked it
    FlowAnnotator().finished(exchange(), f)
    assert f.marked == ":star:"
    f.marked = MARK_RETRIED  # ours, from an earlier run (replay): updated
    FlowAnnotator().finished(exchange(), f)
    assert f.marked == MARK_OK


def test_annotator_keeps_a_small_upstream_body_for_the_upstream_view():
    ex = exchange()
    f = answered(ex)
    FlowAnnotator().finished(ex, f)
    assert f.metadata["qwen"]["upstream"]["body"] == ex.attempt.body
    assert "authorization" in f.metadata["qwen"]["upstream"]["headers"]
    big = exchange(body=chat_body("x" * (300 << 10)))
    fb = answered(big)
    FlowAnnotator().finished(big, fb)
    assert "body" not in fb.metadata["qwen"]["upstream"]
    grown = exchange(upstream_body=chat_body("y" * (300 << 10)))  # a small request, a big upstream body
    fg = answered(grown)
    FlowAnnotator().finished(grown, fg)
    assert grown.client.size < 1024 and "body" not in fg.metadata["qwen"]["upstream"]
    refusal = refused(503, "no_usable_account", "none")
    fr = answered(refusal)
    FlowAnnotator().finished(refusal, fr)
    assert "upstream" not in fr.metadata["qwen"]


def capped_flows(cap: FlowCap, view: View, n: int, *, mark_first: bool = False) -> list[http.HTTPFlow]:
    flows = []
    for i in range(n):
        ex = exchange()
        f = answered(ex)
        f.live = False
        FlowAnnotator().finished(ex, f)
        if i == 0 and mark_first:
            f.marked = ":star:"
        view.add([f])
        cap.finished(ex, f)
        flows.append(f)
    return flows


def test_flow_cap_removes_oldest_finished_but_keeps_user_marked():
    view = View()
    cap = FlowCap()
    with taddons.context(view):
        cap.configure(config(web_flow_limit=3))
        cap.view = view  # what running() finds in mitmweb
        flows = capped_flows(cap, view, 6, mark_first=True)
        kept = [f.id for f in view]
        assert flows[0].id in kept and len(kept) == 3
        assert flows[-1].id in kept and flows[1].id not in kept


def test_flow_cap_finds_the_view_in_running_and_is_inactive_without_it():
    view = View()
    with taddons.context(view):
        cap = FlowCap()
        cap.running()
        assert cap.view is view
    with taddons.context():
        cap = FlowCap()
        cap.running()
        assert cap.view is None
        ex = exchange(body=chat_body("x" * (BODY_KEEP + 10)))
        f = answered(ex)
        cap.finished(ex, f)  # mitmdump: nothing kept, nothing cut
        assert len(f.request.content) > BODY_KEEP and not cap.finished_flows


def test_flow_cap_zero_keeps_everything():
    view = View()
    cap = FlowCap()
    with taddons.context(view):
        cap.configure(config(web_flow_limit=0))
        cap.view = view
        capped_flows(cap, view, 5)
        assert len(view) == 5


def test_big_request_bodies_are_cut_in_mitmweb_small_ones_untouched():
    """Issue: mitmweb kept whole request bodies of up to 500 flows (40 × 20 MiB → 2.1 GB)."""
    view = View()
    cap = FlowCap()
    with taddons.context(view):
        cap.configure(config())
        cap.view = view
        small = exchange()
        fs = answered(small)
        before = fs.request.raw_content
        FlowAnnotator().finished(small, fs)
        cap.finished(small, fs)
        assert fs.request.raw_content is before  # untouched: replay sends it again as it was
        big = exchange(body=chat_body("x" * (2 << 20)))
        fb = answered(big)
        FlowAnnotator().finished(big, fb)
        cap.finished(big, fb)
        content = fb.request.content
        assert len(content) < BODY_KEEP + 200 and content.startswith(b'{"model": "gpt-4o"')
        assert content.endswith(f"only the first {BODY_KEEP:,} kept in mitmweb]".encode())
        assert fb.request.headers["content-length"] == str(len(content))
        assert fb.comment.endswith(SEP + "request body cut to its first 256 KiB in mitmweb (not replayable)")


def test_cut_body_decodes_first():
    req = client_flow(b"").request
    req.headers["content-encoding"] = "gzip"
    req.raw_content = gzip.compress(b"a" * (BODY_KEEP * 4))  # small on the wire, big decoded
    assert len(req.raw_content) < BODY_KEEP
    assert cut_body(req, BODY_KEEP)
    assert "content-encoding" not in req.headers and req.content.startswith(b"a" * BODY_KEEP + b"\n\n[")
    small = client_flow(b"").request
    small.headers["content-encoding"] = "gzip"
    small.raw_content = gzip.compress(b"b" * 100)
    assert not cut_body(small, BODY_KEEP) and small.headers["content-encoding"] == "gzip"
    assert not cut_body(client_flow(None, method="GET").request, BODY_KEEP)


def test_summaries_never_show_a_token():
    ex = exchange(status=401, usage=None, error=(401, "qwen_login_required", "refresh said sk-abcdef123456789"))
    line = summary_line(ex)
    assert "abcdef123456789" not in line and "sk-<redacted>" in line


def test_the_estimate_shows_only_without_qwens_usage():
    assert "prompt ≈" not in summary_line(exchange(prompt_tokens_est=850))
    assert "prompt ≈ 850 tokens" in summary_line(exchange(prompt_tokens_est=850, usage=None))


def test_a_messages_summary_reads_like_the_others():
    """The summary is generic over the record: an Anthropic Messages exchange says nothing OpenAI-specific."""
    ex = exchange(endpoint="messages", path="/v1/messages", model="claude-sonnet-4-5", stream=True, ttfb_ms=22,
                  body={"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]},
                  usage={"prompt_tokens": 30, "completion_tokens": 14, "prompt_tokens_details": {"cached_tokens": 20}})
    assert summary_line(ex) == ("claude-sonnet-4-5 → coder-model · acct default · 200 · in 30 / out 14 (cached 20) · "
                                "ttfb 22 ms · 1.31 s" + SEP + "client: POST /v1/messages · key sk-… (20 chars)")
    bad = refused(400, "invalid_request_error", "max_tokens: Field required", endpoint="messages",
                  path="/v1/messages", model="claude-sonnet-4-5")
    assert summary_line(bad).split(SEP)[1:] == ["error: invalid_request_error “max_tokens: Field required”",
                                                "client: POST /v1/messages · key sk-… (20 chars)"]
    counted = local("count_tokens", method="POST", path="/v1/messages/count_tokens")
    assert summary_line(counted) == ("count_tokens (answered by the gateway) · 200 · 0.00 s" + SEP
                                     + "client: POST /v1/messages/count_tokens · key sk-… (20 chars)")


def test_the_cache_doctors_verdict_is_a_section_of_the_comment():
    from qwen_gateway.cache_turn import CacheTurn
    ex = rotated()
    ex.result.cache = CacheTurn("c0ffee", 3, 12, 0, 0, "tool_order", 10,
                                line="cache: turn 3 read 0 of 12 prompt tokens (0%) · lost 10 vs turn 2: "
                                     "the tools were reordered (tools[0] Bash)")
    sections = summary_line(ex).split(SEP)
    assert sections[1] == ex.result.cache.line
    assert len(sections) == 4  # summary, verdict, note, client


def test_the_summary_says_an_answer_is_unpriced_or_whose_price_counted_it():
    """Issue 59: never $0 for what nothing prices."""
    from qwen_gateway.mitmweb.flowview import summary_line

    ex = exchange(upstream_model="qwen3.7-flash")
    ex.result.cost_unit = "unpriced"
    assert " · unpriced · " in summary_line(ex) and "$0" not in summary_line(ex)
    ex.result.cost, ex.result.cost_unit, ex.result.priced_as = 0.00126, "USD", "qwen3-max"
    assert " · $0.001260 (priced as qwen3-max) · " in summary_line(ex)
