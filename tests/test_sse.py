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
