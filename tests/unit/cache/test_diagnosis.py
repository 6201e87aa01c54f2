"""The diagnostics a client asks for (cache/diagnosis.py), in no dialect's words: this request's prefix against
the named response's, from the doctor's memory, within the client's tenant; and, at the answer's end, what Qwen
did where the structure promised a read."""

from __future__ import annotations

import copy
import time

from qwen_gateway.cache.diagnosis import CHANGED, FIRST, NOT_FOUND, SAME, UNAVAILABLE, Diagnoser
from qwen_gateway.cache_turn import Asked
from qwen_gateway.observe.cache_doctor import CacheDoctor
from helpers.observe_testlib import answered, config, exchange

SYSTEM = "You are an agent. " * 300


def body(turns: int, system: str = SYSTEM, model: str = "qwen3-coder-plus", **extra) -> dict:
    messages = [{"role": "system", "content": system}]
    for i in range(turns):
        messages += [{"role": "user", "content": f"step {i} " * 50}, {"role": "assistant", "content": f"ok {i}"}]
    return {"model": model, "messages": messages[:-1], **extra}


class Client:
    """A client asking for diagnostics through one gateway's doctor and diagnoser."""

    def __init__(self) -> None:
        self.diagnoser = Diagnoser()
        self.doctor = CacheDoctor(self.diagnoser)
        self.doctor.configure(config())
        self.at = time.time() - 3600  # the turns' clock: epoch seconds, moved by each request's `after`
        self.flushed = 0
        self.pending: list = []
        self.diagnoser.catch_up = self.flush

    def flush(self) -> None:  # what the observers' batch does when the diagnoser asks
        self.flushed += 1
        for ex, flow in self.pending:
            self.doctor.finished(ex, flow)
        self.pending.clear()

    def ask(self, upstream: dict, answer_id: str, compare_to: str | None = "-", *, key: str = "", after: float = 10.0,
            prompt: int = 4000, read: int = 0, written: int = 0, account: str = "default"):
        self.at += after
        ex = exchange(upstream_body=copy.deepcopy(upstream), started_at=self.at, account=account,
                      usage={"prompt_tokens": prompt, "completion_tokens": 3, "prompt_tokens_details": {
                          "cached_tokens": read, "cache_creation_input_tokens": written, "cache_type": "ephemeral"}})
        from qwen_gateway.accounts import Conversation
        ex.conversation = Conversation("conv", "session")
        ex.key.name = key
        ex.cache_ask = Asked(compare=compare_to != "-", compare_to=None if compare_to == "-" else compare_to)
        comparison = self.diagnoser.compare(ex)
        self.diagnoser.answered(ex, answer_id)
        self.pending.append((ex, answered(ex)))  # the doctor runs after the answer, in a batch
        return ex, comparison


def test_a_first_turn_compares_nothing_and_an_unknown_id_is_not_found():
    c = Client()
    _, first = c.ask(body(1), "msg_1", None)
    assert first.outcome == FIRST
    _, missing = c.ask(body(2), "msg_2", "msg_nope")
    assert missing.outcome == NOT_FOUND


def test_a_key_never_finds_another_keys_response():
    c = Client()
    c.ask(body(1), "msg_a", None, key="alice")
    _, theirs = c.ask(body(2), "msg_b", "msg_a", key="bob")
    _, own = c.ask(body(2), "msg_c", "msg_a", key="alice")
    assert (theirs.outcome, own.outcome) == (NOT_FOUND, SAME)


def test_a_response_answered_a_moment_ago_is_found_through_the_doctors_batch():
    c = Client()
    c.ask(body(1), "resp_1")  # no comparison asked: kept by the doctor, which has not run yet
    _, found = c.ask(body(2), "resp_2", "resp_1")
    assert found.outcome == SAME and c.flushed == 1


def test_a_change_is_named_with_its_tokens():
    c = Client()
    c.ask(body(3), "msg_1", None, prompt=4000, written=4000)
    c.flush()
    _, changed = c.ask(body(4, system=SYSTEM + "Today is Friday."), "msg_2", "msg_1")
    assert (changed.outcome, changed.cause) == (CHANGED, "system")
    assert changed.reusable < 50 < changed.missed  # only the model's block before the change
    _, model = c.ask(body(4, model="qwen3.6-plus"), "msg_3", "msg_1")
    assert (model.outcome, model.cause, model.reusable) == (CHANGED, "model", 0)
    _, settings = c.ask(body(4, tool_choice="required"), "msg_4", "msg_1")
    assert settings.outcome == UNAVAILABLE  # the same prefix, another prompt-affecting setting


def test_what_qwen_did_where_the_structure_promised_a_read():
    c = Client()
    c.ask(body(1), "msg_1", None, prompt=4000, written=4000)
    ex, same = c.ask(body(2), "msg_2", "msg_1", after=20)
    assert same.outcome == SAME
    did = c.diagnoser.qwen_did(ex, 4400, 0, 4400)
    assert (did.kind, did.missed, did.lifetime) == ("evicted", 4000, 300.0)
    ex, _ = c.ask(body(3), "msg_3", "msg_2", after=400)
    assert c.diagnoser.qwen_did(ex, 4800, 0, 4800).kind == "expired"
    ex, _ = c.ask(body(4), "msg_4", "msg_3", after=10)
    assert c.diagnoser.qwen_did(ex, 5200, 4800, 400) is None  # it read what was left: nothing to say


def long_body(messages: int) -> dict:
    return {"model": "qwen3-coder-plus", "messages": [{"role": "system", "content": SYSTEM}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(messages)]}


async def test_a_long_turns_print_is_made_by_a_worker_thread_as_it_goes_upstream():
    """A turn with more new messages than OFF_LOOP_MESSAGES is printed by a worker thread from the moment it goes
    upstream (its encoding and hashing would hold the event loop: 10,000 messages took 250 ms of it); the print
    is the one the loop would have made. A short turn, or the new tail of a long conversation, is printed on the
    loop, at the answer's end, as before."""
    import threading

    from qwen_gateway import jsonio
    from qwen_gateway.accounts import Conversation
    from qwen_gateway.cache import diagnosis
    from qwen_gateway.cache.prints_chat import of_chat

    made_on: list[str] = []
    real = diagnosis.of_sent

    def recorded(*args, **kw):
        made_on.append(threading.current_thread().name)
        return real(*args, **kw)

    diagnoser = Diagnoser()
    diagnosis.of_sent = recorded
    try:
        def sent(upstream: dict, at: float):
            ex = exchange(upstream_body=upstream, started_at=at)
            ex.conversation = Conversation("conv", "session")
            ex.attempt.sent = jsonio.dumps(upstream)
            diagnoser.begin(ex)
            return ex

        first = sent(long_body(diagnosis.OFF_LOOP_MESSAGES + 1), time.time())
        assert first.cache_print is not None
        await first.cache_print
        seen = diagnoser.turn(first)
        assert made_on and made_on[-1] != threading.current_thread().name
        whole = of_chat(first.attempt.body)
        assert (seen.print.kinds, seen.print.raw, seen.print.sizes) == (whole.kinds, whole.raw, whole.sizes)
        diagnoser.memory.add(diagnoser.memory.kept("conv", "", seen), seen)

        made_on.clear()  # the next turn repeats it: its two new messages printed at the end, on the loop
        grown = long_body(diagnosis.OFF_LOOP_MESSAGES + 3)
        nxt = sent(grown, time.time() + 1)
        assert nxt.cache_print is None
        assert diagnoser.turn(nxt).print.raw == of_chat(grown).raw
        assert made_on == [threading.current_thread().name]

        short = sent(long_body(8), time.time() + 2)
        assert short.cache_print is None
    finally:
        diagnosis.of_sent = real
