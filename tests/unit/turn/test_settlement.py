"""How an exchange ends (turn/settlement.py), with mitmproxy's test flows: the pool hears how the account did, the
endpoint keeps its final object once (not when a parked stream kept it already), the record lands on the
flow and the observers are told; a client gone mid-answer is 499, after the whole stream it was served."""

from __future__ import annotations

from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.test import tflow

from qwen_gateway.accounts import OAUTH, Credential, Outcome
from qwen_gateway.dispatch import Observers
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.local_answers import Formats
from qwen_gateway.observer import Observer
from qwen_gateway.pricing.prices import PriceTable, Tier
from qwen_gateway.interfaces import Endpoint
from qwen_gateway.turn.stream_rewriter import StreamRewriter
from qwen_gateway.turn.settlement import Settlement


class Pool:
    def __init__(self) -> None:
        self.reports: list[tuple[str, Outcome]] = []

    def report(self, account, outcome, **kw) -> None:
        self.reports.append((account, outcome))


class Seen(Observer):
    def __init__(self) -> None:
        self.finished_ids: list[str] = []

    def finished(self, ex, flow) -> None:
        self.finished_ids.append(ex.id)


def parts():
    pool, seen, kept = Pool(), Seen(), []
    settle = Settlement(pool=lambda: pool, observers=Observers([seen]), flows={}, formats=Formats({}))
    endpoint = Endpoint("chat.completions", to_chat=lambda b, e: b, from_chat=lambda d, e: d,
                        stream_translator=lambda e: None, finished=lambda ex, final: kept.append(final))
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://x/v1/chat/completions"), endpoint=endpoint)
    ex.attempt.cred = Credential("acct", OAUTH, "https://q.example/v1", "tok")
    return settle, pool, seen, kept, ex


def test_a_whole_answer_reports_ok_keeps_its_final_object_once_and_tells_the_observers():
    settle, pool, seen, kept, ex = parts()
    f = tflow.tflow(resp=True)
    settle.served(ex, {"id": "chatcmpl-1"})  # the turn, with its answer
    settle.answered(f, ex)  # mitmproxy's response hook: the record
    assert pool.reports == [("acct", Outcome.OK)] and kept == [{"id": "chatcmpl-1"}]
    assert f.metadata["qwen"]["status"] == 200 and seen.finished_ids == [ex.id]
    assert ex.turn.served  # told once: a client that leaves afterwards is not reported again


def test_a_parked_stream_kept_its_answer_already():
    settle, pool, _, kept, ex = parts()
    ex.turn.kept = True
    settle.served(ex, {"id": "resp_1"})
    assert kept == [] and pool.reports == [("acct", Outcome.OK)]


def test_a_client_gone_mid_answer_is_499_and_the_account_is_not_blamed_for_an_answer():
    settle, pool, _, _, ex = parts()
    f = tflow.tflow()
    f.error = mflow.Error("Client disconnected.")
    settle.broken(f, ex)
    assert f.metadata["qwen"]["error"]["status"] == 499 and f.metadata["qwen"]["error"]["code"] == "client_disconnected"
    assert pool.reports == [("acct", Outcome.ERROR)]


def test_a_client_that_read_the_whole_stream_before_leaving_was_served():
    settle, pool, _, _, ex = parts()

    class Done:
        usage = {"prompt_tokens": 1, "completion_tokens": 1}

    rw = ex.turn.rewriter = StreamRewriter(Done(), None, capture_limit=100)  # type: ignore[arg-type]
    rw.finished, rw.captured = True, bytearray(b"data: [DONE]\n\n")
    f = tflow.tflow(resp=http.Response.make(200, b""))
    f.error = mflow.Error("Client disconnected.")
    settle.broken(f, ex)
    meta = f.metadata["qwen"]
    assert meta["status"] == 200 and "error" not in meta and f.response.raw_content == b"data: [DONE]\n\n"
    assert pool.reports == [("acct", Outcome.OK)]


def test_an_answer_the_reasoning_left_empty_is_said_on_the_flow():
    from qwen_gateway.turn.settlement import reasoning_took_the_cap

    used_up = {"completion_tokens": 512, "completion_tokens_details": {"reasoning_tokens": 512}}
    assert reasoning_took_the_cap(used_up, {"max_completion_tokens": 512}) == \
        "the reasoning used all 512 output tokens: no answer (raise the output cap)"
    answered = {"completion_tokens": 512, "completion_tokens_details": {"reasoning_tokens": 400}}
    assert reasoning_took_the_cap(answered, {"max_completion_tokens": 512}) is None
    assert reasoning_took_the_cap(used_up, {}) is None  # no cap asked: nothing to blame
    assert reasoning_took_the_cap({"completion_tokens": 3}, {"max_completion_tokens": 3}) is None


def test_an_answer_that_priced_itself_keeps_its_price():
    """A batch's results are billed at the batch rate by api/batches/: the settlement does not price them again."""
    settle, _, _, _, ex = parts()
    ex.result.usage = {"prompt_tokens": 1000, "completion_tokens": 10}
    ex.result.cost, ex.result.cost_unit, ex.attempt.model = 0.25, "USD", "qwen-plus"
    settle.prices = lambda: PriceTable({"": {"qwen-plus": (Tier(None, 1000.0, 1000.0),)}}, source="test")
    settle.answered(tflow.tflow(resp=True), ex)
    assert (ex.result.cost, ex.result.cost_unit) == (0.25, "USD")


def test_a_stream_nothing_kept_leaves_the_flow_as_mitmproxy_streamed_it():
    """No capture (nothing reads a stream's bytes on its flow, relay.stream_capture): the response keeps
    mitmproxy's None for a streamed body, not an empty body that would claim the client got nothing."""
    settle, pool, _, _, ex = parts()

    class Done:
        usage = {"prompt_tokens": 1, "completion_tokens": 1}

    rw = ex.turn.rewriter = StreamRewriter(Done(), None)  # type: ignore[arg-type]
    rw.finished = True
    rw(b"")
    assert rw.captured == b""
    resp = http.Response.make(200, b"")
    resp.raw_content = None
    settle.stream_sent(ex, resp)
    assert resp.raw_content is None
