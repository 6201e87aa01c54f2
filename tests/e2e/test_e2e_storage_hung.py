"""A hung database, caused for real: the PostgreSQL postmaster and every backend stopped with SIGSTOP (the kernel
still accepts connections; nothing answers), SIGCONT at the end whatever happens. What the gateway promises
(docs/reliability.md, "Storage"): noticed within a few seconds (a statement deadline, a bounded connect and
pool wait), from then on every request that needs the database refused 503 `state_unavailable` at once and
before any upstream call, /health naming it, chat served, one log line for the outage, every usage row written
once the database answers again."""

from __future__ import annotations

import time

import openai
import pytest

from helpers.pgserver import pg_own  # noqa: F401  (fixture)
from e2e.test_e2e_shared_state import client
from e2e.test_e2e_storage_faults import (_db_rows_reach, _log_problems, _outage_lines, _served_again, _traffic,
                                     _unavailable)
from e2e.test_e2e_storage_full import _burst, _Health, gateway  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

# Bounds on each client's wait, not measurements: the gateway promises a hung database noticed within 10 s (far
# above a busy machine's delays: docs/reliability.md); before issue 63, a stored request waited 10 s (a new
# connection's timeout) to 20 s (the chaos run).
NOTICED_S = 16.0  # the first stored request after the hang: answered within this (above the promise)
AT_ONCE_S = 2.0  # every later one: answered within this, less than any wait on the database would take


def _hurried(gw, timeout: float) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=timeout)


def _refused(call) -> None:
    with pytest.raises(openai.APIStatusError) as e:
        call()
    _unavailable(e.value)


def _stream(c: openai.OpenAI, **kw) -> None:
    with c.responses.create(model="gpt-4o", stream=True, **kw) as events:
        list(events)


def test_a_hung_database_is_noticed_in_seconds_and_stored_requests_are_refused_at_once(pg_own, gateway, emu):
    gw = gateway(pg_own.db)
    exchanges, stored = _traffic(gw, "before")
    _db_rows_reach(pg_own.db, exchanges, "the rows before the database hung")
    try:
        pg_own.pause()
        stopped = time.monotonic()
        exchanges += _burst(gw, 10)  # chat goes on; the rows' write meets the hung database
        # a stored chat completion: its write waits on the database; answered 503 within NOTICED_S
        first, asked = _hurried(gw, NOTICED_S), time.monotonic()
        _refused(lambda: first.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}],
                                                       store=True))
        answered = time.monotonic() - asked
        exchanges += 1
        health = _Health(gw)
        assert health.names_the_database()[0][0] == "shared state database"
        down_for = next(s["for_s"] for s in health.entries if s["name"] == "shared state database")
        print(f"\nnoticed {time.monotonic() - stopped - down_for:.1f} s after SIGSTOP "
              f"({health.entries[0]['reason']}); the first stored request answered 503 in {answered:.1f} s")
        # from now on: refused at once, Qwen never asked
        sent = len(emu.chat_requests())
        quick = _hurried(gw, AT_ONCE_S)
        for _ in range(5):
            _refused(lambda: quick.responses.create(model="gpt-4o", input="kept?"))
            _refused(lambda: _stream(quick, input="kept?"))
            _refused(lambda: quick.chat.completions.create(model="gpt-4o", store=True,
                                                           messages=[{"role": "user", "content": "kept?"}]))
            _refused(lambda: quick.chat.completions.list())
            _refused(lambda: quick.responses.create(model="gpt-4o", input="more", previous_response_id="resp_x"))
            exchanges += 5
        assert len(emu.chat_requests()) == sent
        exchanges += _burst(gw, 10)  # chat still served
    finally:
        pg_own.unpause()
    exchanges += _served_again(gw, "after the database hung")
    assert client(gw).responses.retrieve(stored).id == stored
    exchanges += 1 + health.asked
    _db_rows_reach(pg_own.db, exchanges, "every row of the hang, written once the database answered")
    log = gw.log()
    assert _log_problems(gw) == [], log
    assert _outage_lines(gw) == 1, log


def test_a_gateway_starved_of_cpu_takes_no_slow_database_for_down(pg_own, gateway, emu):
    """Issue 68, item 7: slow is not down. The gateway's whole process is stopped for 4 s at a time (SIGSTOP: no CPU
    at all, the worst a busy machine does to it) while stored requests write the database, which answers at once.
    Before, the deadline's watchdog woke after the stop, found 3 s gone and cut the connection: "the shared state
    database … is unavailable (no answer …)", and stored requests refused until the probe saw it "back". Now what
    is judged is what the database did: no outage, every request answered."""
    import signal
    import threading

    gw = gateway(pg_own.db)
    _traffic(gw, "warm")
    answered: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def stored_requests() -> None:
        c = _hurried(gw, 60)
        while not stop.is_set():
            try:
                answered.append(c.responses.create(model="gpt-4o", input="kept?").output_text)
            except BaseException as e:  # noqa: BLE001 (counted: none may fail)
                failures.append(e)

    workers = [threading.Thread(target=stored_requests) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        for _ in range(3):
            time.sleep(0.3)  # requests in flight, their writes on the database
            gw.proc.send_signal(signal.SIGSTOP)
            time.sleep(4.0)
            gw.proc.send_signal(signal.SIGCONT)
        time.sleep(1.0)
    finally:
        gw.proc.send_signal(signal.SIGCONT)
        stop.set()
        for w in workers:
            w.join(90)
    assert failures == [] and answered and set(answered) == {"Echo: kept?"}, failures[:3]
    assert _outage_lines(gw) == 0, gw.log()[-3000:]
