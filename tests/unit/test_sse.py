from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_gateway.sse import SSEDecoder, ServerSentEvent, encode


def decode_all(chunks):
    d = SSEDecoder()
    out = []
    for c in chunks:
        out += d.feed(c)
    return out + d.flush()


def test_basic_events_and_comments():
    body = b": keep-alive\n\ndata: {\"a\":1}\n\nevent: x\ndata: one\ndata: two\nid: 7\n\ndata: [DONE]\n\n"
    assert decode_all([body]) == [
        ServerSentEvent('{"a":1}'),
        ServerSentEvent("one\ntwo", event="x", id="7"),
        ServerSentEvent("[DONE]", id="7"),  # the last event id persists (WHATWG)
    ]


def test_crlf_and_cr_line_endings():
    assert decode_all([b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"]) == [
        ServerSentEvent("a"), ServerSentEvent("b"), ServerSentEvent("c")]


def test_crlf_split_between_chunks_is_one_line_end():
    assert decode_all([b"data: a\r", b"\n\r", b"\n"]) == [ServerSentEvent("a")]


def test_unterminated_last_event_is_flushed():
    assert decode_all([b"data: tail"]) == [ServerSentEvent("tail")]


def test_encode_roundtrip():
    raw = encode({"k": "é"}, event="response.created")
    assert raw == 'event: response.created\ndata: {"k":"é"}\n\n'.encode()
    assert decode_all([raw]) == [ServerSentEvent('{"k":"é"}', event="response.created")]


events = st.lists(
    st.tuples(st.one_of(st.none(), st.sampled_from(["message", "response.created"])),
              st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)))),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(events, st.data())
def test_any_chunking_gives_the_same_events(evs, data):
    body = b"".join(encode(d, event=e) for e, d in evs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=12)))
    chunks, prev = [], 0
    for c in cuts + [len(body)]:
        chunks.append(body[prev:c])
        prev = c
    got = decode_all(chunks)
    assert [(e.event, e.data) for e in got] == [(e, d) for e, d in evs]


class _AnyLineEnds(SSEDecoder):
    """The decoder's general loop for every buffer (the reference for its \\n-only fast path)."""

    def _feed_lf(self, buf):
        return self._feed_any(buf)


_bytes = st.lists(st.sampled_from([b"data:", b"data: x", b"event: e", b": c", b"id: 1", b"retry: 5", b"\n", b"\r",
                                   b"\r\n", b" ", b"\xc3\xa9", b"\xe2\x82", b"\xff", b"\x00", b"[DONE]", b"{}"]),
                  max_size=40).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(_bytes, st.data())
def test_the_fast_path_for_lf_only_buffers_decodes_as_the_general_loop(raw, data):
    """Any bytes (invalid UTF-8, \\r anywhere, lines split at any byte): the same events, the same tail."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    fast, general = SSEDecoder(), _AnyLineEnds()
    prev = 0
    for c in cuts + [len(raw)]:
        assert fast.feed(raw[prev:c]) == general.feed(raw[prev:c])
        assert fast._buf == general._buf
        prev = c
    assert fast.flush() == general.flush()
